// The shell of every QA page: who is signed in, the navigation, the page named by the URL, and live updates
// (each page's refresh() is polled every few seconds while the tab is visible; no reload, no lost input).

import { api, setCsrf } from "./api.js";
import { h, replace, time, timeZone } from "./dom.js";

const ROUTES = [
  [/^\/ui\/fleet\/?$/, "fleet", () => import("./pages/fleet.js")],
  [/^\/ui\/devices\/([^/]+)\/?$/, "fleet", () => import("./pages/device.js")],
  [/^\/ui\/shipments\/?$/, "shipments", () => import("./pages/shipments.js")],
  [/^\/ui\/shipments\/([^/]+)\/?$/, "shipments", () => import("./pages/shipment.js")],
  [/^\/ui\/alerts\/?$/, "alerts", () => import("./pages/alerts.js")],
  [/^\/ui\/calibration\/?$/, "calibration", () => import("./pages/calibration.js")],
  [/^\/ui\/calibration\/devices\/([^/]+)\/?$/, "calibration", () => import("./pages/drift.js")],
  [/^\/ui\/calibration\/sessions\/([^/]+)\/?$/, "calibration", () => import("./pages/cal_session.js")],
  [/^\/ui\/quarantine\/?$/, "quarantine", () => import("./pages/quarantine.js")],
  [/^\/ui\/profiles\/?$/, "profiles", () => import("./pages/profiles.js")],
  [/^\/ui\/admin\/?$/, "admin", () => import("./pages/admin.js")],
  [/^\/ui\/alarm-health\/?$/, "alarm-health", () => import("./pages/alarm_health.js")],
];

const NAV = [["fleet", "Fleet"], ["shipments", "Shipments"], ["alerts", "Alerts"], ["calibration", "Calibration"],
  ["quarantine", "Quarantine"], ["alarm-health", "Alarm health"], ["profiles", "Profiles"], ["admin", "Admin"]];
const ADMIN_ONLY = new Set(["admin"]);

const POLL_MS = 5000;

async function main() {
  const main = document.getElementById("main");
  let session;
  try {
    session = await api.get("/api/v1/auth/session");
  } catch (e) {
    replace(main, h("div", { class: "state state-error", role: "alert" }, `Cannot load your session: ${e.message}`));
    return;
  }
  setCsrf(session.csrf_token);
  const path = location.pathname;
  const route = ROUTES.find(([re]) => re.test(path));
  renderHeader(session, route ? route[1] : null);
  if (!route) {
    replace(main, h("div", { class: "state state-empty" }, h("p", {}, "No such page. "), h("a", { href: "/ui/fleet" }, "Go to the fleet")));
    return;
  }
  const params = path.match(route[0]).slice(1).map(decodeURIComponent);
  const section = (NAV.find(([id]) => id === route[1]) || [null, "ColdTrace"])[1];
  document.title = `${params.length ? `${params[0]} · ` : ""}${section} · ColdTrace QA`;
  const mod = await route[2]();
  const ctx = { session, params, query: new URLSearchParams(location.search), canWrite: session.role !== "viewer" };
  const page = await mod.mount(main, ctx);
  if (page && page.refresh) startPolling(page);
  else replace(document.getElementById("live"));
}

function renderHeader(session, active) {
  const header = document.getElementById("top");
  const signOut = h("button", { type: "button", class: "btn btn-quiet", onclick: logout }, "Sign out");
  replace(header,
    h("a", { class: "brand", href: "/ui/fleet" }, "ColdTrace", h("span", { class: "brand-sub" }, " QA")),
    h("nav", { "aria-label": "Main" }, h("ul", {}, NAV.filter(([id]) => !ADMIN_ONLY.has(id) || session.role === "admin").map(([id, label]) => h("li", {},
      h("a", { href: `/ui/${id}`, "aria-current": id === active ? "page" : null }, label))))),
    h("div", { class: "who" },
      h("span", { id: "live", class: "live", role: "status", "aria-live": "polite" }, "Live"),
      h("span", { class: "user", title: `role: ${session.role}` }, session.full_name || session.name,
        h("span", { class: "role" }, session.role)),
      signOut));
  const foot = document.getElementById("foot");
  if (foot) replace(foot, `Times in your time zone (${timeZone}); hover a time for UTC.`);
}

async function logout() {
  try { await api.post("/api/v1/auth/logout"); } catch (e) { /* the session may be gone already */ }
  location.assign("/ui/login");
}

function startPolling(page) {
  const live = document.getElementById("live");
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      await page.refresh();
      live.className = "live live-ok";
      replace(live, "Live · updated ", time(Date.now()));
    } catch (e) {
      live.className = "live live-error";
      replace(live, `Updates failing: ${e.message}`);
    } finally {
      busy = false;
    }
  };
  live.className = "live live-ok";
  replace(live, "Live · updated ", time(Date.now()));
  setInterval(tick, page.interval || POLL_MS);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
}

main().catch((e) => {
  const m = document.getElementById("main");
  replace(m, h("div", { class: "state state-error", role: "alert" }, `This page failed: ${e.message}`));
  console.error(e);
});

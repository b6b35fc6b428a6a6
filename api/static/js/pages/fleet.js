// Fleet overview: every device with its last reading, online/offline, battery, calibration due, open alerts.

import { api } from "../api.js";
import { ago, badge, empty, errorBox, h, link, loading, replace, section, table, temp, time } from "../dom.js";
import { calibrationBadge, deviceStatus } from "./common.js";

// devices on a calibration bench are judged by calibration rules, not by a shipment profile
const ROLE_LABELS = { calibration_reference: "calibration reference", device_under_calibration: "under calibration" };
const ROLE_NOTE = "on a calibration bench: judged by the calibration rules, not by a shipment profile";
const CAL_TTL_MS = 60_000; // calibration states change rarely: ask again once a minute

export async function mount(main, ctx) {
  const tiles = h("div", { class: "tiles", "aria-label": "Fleet summary" });
  const filterKind = h("select", { id: "f-kind" }, h("option", { value: "" }, "All kinds"),
    ["logger", "reference", "gateway"].map((k) => h("option", { value: k }, k)));
  const filterText = h("input", { id: "f-text", type: "search", placeholder: "id or name" });
  const body = h("div", {}, loading("Loading devices"));
  replace(main,
    h("h1", {}, "Fleet"),
    tiles,
    section("Devices",
      h("div", { class: "filters" },
        h("div", { class: "field" }, h("label", { for: "f-text" }, "Search"), filterText),
        h("div", { class: "field" }, h("label", { for: "f-kind" }, "Kind"), filterKind)),
      body));
  const cal = new Map();
  let devices = [], openAlerts = new Map(), lastCal = 0;

  async function refreshCalibration(list) {
    if (Date.now() - lastCal < CAL_TTL_MS && cal.size) return;
    lastCal = Date.now();
    try { // every device's calibration state in one request ("valid, drift predicted <date>" included)
      const states = await api.get("/api/v1/calibration/devices", { limit: 10000 });
      const byId = new Map(states.map((st) => [st.device_id, st]));
      for (const d of list) if (d.kind !== "gateway") cal.set(d.id, byId.has(d.id) ? { status: byId.get(d.id) } : null);
    } catch (e) {
      for (const d of list) if (d.kind !== "gateway") cal.set(d.id, { error: e.message });
    }
  }

  function render() {
    const q = filterText.value.trim().toLowerCase(), kind = filterKind.value;
    const rows = devices.filter((d) => (!kind || d.kind === kind)
      && (!q || d.id.toLowerCase().includes(q) || (d.name || "").toLowerCase().includes(q)));
    const online = devices.filter((d) => deviceStatus(d) === "online").length;
    const offline = devices.filter((d) => ["offline", "silent"].includes(deviceStatus(d))).length;
    const alertsTotal = [...openAlerts.values()].reduce((a, b) => a + b, 0);
    const calBad = [...cal.values()].filter((c) => c && c.status && ["expired", "failed"].includes(c.status.status)).length;
    replace(tiles,
      tile("Devices", devices.length),
      tile("Online", online),
      tile("Offline or silent > 30 min", offline, offline ? "bad" : null),
      tile("Alerts needing a person (warning and above)", alertsTotal, alertsTotal ? "warn" : null, "/ui/alerts"),
      tile("Calibration expired or failed", calBad, calBad ? "bad" : null, "/ui/calibration"));
    replace(body, devices.length === 0
      ? empty("No devices yet.", "Loggers appear here when their first message arrives (or when an admin registers them).")
      : table([
        { label: "Device", cell: (d) => [link(`/ui/devices/${encodeURIComponent(d.id)}`, d.id), d.name ? h("div", { class: "muted" }, d.name) : null] },
        { label: "Kind", cell: (d) => [d.kind, ROLE_LABELS[d.role] ? h("div", { class: "muted", title: ROLE_NOTE }, ROLE_LABELS[d.role]) : null] },
        { label: "Status", cell: statusCell },
        { label: "Last reading", num: true, cell: (d) => (d.last_temp_c === null ? h("span", { class: "muted" }, "none") : temp(d.last_temp_c, 2)) },
        { label: "Reading time", cell: (d) => [time(d.last_ts), d.last_ts ? h("div", { class: "muted" }, ago(d.last_ts)) : null] },
        { label: "Battery", num: true, cell: batteryCell },
        { label: "Calibration", cell: (d) => calibrationBadge(cal.get(d.id)) },
        { label: "Alerts to handle", num: true, cell: (d) => (openAlerts.get(d.id)
          ? link(`/ui/alerts?view=inbox&device_id=${encodeURIComponent(d.id)}`, String(openAlerts.get(d.id))) : "0") },
        { label: "Profile", cell: (d) => d.profile_id || h("span", { class: "muted" }, "default") },
      ], rows.map((d) => ({ ...d, _class: { offline: "row-bad", silent: "row-warn" }[deviceStatus(d)] || null })),
      { caption: "Devices", emptyText: "No device matches the filter." }));
  }

  filterText.addEventListener("input", render);
  filterKind.addEventListener("change", render);

  async function refresh() {
    try {
      const [devs, alerts] = await Promise.all([
        api.get("/api/v1/devices", { limit: 10000 }),
        // the inbox (ISA-18.2): unacknowledged, or acknowledged but still active; one per episode
        api.get("/api/v1/alerts", { view: "inbox", min_severity: "warning", group: "episode", limit: 1000 }),
      ]);
      devices = devs;
      openAlerts = new Map();
      for (const a of alerts) if (a.device_id) openAlerts.set(a.device_id, (openAlerts.get(a.device_id) || 0) + 1);
      render();
      refreshCalibration(devices).then(render).catch(() => {});
    } catch (e) {
      if (!devices.length) replace(body, errorBox(e, "The device list"));
      throw e;
    }
  }
  await refresh().catch(() => {});
  return { refresh };
}

function tile(label, value, kind = null, href = null) {
  const inner = [h("div", { class: "v" }, String(value)), h("div", { class: "k" }, label)];
  return h("div", { class: `tile ${kind || ""}` }, href ? h("a", { href, class: "tile-link" }, inner) : inner);
}

export function statusCell(d) {
  switch (deviceStatus(d)) {
    case "offline": return badge("offline", "bad", `last message ${ago(d.last_seen_at)}`);
    case "silent": return badge(`silent ${ago(d.last_seen_at).replace(" ago", "")}`, "warn", "no message for more than 30 minutes");
    case "online": return badge("online", "ok");
    default: return badge("unknown", "neutral", "no message yet");
  }
}

function batteryCell(d) {
  if (d.battery_pct === null || d.battery_pct === undefined) return h("span", { class: "muted" }, "—");
  const pct = Math.round(d.battery_pct);
  return pct <= 20 ? badge(`${pct} % low`, "warn") : `${pct} %`;
}


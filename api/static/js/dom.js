// Small DOM helpers: build elements without innerHTML (no injection from API strings), format times in the
// user's time zone with the UTC instant on hover, and the empty / error / loading states every page uses.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const dateFmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "2-digit" });

export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

export function toMs(t) {
  if (t === null || t === undefined || t === "") return null;
  if (typeof t === "number") return t;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

export function utcText(ms) {
  // "2026-11-30 12:00:00 UTC" (milliseconds only when there are some); never "…Z UTC"
  return new Date(ms).toISOString().replace("T", " ").replace(/(\.000)?Z$/, "") + " UTC";
}

/** A <time> in the user's zone; hovering shows the UTC instant (title), machines read datetime. */
export function time(t, { dateOnly = false, empty = "—" } = {}) {
  const ms = toMs(t);
  if (ms === null) return h("span", { class: "muted" }, empty);
  const iso = new Date(ms).toISOString();
  return h("time", { datetime: iso, title: utcText(ms) }, (dateOnly ? dateFmt : dateTimeFmt).format(ms));
}

export function ago(t, now = Date.now()) {
  const ms = toMs(t);
  if (ms === null) return "never";
  const s = Math.round((now - ms) / 1000);
  if (s < 0) return "in the future";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  const min = ms / 60000;
  if (min < 1) return `${Math.round(ms / 1000)} s`;
  if (min < 120) return `${min.toFixed(min < 10 ? 1 : 0)} min`;
  const hours = min / 60;
  if (hours < 72) return `${hours.toFixed(1)} h`;
  return `${(hours / 24).toFixed(1)} days`;
}

/** A number as short as it is exact to ``digits`` decimals (8 -> "8", 0.30000000000000004 -> "0.3"): for
 * configured values and axis ticks, never a 17-digit float. */
export function fixed(x, digits = 3) {
  return x === null || x === undefined || Number.isNaN(Number(x)) ? "—" : String(Number(Number(x).toFixed(digits)));
}

export function temp(c, digits = 1) {
  return c === null || c === undefined || Number.isNaN(c) ? "—" : `${Number(c).toFixed(digits)} °C`;
}

export function badge(text, kind = "neutral", title = null) {
  return h("span", { class: `badge badge-${kind}`, title }, text);
}

export function empty(message, hint = null) {
  return h("div", { class: "state state-empty", role: "status" }, h("p", {}, message), hint && h("p", { class: "muted" }, hint));
}

export function errorBox(err, what = "This section") {
  const msg = err && err.message ? err.message : String(err);
  const code = err && err.code ? ` (${err.code})` : "";
  return h("div", { class: "state state-error", role: "alert" },
    h("p", {}, h("strong", {}, `${what} could not be loaded: `), msg + code),
    h("p", { class: "muted" }, "It will be retried automatically; the rest of the page keeps working."));
}

export function loading(what = "Loading") {
  return h("div", { class: "state state-loading", role: "status", "aria-live": "polite" }, `${what}…`);
}

export function section(title, ...children) {
  const id = "s-" + title.toLowerCase().replace(/[^a-z0-9]+/g, "-");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export function table(columns, rows, { caption = null, emptyText = "Nothing to show." } = {}) {
  if (!rows.length) return empty(emptyText);
  return h("div", { class: "table-wrap" }, h("table", {},
    caption && h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", { class: r._class || null },
      columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r))))))));
}

export function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

export function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** The whole page when what the URL names does not exist (a 404 of the API). */
export function notFound(main, what, backHref, backText) {
  replace(main, h("div", { class: "state state-empty", role: "alert" },
    h("h1", {}, `${what} does not exist`), h("p", {}, "Check the address, or ", h("a", { href: backHref }, backText), ".")));
}

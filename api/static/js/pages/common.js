// Pieces several pages share: calibration badges, alert/excursion labels, chart legends, range pickers.

import { badge, duration as fmtDuration, fixed, h, time, toMs } from "../dom.js";

/** /api/v1/calibration/devices/{id} -> a badge saying whether the device may be used and when it is due. */
export function calibrationBadge(c) {
  if (c === undefined) return h("span", { class: "muted" }, "…");
  if (c === null) return h("span", { class: "muted" }, "n/a");
  if (c.error) return badge("unavailable", "neutral", c.error);
  const s = c.status || {};
  const due = s.due_at ? [" due ", time(s.due_at, { dateOnly: true })] : null;
  // still valid, but the long-term drift line leaves the tolerance before the due date
  const drift = s.drift_predicted_ms ? h("span", { class: "drift-predicted" }, ", ",
    badge("drift predicted", "warn", "the as-found history predicts out of tolerance before the due date"), " ",
    time(s.drift_predicted_ms, { dateOnly: true })) : null;
  switch (s.status) {
    case "valid": return h("span", {}, badge("valid", "ok"), drift, h("span", { class: "muted" }, due));
    case "due_soon": return h("span", {}, badge("due soon", "warn"), drift, due);
    case "expired": return h("span", {}, badge("expired", "bad", s.reason), due);
    case "failed": return badge("failed", "bad", s.reason);
    default: return badge("no record", "neutral", "no calibration recorded for this device");
  }
}

export function severityBadge(sev) {
  const kind = { warning: "warn", alarm: "bad", critical: "crit", info: "info" }[sev] || "neutral";
  return badge(sev, kind);
}

export function alertStateBadge(state) {
  const kind = { open: "bad", acknowledged: "warn", resolved: "ok" }[state] || "neutral";
  return badge(state, kind);
}

const ISA_STATES = {
  unack_active: ["Unacknowledged, active", "bad"],
  ack_active: ["Acknowledged, still active", "warn"],
  unack_cleared: ["Cleared, unacknowledged", "info"],
  shelved: ["Shelved", "neutral"],
  normal: ["Normal", "ok"],
};

/** The ISA-18.2 state of an alert in words (docs/RULES.md "Alert handling"); the colour only helps. */
export function isaStateBadge(a) {
  const [text, kind] = ISA_STATES[a.isa_state] || [a.state, "neutral"];
  return badge(text, kind, `workflow: ${a.state}; condition: ${a.condition || "unknown"}`);
}

export const ALERT_LABELS = {
  "excursion.opened": "Excursion started", "excursion.alarm": "Excursion alarm", "excursion.closed": "Excursion ended",
  "excursion.revised": "Excursion revised", "device.offline": "Logger offline", "device.online": "Logger back online",
  "device.battery_low": "Battery low", "device.sensor_fault": "Sensor fault", "alert.acknowledged": "Acknowledged",
  "calibration.drift_predicted": "Drift predicted before the due date", "calibration.failed": "Calibration failed",
  "calibration.drift": "Calibration drift", "calibration.due": "Calibration due",
  "lot.stability_low": "Lot stability budget low", "lot.stability_exhausted": "Lot stability budget exhausted",
};

// codes some alerts carry as their reason (calibration drift), in words
const REASONS = { over_mpe: "error beyond the MPE", out_of_limits: "out of limits" };

export function alertLabel(type) {
  return ALERT_LABELS[type] || type;
}

/** One line saying what an alert is about, from its data (limit, peak, duration, battery...). */
export function alertSummary(a) {
  const d = a.data || {};
  const parts = [];
  if (d.direction && d.threshold_c !== undefined) parts.push(`${d.direction} ${fixed(d.threshold_c, 2)} °C${d.limit_id ? ` (${d.limit_id})` : ""}`);
  if (d.peak_c !== undefined && d.peak_c !== null) parts.push(`peak ${Number(d.peak_c).toFixed(1)} °C`);
  if (d.duration_ms) parts.push(fmtDuration(d.duration_ms));
  if (d.battery_pct !== undefined && d.battery_pct !== null) parts.push(`battery ${Math.round(d.battery_pct)} %`);
  if (d.reason) parts.push(REASONS[d.reason] || String(d.reason).replaceAll("_", " "));
  if (d.message) parts.push(String(d.message));
  // calibration, lot and decision alerts: their numbers in words, never raw epoch ms or long floats
  if (d.stage) parts.push(String(d.stage).replace("_", " ") + (d.due_at_ms ? ` (due ${dateText(d.due_at_ms)})` : ""));
  if (d.set_point_c !== undefined && d.set_point_c !== null) parts.push(`set point ${fixed(d.set_point_c, 2)} °C`);
  if (d.slope_c_per_year !== undefined && d.slope_c_per_year !== null) parts.push(`drift ${fixed(d.slope_c_per_year, 3)} °C/year`);
  if (d.predicted_out_of_tolerance_ms) parts.push(`out of tolerance ~${dateText(d.predicted_out_of_tolerance_ms)}`);
  if (d.decision) parts.push(`decision ${d.decision}`);
  if (d.used_ms !== undefined && d.budget_ms !== undefined) parts.push(`budget used ${fmtDuration(d.used_ms)} of ${fmtDuration(d.budget_ms)}`);
  if (d.meaning) parts.push(`${d.meaning}${d.printed_name ? ` by ${d.printed_name}` : ""}`);
  return parts.join(", ");
}

function dateText(ms) {
  return new Date(ms).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "2-digit" });
}

export function chartLegend({ limits = true, excursions = true } = {}) {
  return h("div", { class: "legend-note", "aria-hidden": "true" },
    h("span", {}, h("span", { class: "swatch sw-band" }), "min–max of each interval, line = mean"),
    limits && h("span", {}, h("span", { class: "swatch sw-limit" }), "beyond a limit of the profile"),
    excursions && h("span", {}, h("span", { class: "swatch sw-exc" }), "excursion (alarm)"),
    excursions && h("span", {}, h("span", { class: "swatch sw-warn" }), "excursion (warning)"));
}

export const RANGES = [["6h", 6 * 3600e3], ["24h", 24 * 3600e3], ["7d", 7 * 86400e3], ["30d", 30 * 86400e3],
  ["1y", 365 * 86400e3]];

/** Buttons choosing the time range of a chart (aria-pressed shows the current one). */
export function rangeButtons(current, onPick) {
  const box = h("div", { class: "range-buttons", role: "group", "aria-label": "Time range" });
  const draw = (cur) => box.replaceChildren(...RANGES.map(([k]) => h("button", {
    type: "button", class: "btn btn-small", "aria-pressed": String(k === cur),
    onclick: () => { draw(k); onPick(k); },
  }, k)));
  draw(current);
  return box;
}

export function rangeMs(key) {
  return (RANGES.find(([k]) => k === key) || RANGES[1])[1];
}

/** Excursion rows of the API -> spans for the chart (ms). */
export function excursionSpans(list) {
  return list.map((e) => ({
    start_ms: typeof e.start === "number" ? e.start : Date.parse(e.start ?? e.start_ts),
    end_ms: e.end === null || e.end === undefined ? null : (typeof e.end === "number" ? e.end : Date.parse(e.end)),
    severity: e.severity,
  }));
}

const SILENT_AFTER_MS = 30 * 60000; // the profiles' default offline_after: a logger this quiet needs a look

/** offline (its last will said so), silent (no message for 30 min), online, or unknown (never heard). */
export function deviceStatus(d, now = Date.now()) {
  const seen = toMs(d.last_seen_at);
  if (d.online === false) return "offline";
  if (seen === null) return "unknown";
  if (now - seen > SILENT_AFTER_MS) return "silent";
  return "online";
}


// A device's calibration: its state, and per set point the drift chart: as-found errors of past calibrations,
// the least-squares drift line extended to the predicted out-of-tolerance date, the tolerance (±MPE) and the
// acceptance limits (±(MPE − U)), and the next due date.

import { api, getOptional } from "../api.js";
import { badge, dl, empty, errorBox, fixed, h, link, loading, replace, section, table, time, toMs } from "../dom.js";
import { makeChart } from "../chart.js";
import { calibrationBadge } from "./common.js";
import { sessionStateBadge } from "./calibration.js";

const DAY = 86400e3;

/** The same unweighted least squares as the server (coldtrace/calibration_drift.fit_drift): e = a + b·days. */
export function fitLine(history) {
  const n = history.length;
  if (n < 2) return null;
  const t0 = Math.min(...history.map((p) => p.ts));
  const xs = history.map((p) => (p.ts - t0) / DAY), ys = history.map((p) => p.error_c);
  const xbar = xs.reduce((a, b) => a + b, 0) / n, ybar = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0, sxy = 0;
  for (let i = 0; i < n; i++) { sxx += (xs[i] - xbar) ** 2; sxy += (xs[i] - xbar) * (ys[i] - ybar); }
  if (sxx === 0) return null;
  const b = sxy / sxx, a = ybar - b * xbar;
  return (ts) => a + b * ((ts - t0) / DAY);
}

export async function mount(main, ctx) {
  const id = ctx.params[0];
  const stateBox = h("div", {}, loading("Loading the calibration state"));
  const driftBox = h("div", {}, loading("Loading the drift history"));
  const sessionsBox = h("div", {}, loading("Loading sessions"));
  replace(main, h("div", { class: "crumbs" }, link("/ui/calibration", "Calibration"), " / ", id),
    h("h1", {}, `Calibration of ${id}`, h("span", { class: "sub" }, link(`/ui/devices/${encodeURIComponent(id)}`, "readings"))),
    section("State", stateBox), h("div", { id: "drift" }, driftBox), section("Sessions of this device", sessionsBox));
  const charts = [];
  let lastKey = null;

  async function refresh() {
    const [st, drift, sessions] = await Promise.all([
      getOptional(`/api/v1/calibration/devices/${encodeURIComponent(id)}`).catch((e) => ({ error: e.message })),
      api.get(`/api/v1/calibration/devices/${encodeURIComponent(id)}/drift`).catch((e) => { replace(driftBox, errorBox(e, "The drift history")); throw e; }),
      api.get("/api/v1/calibration/sessions", { device_id: id, limit: 50 }).catch(() => null),
    ]);
    const s = (st && st.status) || {};
    replace(stateBox, dl([
      ["Status", calibrationBadge(st)],
      ["Last calibrated", time(s.last_calibrated_at)],
      ["Next due", time(s.due_at, { dateOnly: true })],
      ["Certificate", s.certificate_ref || "none on record"],
      s.reason && ["Why", s.reason],
      ["Usable for shipments", s.usable === false ? badge("no", "bad") : s.usable === true ? badge("yes", "ok") : "—"],
    ]));
    if (sessions) {
      replace(sessionsBox, table([
        { label: "Session", cell: (x) => link(`/ui/calibration/sessions/${encodeURIComponent(x.id)}`, x.id) },
        { label: "State", cell: (x) => sessionStateBadge(x.state) },
        { label: "Kind", cell: (x) => (x.kind || "").replace("_", "-") },
        { label: "Started", cell: (x) => time(x.started_at) },
        { label: "Completed", cell: (x) => time(x.completed_at) },
      ], sessions, { emptyText: "No session for this device." }));
    }
    const key = JSON.stringify(drift);
    if (key === lastKey) return;
    lastKey = key;
    renderDrift(drift.set_points, toMs(s.due_at));
  }

  function renderDrift(sps, dueMs) {
    charts.splice(0).forEach((c) => c.destroy());
    if (!sps.length) {
      replace(driftBox, section("Drift", empty("No as-found history for this device yet.",
        "The drift chart needs calibrations of this device (sessions, or results imported from external certificates).")));
      return;
    }
    const cards = sps.map((sp) => {
      const box = h("div", { class: "chart-box drift-chart", dataset: { setPoint: sp.set_point_c } });
      const pred = sp.predicted_out_of_tolerance_ms;
      const summary = dl([
        ["Calibrations", String(sp.n)],
        ["Drift", sp.slope_c_per_year === null ? "needs two calibrations" :
          `${sp.slope_c_per_year >= 0 ? "+" : ""}${sp.slope_c_per_year.toFixed(3)} °C/year` +
          (sp.slope_se_c_per_year !== null ? ` ± ${sp.slope_se_c_per_year.toFixed(3)}` : "") + (sp.t_stat !== null ? ` (t = ${sp.t_stat.toFixed(1)})` : "")],
        ["Predicted out of tolerance", pred ? time(pred, { dateOnly: true }) : "not within the trend"],
        ["Next due", time(sp.next_due_ms ?? dueMs, { dateOnly: true })],
        ["Tolerance", `MPE ±${fixed(sp.mpe_c)} °C, U = ${fixed(sp.U_c)} °C (acceptance ±${(sp.mpe_c - sp.U_c).toFixed(2)} °C)`],
        ["Verdict", sp.drift ? badge(sp.reason === "before_due" ? "predicted out of tolerance before the due date" : "drifting faster than allowed", "bad")
          : badge(pred ? "stays within acceptance until after the due date" : "no trend toward the tolerance", "ok")],
      ]);
      return { sp, box, card: section(`Set point ${fixed(sp.set_point_c, 2)} °C`, box, h("div", { class: "card-sub" }, summary)) };
    });
    replace(driftBox, cards.map((c) => c.card));
    for (const { sp, box } of cards) {
      if (sp.history.length < 1) { replace(box, empty("No as-found result at this set point.")); continue; }
      charts.push(driftChart(box, sp, dueMs));
    }
  }

  await refresh().catch(() => {});
  return { refresh, interval: 15000 };
}

function driftChart(box, sp, dueMs) {
  const hist = [...sp.history].sort((a, b) => a.ts - b.ts);
  const pred = sp.predicted_out_of_tolerance_ms;
  const due = sp.next_due_ms ?? dueMs;
  const last = hist[hist.length - 1].ts;
  const tEnd = Math.max(last + 90 * DAY, ...[pred, due, Date.now()].filter((v) => v !== null && v !== undefined && v < last + 20 * 365 * DAY));
  const line = fitLine(hist);
  const xs = [...new Set([...hist.map((p) => p.ts), tEnd])].sort((a, b) => a - b);
  const byTs = new Map(hist.map((p) => [p.ts, p.error_c]));
  const data = [xs.map((t) => t / 1000), xs.map((t) => (byTs.has(t) ? byTs.get(t) : null)), xs.map((t) => (line ? line(t) : null))];
  const pad = (tEnd - hist[0].ts) * 0.04 + 15 * DAY;
  const acc = sp.mpe_c - sp.U_c;
  const markers = [{ ts_ms: Date.now(), label: "today", color: "#5a6573" }];
  if (due) markers.push({ ts_ms: due, label: `next due ${new Date(due).toLocaleDateString()}`, color: "#1d4ed8", row: 1 });
  if (pred) markers.push({ ts_ms: pred, label: `predicted out of tolerance ${new Date(pred).toLocaleDateString()}`, color: "#b3261e", row: 2 });
  const chart = makeChart(box, "drift", data, {
    height: 300, xRange: [(hist[0].ts - pad) / 1000, (tEnd + pad) / 1000], markers,
    label: `As-found error at ${fixed(sp.set_point_c, 2)} °C with drift trend`,
    hlines: [
      { value: sp.mpe_c, label: `+MPE ${fixed(sp.mpe_c)} °C`, color: "#b3261e" },
      { value: -sp.mpe_c, label: `−MPE −${fixed(sp.mpe_c)} °C`, color: "#b3261e", below: true },
      { value: acc, label: `acceptance +${acc.toFixed(2)} °C (MPE − U)`, color: "#a15c00", dash: [5, 4], below: true },
      { value: -acc, label: `acceptance −${acc.toFixed(2)} °C`, color: "#a15c00", dash: [5, 4] },
      { value: 0, color: "rgba(0,0,0,0.25)" },
    ],
  });
  return chart;
}

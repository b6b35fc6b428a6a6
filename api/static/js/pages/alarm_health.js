// Alarm system health (ISA-18.2 / IEC 62682 performance monitoring): alarms per 10 minutes with the
// "very likely acceptable" (1) and flood (more than 10) lines, floods, standing and chattering alarms, and the
// ten most frequent alarm sources. Everything comes from GET /api/v1/alarm-health.

import { api } from "../api.js";
import { badge, duration, empty, errorBox, h, link, loading, replace, section, table, time, utcText } from "../dom.js";
import { alertLabel, severityBadge } from "./common.js";

const RANGES = [["24h", 24 * 3600e3], ["7d", 7 * 86400e3], ["30d", 30 * 86400e3]];
const COLORS = { bar: "#1f4e9c", ok: "#2e7d32", flood: "#b3261e", axis: "#39414d", grid: "rgba(0,0,0,0.08)",
  floodBand: "rgba(200, 30, 30, 0.12)" };

export async function mount(main, ctx) {
  let range = RANGES.some(([k]) => k === ctx.query.get("range")) ? ctx.query.get("range") : "24h";
  const tiles = h("div", { class: "tiles", "aria-label": "Alarm system health summary" });
  const chartBox = h("div", { class: "chart-box", id: "alarm-rate-chart" }, loading("Loading the alarm rate"));
  const floodBox = h("div", {}, loading("Loading floods"));
  const standingBox = h("div", {}, loading("Loading standing alarms"));
  const chatterBox = h("div", {}, loading("Loading chattering alarms"));
  const topBox = h("div", {}, loading("Loading the most frequent alarms"));
  const buttons = h("div", { class: "range-buttons", role: "group", "aria-label": "Time range" });
  const drawButtons = () => buttons.replaceChildren(...RANGES.map(([k]) => h("button", {
    type: "button", class: "btn btn-small", "aria-pressed": String(k === range),
    onclick: () => { range = k; history.replaceState(null, "", `?range=${k}`); drawButtons(); refresh().catch(() => {}); },
  }, k)));
  drawButtons();
  replace(main,
    h("h1", {}, "Alarm system health"),
    h("p", { class: "muted" }, "How the alarm system performs for the people who answer it (ISA-18.2 / IEC 62682). ",
      "An alarm is an alert of severity warning, alarm or critical, counted when ColdTrace raised it. About 1 alarm per ",
      "10 minutes is very likely acceptable for one person; more than 10 in 10 minutes is a flood."),
    h("div", { class: "filters" }, buttons),
    tiles,
    section("Alarms per 10 minutes", chartBox,
      h("div", { class: "legend-note", "aria-hidden": "true" },
        h("span", {}, h("span", { class: "swatch sw-rate" }), "alarms raised in each 10 minutes"),
        h("span", {}, h("span", { class: "swatch sw-ok" }), "1 per 10 min: very likely acceptable"),
        h("span", {}, h("span", { class: "swatch sw-flood" }), "more than 10: flood"))),
    h("div", { class: "grid" },
      section("Floods (more than 10 alarms in 10 minutes)", floodBox),
      section("Standing alarms (active for more than 24 h)", standingBox)),
    section("Chattering alarms (3 or more activations in 1 minute)", chatterBox),
    section("The 10 most frequent alarms", topBox));

  let plot = null, ro = null;

  function drawChart(rep) {
    const b = rep.rate.buckets;
    const x = b.map((r) => r.ts_ms / 1000), y = b.map((r) => r.alarms);
    const floods = rep.floods.items;
    const label = `Alarms per 10 minutes from ${utcText(rep.from_ms)} to ${utcText(rep.to_ms)}: ${rep.alarms} alarms, `
      + `at most ${rep.rate.max_per_10_min} in one 10-minute interval, ${floods.length} flood${floods.length === 1 ? "" : "s"}`;
    // the whole range, the last interval included (a bar is drawn from its interval's start)
    const xRange = [x.length ? x[0] : rep.from_ms / 1000, (x.length ? x[x.length - 1] : rep.to_ms / 1000) + rep.rate.bucket_ms / 1000];
    if (plot) {
      plot.xRange = xRange;
      plot.setData([x, y]);
      chartBox.querySelector(".chart-canvas").setAttribute("aria-label", label);
      plot.floods = floods;
      return;
    }
    const canvasHost = h("div", { class: "chart-canvas", role: "img", "aria-label": label });
    replace(chartBox, h("figure", { class: "chart", role: "group", "aria-label": "Alarm rate chart" }, canvasHost));
    const width = Math.max(320, chartBox.clientWidth || 900);
    const uPlot = window.uPlot;
    plot = new uPlot({
      width, height: 260,
      series: [
        { label: "Time", value: (u, v) => (v === null ? "hover the chart" : new Date(v * 1000).toLocaleString()) },
        { label: "Alarms", stroke: COLORS.bar, fill: "rgba(31, 78, 156, 0.45)", width: 1,
          paths: uPlot.paths.bars({ size: [0.9, 40], align: 1 }), points: { show: false } },
      ],
      scales: { x: { time: true, range: (u) => u.xRange || xRange }, y: { range: (u, lo, hi) => [0, Math.max(12, Math.ceil((hi || 0) * 1.15))] } },
      axes: [
        { stroke: COLORS.axis, grid: { stroke: COLORS.grid }, size: 54, space: 60 },
        { stroke: COLORS.axis, grid: { stroke: COLORS.grid }, label: "alarms / 10 min", size: 56,
          values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? String(v) : "")) },
      ],
      legend: { live: true },
      plugins: [thresholdPlugin()],
    }, [x, y], canvasHost);
    plot.floods = floods;
    ro = new ResizeObserver(() => {
      const w = Math.max(320, chartBox.clientWidth);
      if (plot && Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: 260 });
    });
    ro.observe(chartBox);
  }

  function render(rep) {
    const r = rep.rate, fl = rep.floods;
    const rateKind = r.mean_per_10_min > r.manageable_per_10_min ? "bad" : r.mean_per_10_min > r.acceptable_per_10_min ? "warn" : null;
    replace(tiles,
      tile("Alarms in range", rep.alarms, null, `warning ${rep.by_severity.warning} · alarm ${rep.by_severity.alarm} · critical ${rep.by_severity.critical}`),
      tile("Mean per 10 min", r.mean_per_10_min.toFixed(2), rateKind, "target: 1 or fewer"),
      tile("Peak per 10 min", r.max_per_10_min, r.max_per_10_min > 10 ? "bad" : r.max_per_10_min > 2 ? "warn" : null),
      tile("Floods", fl.count, fl.count ? "bad" : null, `${fl.time_in_flood_pct.toFixed(1)} % of the time`),
      tile("Standing", rep.standing.items.length, rep.standing.items.length ? "warn" : null, "active > 24 h"),
      tile("Chattering", rep.chattering.items.length, rep.chattering.items.length ? "warn" : null, "≥ 3 in 1 min"));
    drawChart(rep);
    replace(floodBox, table([
      { label: "Start", cell: (f) => time(f.start) },
      { label: "End", cell: (f) => time(f.end) },
      { label: "Duration", num: true, cell: (f) => duration(f.duration_ms) },
      { label: "Alarms", num: true, cell: (f) => String(f.alarms) },
      { label: "Peak in 10 min", num: true, cell: (f) => String(f.peak) },
    ], fl.items, { caption: "Alarm floods", emptyText: "No flood in this range." }));
    replace(standingBox, table([
      { label: "Source", cell: (s) => sourceCell(s) },
      { label: "Severity", cell: (s) => severityBadge(s.severity) },
      { label: "Active since", cell: (s) => time(s.active_since) },
      { label: "Active for", num: true, cell: (s) => duration(s.active_ms) },
      { label: "State", cell: (s) => badge(s.state, s.state === "open" ? "bad" : "warn") },
    ], rep.standing.items, { caption: "Standing alarms", emptyText: "No alarm has been active for more than 24 hours." }));
    replace(chatterBox, table([
      { label: "Source", cell: (s) => sourceCell(s) },
      { label: "Activations", num: true, cell: (s) => String(s.activations) },
      { label: "Most in 1 min", num: true, cell: (s) => String(s.most_in_1_min) },
      { label: "Chattering episodes", num: true, cell: (s) => String(s.episodes) },
      { label: "First chattered", cell: (s) => time(s.first_chattered_at) },
    ], rep.chattering.items, { caption: "Chattering alarms", emptyText: "No alarm chattered in this range." }));
    replace(topBox, rep.top.length ? table([
      { label: "#", num: true, cell: (s) => String(rep.top.indexOf(s) + 1) },
      { label: "Source", cell: (s) => sourceCell(s) },
      { label: "Worst severity", cell: (s) => severityBadge(s.severity) },
      { label: "Alarms", num: true, cell: (s) => String(s.alarms) },
      { label: "Share", num: true, cell: (s) => `${s.share_pct.toFixed(1)} %` },
      { label: "Last", cell: (s) => time(s.last_at) },
    ], rep.top, { caption: "Most frequent alarms" }) : empty("No alarm in this range."));
  }

  async function refresh() {
    const to = Date.now() + 60_000, from = to - RANGES.find(([k]) => k === range)[1];
    try {
      render(await api.get("/api/v1/alarm-health", { from, to }));
    } catch (e) {
      replace(tiles);
      replace(chartBox, errorBox(e, "The alarm system health"));
      throw e;
    }
  }
  await refresh().catch(() => {});
  return { refresh, interval: 15000 };
}

function tile(label, value, kind = null, sub = null) {
  return h("div", { class: `tile ${kind || ""}` }, h("div", { class: "v" }, String(value)), h("div", { class: "k" }, label),
    sub && h("div", { class: "k muted" }, sub));
}

function sourceCell(s) {
  const dev = s.device_id ? link(`/ui/devices/${encodeURIComponent(s.device_id)}`, s.device_id) : h("span", { class: "muted" }, "no device");
  const detail = typeof s.detail === "number" ? `${s.detail} °C` : s.detail; // a set point
  const what = [alertLabel(s.type), detail !== null && detail !== undefined ? ` (${detail})` : ""].join("");
  const alerts = s.device_id ? link(`/ui/alerts?device_id=${encodeURIComponent(s.device_id)}`, "its alerts") : null;
  return [dev, " ", h("span", {}, what), alerts ? [" · ", alerts] : null];
}

/** Lines at 1 (very likely acceptable) and 10 (flood threshold) alarms per 10 min, flood periods shaded. */
function thresholdPlugin() {
  return {
    hooks: {
      drawClear: [(u) => {
        const { ctx } = u, { left, top, width, height } = u.bbox;
        ctx.save();
        ctx.beginPath(); ctx.rect(left, top, width, height); ctx.clip();
        ctx.fillStyle = COLORS.floodBand;
        for (const f of u.floods || []) {
          const x0 = u.valToPos(f.start / 1000, "x", true), x1 = u.valToPos(f.end / 1000, "x", true);
          ctx.fillRect(x0, top, Math.max(3, x1 - x0), height);
        }
        ctx.restore();
      }],
      draw: [(u) => {
        const { ctx } = u, { left, width } = u.bbox;
        ctx.save();
        ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
        ctx.textAlign = "left";
        ctx.textBaseline = "alphabetic";
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.setLineDash([6, 4]);
        for (const [v, color, text] of [[1, COLORS.ok, "1 / 10 min (acceptable)"], [10, COLORS.flood, "10 / 10 min (flood above)"]]) {
          const y = u.valToPos(v, "y", true);
          ctx.strokeStyle = color; ctx.fillStyle = color;
          ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
          ctx.fillText(text, left + 6 * devicePixelRatio, y - 4 * devicePixelRatio);
        }
        ctx.restore();
      }],
    },
  };
}

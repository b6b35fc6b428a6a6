// Charts with uPlot (vendored from the npm package; window.uPlot). Temperature charts draw the mean of each
// downsampled bucket with its min/max band, the profile's limits as shaded bands beyond each threshold, and
// excursions as shaded time spans. Axis times are in the user's time zone (uPlot's default).

import { fixed, h, temp, utcText } from "./dom.js";

const C = {
  mean: "#1f4e9c", band: "rgba(31, 78, 156, 0.18)", grid: "rgba(0,0,0,0.08)", axis: "#39414d",
  alarm: "rgba(200, 30, 30, 0.05)", alarmLine: "#b3261e", warning: "rgba(230, 150, 0, 0.06)", warningLine: "#a15c00",
  critical: "rgba(120, 0, 80, 0.06)", criticalLine: "#7a0052",
  excAlarm: "rgba(200, 30, 30, 0.22)", excWarning: "rgba(230, 150, 0, 0.25)", excCritical: "rgba(120, 0, 80, 0.25)",
};

const sevColor = (s) => (s === "warning" ? [C.warning, C.warningLine] : s === "critical"
  ? [C.critical, C.criticalLine] : [C.alarm, C.alarmLine]);
const excColor = (s) => (s === "warning" ? C.excWarning : s === "critical" ? C.excCritical : C.excAlarm);

/**
 * Buckets of /chart -> uPlot columns [x s, mean, min, max], with a null where data is missing: a gap is a
 * silence longer than the profile's max_gap_ms (30 min by default) or than two intervals, whichever is longer
 * (with fine intervals most buckets are empty between two readings; that is no gap).
 */
export function bucketsToData(buckets, intervalMs, maxGapMs = 30 * 60000) {
  const x = [], mean = [], lo = [], hi = [];
  const gap = Math.max(2 * intervalMs, maxGapMs);
  let prev = null;
  for (const b of buckets) {
    if (prev !== null && b.ts_ms - prev > gap) {
      x.push((prev + intervalMs) / 1000); mean.push(null); lo.push(null); hi.push(null);
    }
    x.push(b.ts_ms / 1000); mean.push(b.mean_c); lo.push(b.min_c); hi.push(b.max_c);
    prev = b.ts_ms;
  }
  return [x, mean, lo, hi];
}

/** The limits worth showing: the innermost threshold on each side, plus any the data reaches. */
function visibleLimits(limits, dmin, dmax) {
  const seen = new Map();
  for (const l of limits || []) {
    const key = `${l.direction}:${l.threshold_c}`;
    const rank = { warning: 0, alarm: 1, critical: 2 }[l.severity] ?? 1;
    if (!seen.has(key) || rank > seen.get(key).rank) seen.set(key, { ...l, rank });
  }
  const all = [...seen.values()];
  const above = all.filter((l) => l.direction === "above").sort((a, b) => a.threshold_c - b.threshold_c);
  const below = all.filter((l) => l.direction === "below").sort((a, b) => b.threshold_c - a.threshold_c);
  const keep = (arr, reached) => arr.filter((l, i) => i === 0 || reached(l.threshold_c));
  return [...keep(above, (t) => dmax !== null && dmax >= t - 1), ...keep(below, (t) => dmin !== null && dmin <= t + 1)];
}

const hm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dm = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const mo = new Intl.DateTimeFormat(undefined, { month: "short" });

/** Time axis labels in the user's locale and zone: times, with the date where the day changes. */
function timeAxisValues(u, splits, axisIdx, space, incr) {
  let prevDay = null;
  return splits.map((sec) => {
    if (sec === null) return null;
    const d = new Date(sec * 1000);
    if (incr >= 28 * 86400) {
      const year = d.getFullYear();
      const label = year !== prevDay ? `${mo.format(d)}\n${year}` : mo.format(d);
      prevDay = year;
      return label;
    }
    if (incr >= 86400) return dm.format(d);
    const day = d.toDateString();
    const label = day !== prevDay ? `${hm.format(d)}\n${dm.format(d)}` : hm.format(d);
    prevDay = day;
    return label;
  });
}

const RANK = { info: 0, warning: 1, alarm: 2, critical: 3 };

/** A warning span inside an alarm span of the same episode would only muddy the colour: keep the worst. */
export function dropContained(spans) {
  const end = (e) => (e.end_ms === null || e.end_ms === undefined ? Infinity : e.end_ms);
  const out = spans.filter((e) => !spans.some((o) => o !== e && (RANK[o.severity] ?? 2) > (RANK[e.severity] ?? 2)
    && o.start_ms <= e.start_ms && end(o) >= end(e)));
  return out.sort((a, b) => (RANK[a.severity] ?? 2) - (RANK[b.severity] ?? 2));
}

function limitsPlugin(getOpts) {
  return {
    hooks: {
      drawClear: [(u) => {
        const { limits = [], excursions = [], markers = [] } = getOpts();
        const ctx = u.ctx, { left, top, width, height } = u.bbox;
        ctx.save();
        ctx.beginPath(); ctx.rect(left, top, width, height); ctx.clip();
        for (const l of limits) {
          const y = u.valToPos(l.threshold_c, "y", true);
          const [fill] = sevColor(l.severity);
          ctx.fillStyle = fill;
          if (l.direction === "above") ctx.fillRect(left, top, width, Math.max(0, y - top));
          else ctx.fillRect(left, y, width, Math.max(0, top + height - y));
        }
        const xmax = u.scales.x.max;
        for (const e of dropContained(excursions)) {
          const x0 = u.valToPos(e.start_ms / 1000, "x", true);
          const x1 = u.valToPos((e.end_ms ?? xmax * 1000) / 1000, "x", true);
          ctx.fillStyle = excColor(e.severity);
          ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
        }
        ctx.restore();
        ctx.save();
        ctx.beginPath(); ctx.rect(left, top, width, height); ctx.clip();
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
        ctx.textAlign = "left";
        ctx.textBaseline = "alphabetic";
        for (const l of limits) {
          const y = u.valToPos(l.threshold_c, "y", true);
          const [, line] = sevColor(l.severity);
          ctx.strokeStyle = line; ctx.fillStyle = line;
          ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
          const label = `${l.direction === "above" ? "max" : "min"} ${fixed(l.threshold_c, 2)} °C (${l.severity})`;
          ctx.fillText(label, left + 6 * devicePixelRatio, l.direction === "above" ? y - 4 * devicePixelRatio : y + 14 * devicePixelRatio);
        }
        for (const m of markers) {
          const x = u.valToPos(m.ts_ms / 1000, "x", true);
          if (x < left || x > left + width) continue;
          ctx.strokeStyle = m.color || "#333"; ctx.fillStyle = m.color || "#333";
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
          const tw = ctx.measureText(m.label).width;
          const tx = x + tw + 8 * devicePixelRatio > left + width ? x - tw - 4 * devicePixelRatio : x + 4 * devicePixelRatio;
          ctx.fillText(m.label, tx, top + (14 + 16 * (m.row || 0)) * devicePixelRatio);
        }
        ctx.restore();
      }],
    },
  };
}

function yRange(data, limits, hlines) {
  let lo = Infinity, hi = -Infinity;
  for (const col of data.slice(1)) for (const v of col) if (v !== null && v !== undefined) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  for (const l of limits) { lo = Math.min(lo, l.threshold_c); hi = Math.max(hi, l.threshold_c); }
  for (const v of hlines) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) return [0, 10];
  const pad = Math.max(0.5, (hi - lo) * 0.08);
  return [Math.floor((lo - pad) * 2) / 2, Math.ceil((hi + pad) * 2) / 2];
}

/**
 * A chart in `container`. kind "temp": data from bucketsToData; kind "drift": [x s, as-found error, fit].
 * opts: {limits, excursions:[{start_ms,end_ms,severity}], markers:[{ts_ms,label,color}], xRange:[s,s], label}
 */
export function makeChart(container, kind, data, opts = {}) {
  let state = { ...opts };
  const dmin = Math.min(...data.slice(2, 3).flat().filter((v) => v !== null), Infinity);
  const dmax = Math.max(...data.slice(3, 4).flat().filter((v) => v !== null), -Infinity);
  const shown = () => (kind === "temp" ? visibleLimits(state.limits, Number.isFinite(dmin) ? dmin : null, Number.isFinite(dmax) ? dmax : null) : []);
  const plugOpts = () => ({ limits: shown(), excursions: state.excursions || [], markers: state.markers || [] });
  // the legend's values follow the cursor; away from the plot it invites a hover instead of printing "—"
  const fmtT = (u, v) => (v === null ? "" : temp(v, 2));
  const series = kind === "temp"
    ? [{ label: "Time", value: (u, v) => (v === null ? "hover the chart" : new Date(v * 1000).toLocaleString()) },
      { label: "Mean", stroke: C.mean, width: 1.5, value: fmtT },
      { label: "Min", stroke: "rgba(31,78,156,0.35)", width: 0.5, value: fmtT },
      { label: "Max", stroke: "rgba(31,78,156,0.35)", width: 0.5, value: fmtT }]
    : [{ label: "Date", value: (u, v) => (v === null ? "hover the chart" : new Date(v * 1000).toLocaleDateString()) },
      { label: "As-found error", stroke: C.mean, paths: () => null, points: { show: true, size: 10, fill: C.mean }, value: fmtT },
      { label: "Drift fit", stroke: C.alarmLine, width: 2, dash: [8, 4], points: { show: false }, value: fmtT }];
  const hl = state.hlines || [];
  const width = Math.max(320, container.clientWidth || 800);
  const options = {
    width, height: state.height || 320, series,
    bands: kind === "temp" ? [{ series: [3, 2], fill: C.band }] : [],
    scales: {
      x: { time: true, range: state.xRange ? () => state.xRange : undefined },
      y: { range: (u) => yRange(u.data, shown(), hl.map((l) => l.value)) },
    },
    axes: [
      { stroke: C.axis, grid: { stroke: C.grid }, values: timeAxisValues, size: 54, space: 60 },
      { stroke: C.axis, grid: { stroke: C.grid }, label: "°C", size: 56, values: (u, vals) => vals.map((v) => fixed(v, 4)) },
    ],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    plugins: [limitsPlugin(plugOpts), hlinePlugin(() => hl), firstDrawMark()],
  };
  const wrap = h("figure", { class: "chart", role: "group", "aria-label": state.label || "chart" });
  const canvasHost = h("div", { class: "chart-canvas", role: "img", "aria-label": describe(kind, data, state) });
  wrap.append(canvasHost);
  container.replaceChildren(wrap);
  const plot = new window.uPlot(options, data, canvasHost);
  const ro = new ResizeObserver(() => {
    const w = Math.max(320, container.clientWidth);
    if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: options.height });
  });
  ro.observe(container);
  return {
    plot,
    update(newData, newOpts = {}) {
      state = { ...state, ...newOpts };
      canvasHost.setAttribute("aria-label", describe(kind, newData, state));
      plot.setData(newData);
    },
    destroy() { ro.disconnect(); plot.destroy(); },
  };
}

/** performance mark "ct:first-chart" at the page's first drawn chart (read by bench/dashboard.py). */
function firstDrawMark() {
  return { hooks: { draw: [() => {
    if (!performance.getEntriesByName("ct:first-chart").length) performance.mark("ct:first-chart");
  }] } };
}

function hlinePlugin(get) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u, { left, width } = u.bbox;
        ctx.save();
        ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
        ctx.textAlign = "left";
        ctx.textBaseline = "alphabetic";
        for (const l of get()) {
          const y = u.valToPos(l.value, "y", true);
          ctx.strokeStyle = l.color; ctx.fillStyle = l.color; ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.setLineDash(l.dash || []);
          ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
          if (l.label) ctx.fillText(l.label, left + 6 * devicePixelRatio, l.below ? y + 14 * devicePixelRatio : y - 4 * devicePixelRatio);
        }
        ctx.restore();
      }],
    },
  };
}

function describe(kind, data, state) {
  const xs = data[0].filter((v) => v !== null);
  if (!xs.length) return `${state.label || "Chart"}: no data`;
  const vals = data[1].filter((v) => v !== null);
  const from = utcText(xs[0] * 1000), to = utcText(xs[xs.length - 1] * 1000);
  const lo = Math.min(...(kind === "temp" ? data[2] : data[1]).filter((v) => v !== null));
  const hi = Math.max(...(kind === "temp" ? data[3] : data[1]).filter((v) => v !== null));
  const exc = (state.excursions || []).length;
  return `${state.label || "Chart"}: ${vals.length} points from ${from} to ${to}, lowest ${temp(lo, 2)}, highest ${temp(hi, 2)}` +
    (kind === "temp" ? `, ${exc} excursion${exc === 1 ? "" : "s"} shaded` : "");
}

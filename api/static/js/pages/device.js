// One device: its facts, the chart of its readings (min/max band, profile limits, excursions shaded), its
// excursions and its recent alerts. The chart follows the chosen range up to now, refreshed live.

import { api, getOptional } from "../api.js";
import { ago, badge, dl, duration, empty, errorBox, fixed, h, link, loading, notFound, replace, section, table, temp, time } from "../dom.js";
import { bucketsToData, makeChart } from "../chart.js";
import { statusCell } from "./fleet.js";
import { alertLabel, calibrationBadge, chartLegend, excursionSpans, isaStateBadge, rangeButtons, rangeMs, severityBadge } from "./common.js";

export async function mount(main, ctx) {
  const id = ctx.params[0];
  try {
    await api.get(`/api/v1/devices/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) { notFound(main, `Device ${id}`, "/ui/fleet", "go back to the fleet"); return null; }
  }
  let range = ctx.query.get("range") || "24h";
  const facts = h("div", {}, loading("Loading the device"));
  const chartBox = h("div", { class: "chart-box" }, loading("Loading the chart"));
  const chartNote = h("p", { class: "muted", id: "chart-note" });
  const limitNote = h("p", { class: "muted" });
  const excBox = h("div", {}, loading("Loading excursions"));
  const summaryBox = h("div", { class: "card-sub" });
  const alertBox = h("div", {}, loading("Loading alerts"));
  replace(main,
    h("div", { class: "crumbs" }, link("/ui/fleet", "Fleet"), " / ", id),
    h("h1", {}, `Device ${id}`),
    h("div", { class: "grid" }, section("Facts", facts), section("Recent alerts (warning and above)", alertBox)),
    section("Temperature",
      h("div", { class: "filters" }, rangeButtons(range, (k) => { range = k; history.replaceState(null, "", `?range=${k}`); refresh(true); })),
      chartBox, chartLegend(), chartNote, limitNote, summaryBox),
    section("Excursions in this range", excBox));

  let chart = null, device = null, limits = null, maxGapMs = undefined;

  let profileName = null;
  async function loadLimits() {
    if (limits !== null) return;
    const assigned = await getOptional(`/api/v1/devices/${encodeURIComponent(id)}/profile`).catch(() => null);
    const pid = (assigned && assigned.effective_profile_id) || device.profile_id || "2-8C";
    const p = await getOptional(`/api/v1/profiles/${encodeURIComponent(pid)}`).catch(() => null);
    profileName = p ? `${p.name || pid}` : pid;
    const prof = p && (p.limits ? p : p.profile || p.body);
    limits = (prof && prof.limits) || [];
    maxGapMs = (prof && prof.max_gap_ms) || undefined;
    if (!p) replace(limitNote, `The limits of profile ${pid} are not available from the API; the chart shows the readings and excursions only.`);
  }

  let summaryAt = 0;
  async function refresh(rebuild = false) {
    // every request starts now; the chart is drawn as soon as its own data is in (the rest follows)
    const to = Date.now() + 60_000, from = to - rangeMs(range);
    const width = Math.max(320, chartBox.clientWidth || 900);
    const enc = encodeURIComponent(id);
    const chartP = settle(api.get(`/api/v1/devices/${enc}/chart`, { from, to, points: Math.min(2000, Math.round(width)) }));
    const excP = settle(api.get("/api/v1/excursions", { device_id: id, from, to, limit: 500 }));
    const alertsP = settle(api.get("/api/v1/alerts", { device_id: id, limit: 100 }));
    const shipsP = settle(api.get("/api/v1/shipments", { device_id: id, limit: 500 }).then((pg) => pg.items));
    const calP = settle(getOptional(`/api/v1/calibration/devices/${enc}`));
    // a summary of a long range reads every reading: for ranges beyond 7 days refresh it every 5 minutes
    const wantSummary = rebuild || rangeMs(range) <= 7 * 86400e3 || Date.now() - summaryAt > 300_000;
    const dev = await api.get(`/api/v1/devices/${enc}`).catch((e) => {
      for (const [box, what] of [[facts, "The device"], [alertBox, "The alerts"], [excBox, "The excursions"]]) {
        if (!device || box === facts) replace(box, errorBox(e, what));
      }
      throw e;
    });
    device = dev;
    await loadLimits();
    const [c, excR] = [await chartP, await excP];
    if (!c.ok) throw c.e;
    const excs = excR.ok ? excR.v : [];
    const own = excs.filter((e) => !e.shipment_id);
    const data = bucketsToData(c.v.buckets, c.v.interval_ms, maxGapMs);
    const opts = { limits, excursions: excursionSpans(own), xRange: [from / 1000, to / 1000], label: `Temperature of ${id}` };
    if (!c.v.buckets.length) {
      if (chart) { chart.destroy(); chart = null; }
      replace(chartBox, empty(`No readings in the last ${range}.`, "Choose a longer range, or check that the logger is sending."));
    } else if (!chart || rebuild) {
      if (chart) chart.destroy();
      chart = makeChart(chartBox, "temp", data, opts);
    } else {
      chart.update(data, opts);
    }
    if (c.v.buckets.length) {
      chartNote.textContent = `${c.v.buckets.reduce((acc, bk) => acc + bk.count, 0).toLocaleString()} readings, ` +
        `shown as ${c.v.buckets.length} intervals of ${duration(c.v.interval_ms)}.`;
    }
    // asked only now: over a long range the summary reads every reading and would slow the chart down
    const summaryP = wantSummary ? settle(getOptional(`/api/v1/devices/${enc}/summary`, { from, to })) : null;
    const cal = await calP;
    replace(facts, dl([
      ["Kind", dev.kind], dev.name && ["Name", dev.name], ["Profile", profileName],
      ["Status", statusCell(dev)],
      ["Last reading", dev.last_temp_c === null ? "none yet" : [temp(dev.last_temp_c, 2), " at ", time(dev.last_ts), ` (${ago(dev.last_ts)})`]],
      ["Last message", time(dev.last_seen_at)],
      ["Battery", dev.battery_pct === null ? "—" : `${Math.round(dev.battery_pct)} %`],
      ["Sequence gaps", String(dev.seq_gaps)],
      dev.conflicting_data && ["Data", [badge("conflicting data", "warn",
        "A reading of this device conflicts with a stored one; its excursions are evaluated on the stored (first) values until QA resolves it"),
        " ", link(`/ui/quarantine?device_id=${enc}`, `${dev.open_conflicts} open conflict${dev.open_conflicts === 1 ? "" : "s"}: resolve in the quarantine`)]],
      ["Calibration", [calibrationBadge(cal.ok ? cal.v : { error: cal.e.message }), " ",
        link(`/ui/calibration/devices/${enc}`, "drift chart")]],
    ]));
    // the device's own series; the same episode judged within a shipment's window links to that shipment
    const ships = await shipsP;
    const refs = new Map((ships.ok ? ships.v : []).map((x) => [x.id, x.reference]));
    replace(excBox, excR.ok ? episodeTable(own.map((e) => ({ ...e, shipments: excs.filter((o) => o.shipment_id
      && o.limit_id === e.limit_id && o.start === e.start).map((o) => [o.shipment_id, refs.get(o.shipment_id) || o.shipment_id]) })))
      : errorBox(excR.e, "The excursions"));
    const alerts = await alertsP;
    const actionable = alerts.ok ? alerts.v.filter((x) => x.severity !== "info") : [];
    replace(alertBox, !alerts.ok ? errorBox(alerts.e, "The alerts") : actionable.length ? table([
      { label: "When", cell: (x) => time(x.created_at) },
      { label: "Alert", cell: (x) => alertLabel(x.type) },
      { label: "Severity", cell: (x) => severityBadge(x.severity) },
      { label: "State", cell: (x) => isaStateBadge(x) },
    ], actionable.slice(0, 6)) : empty("No warning or alarm for this device."));
    if (summaryP) {
      if (rebuild || !summaryBox.childElementCount) replace(summaryBox, loading("Summarising the range"));
      const sm = await summaryP;
      summaryAt = Date.now();
      const summary = sm.ok ? sm.v : null;
      replace(summaryBox, summary ? dl([
        ["Readings", summary.count.toLocaleString()],
        ["Min / mean / max", `${temp(summary.min_c, 2)} / ${temp(summary.mean_c, 2)} / ${temp(summary.max_c, 2)}`],
        ["MKT", temp(summary.mkt_c, 2)],
        ["Time in range", summary.in_range_pct === null ? "—" : `${summary.in_range_pct.toFixed(1)} % of ${duration(summary.covered_min * 60000)} covered`],
        ["Gaps (no data)", summary.gaps.length ? `${duration(summary.gap_min * 60000)} in ${summary.gaps.length} gap${summary.gaps.length === 1 ? "" : "s"}` : "none"],
      ]) : h("p", { class: "muted" }, "No summary available for this range."));
    }
  }

  await refresh(true).catch((e) => replace(chartBox, errorBox(e, "The chart")));
  let last = 0;
  return {
    refresh: async () => { // a year-long view changes little in 5 s: poll it every 30 s
      if (rangeMs(range) > 7 * 86400e3 && Date.now() - last < 30_000) return;
      last = Date.now();
      await refresh(false);
    },
  };
}

/** A promise that never rejects: {ok, v} or {ok: false, e} (no unhandled rejections when a page bails out). */
function settle(p) {
  return p.then((v) => ({ ok: true, v }), (e) => ({ ok: false, e }));
}

/** The excursions as people read them: limits sharing direction and threshold (high-warn and high at 8 °C)
 * share their episodes, so one row per episode with its staged severities, lowest first (docs/RULES.md). */
export function episodeTable(excs) {
  return table([
    { label: "Start", cell: (e) => time(e.start) },
    { label: "End", cell: (e) => (e.open ? badge("ongoing", "bad") : time(e.end)) },
    { label: "Limit", cell: (e) => `${e.direction} ${fixed(e.threshold_c, 2)} °C (${e.stages.map((s) => s.limit_id).join(", ")})` },
    { label: "Severity", cell: (e) => e.stages.map((s, i) => [i ? " → " : "", severityBadge(s.severity)]) },
    { label: "Duration", num: true, cell: (e) => duration(e.duration_min * 60000) },
    { label: "Peak", num: true, cell: (e) => temp(e.peak_c, 2) },
    { label: "Degree-min", num: true, cell: (e) => e.degree_minutes.toFixed(1) },
    { label: "Alarm", cell: (e) => (e.stages.some((s) => s.alarm_at) ? e.stages.map((s, i) => [i ? ", " : "",
      e.stages.length > 1 ? `${s.severity} ` : "", s.alarm_at ? time(s.alarm_at) : h("span", { class: "muted" }, "not reached")])
      : h("span", { class: "muted" }, "no alarm")) },
    { label: "Shipment", cell: (e) => ((e.shipments || []).length ? e.shipments.map(([sid, ref], i) => [i ? ", " : "",
      link(`/ui/shipments/${encodeURIComponent(sid)}`, ref)]) : "—") },
  ], episodes(excs), { emptyText: "No excursion in this range." });
}

function episodes(excs) {
  const rank = { info: 0, warning: 1, alarm: 2, critical: 3 };
  const by = new Map();
  for (const e of excs) {
    const key = `${e.direction}|${e.threshold_c}|${e.start}`;
    const ep = by.get(key);
    if (!ep) by.set(key, { ...e, shipments: e.shipments || [], stages: [e] });
    else {
      ep.stages.push(e);
      const seen = new Set(ep.shipments.map(([sid]) => sid));
      ep.shipments = [...ep.shipments, ...(e.shipments || []).filter(([sid]) => !seen.has(sid))];
    }
  }
  for (const ep of by.values()) ep.stages.sort((a, b) => (rank[a.severity] ?? 9) - (rank[b.severity] ?? 9));
  return [...by.values()];
}

// One device: its facts, the chart of its readings (min/max band, profile limits, excursions shaded), its
// excursions and its recent alerts. The chart follows the chosen range up to now, refreshed live.

import { api, getOptional } from "../api.js";
import { ago, badge, dl, duration, empty, errorBox, h, link, loading, notFound, replace, section, table, temp, time } from "../dom.js";
import { bucketsToData, makeChart } from "../chart.js";
import { statusCell } from "./fleet.js";
import { alertLabel, alertStateBadge, calibrationBadge, chartLegend, excursionSpans, rangeButtons, rangeMs, severityBadge } from "./common.js";

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

  async function refresh(rebuild = false) {
    const dev = await api.get(`/api/v1/devices/${encodeURIComponent(id)}`).catch((e) => {
      for (const [box, what] of [[facts, "The device"], [alertBox, "The alerts"], [excBox, "The excursions"]]) {
        if (!device || box === facts) replace(box, errorBox(e, what));
      }
      throw e;
    });
    device = dev;
    await loadLimits();
    const cal = await getOptional(`/api/v1/calibration/devices/${encodeURIComponent(id)}`).catch(() => undefined);
    replace(facts, dl([
      ["Kind", dev.kind], dev.name && ["Name", dev.name], ["Profile", profileName],
      ["Status", statusCell(dev)],
      ["Last reading", dev.last_temp_c === null ? "none yet" : [temp(dev.last_temp_c, 2), " at ", time(dev.last_ts), ` (${ago(dev.last_ts)})`]],
      ["Last message", time(dev.last_seen_at)],
      ["Battery", dev.battery_pct === null ? "—" : `${Math.round(dev.battery_pct)} %`],
      ["Sequence gaps", String(dev.seq_gaps)],
      ["Calibration", [calibrationBadge(cal), " ", link(`/ui/calibration/devices/${encodeURIComponent(id)}`, "drift chart")]],
    ]));
    const to = Date.now() + 60_000, from = to - rangeMs(range);
    const width = Math.max(320, chartBox.clientWidth || 900);
    const [c, excs, alerts, summary, ships] = await Promise.all([
      api.get(`/api/v1/devices/${encodeURIComponent(id)}/chart`, { from, to, points: Math.min(2000, Math.round(width)) }),
      api.get("/api/v1/excursions", { device_id: id, from, to, limit: 500 }),
      api.get("/api/v1/alerts", { device_id: id, limit: 100 }),
      getOptional(`/api/v1/devices/${encodeURIComponent(id)}/summary`, { from, to }).catch(() => null),
      api.get("/api/v1/shipments", { device_id: id, limit: 500 }).then((pg) => pg.items).catch(() => []),
    ]);
    // the device's own series; the same episode judged within a shipment's window links to that shipment
    const refs = new Map(ships.map((x) => [x.id, x.reference]));
    const own = excs.filter((e) => !e.shipment_id).map((e) => ({ ...e, shipments: excs.filter((o) => o.shipment_id
      && o.limit_id === e.limit_id && o.start === e.start).map((o) => [o.shipment_id, refs.get(o.shipment_id) || o.shipment_id]) }));
    const data = bucketsToData(c.buckets, c.interval_ms, maxGapMs);
    const opts = { limits, excursions: excursionSpans(own), xRange: [from / 1000, to / 1000], label: `Temperature of ${id}` };
    if (!c.buckets.length) {
      if (chart) { chart.destroy(); chart = null; }
      replace(chartBox, empty(`No readings in the last ${range}.`, "Choose a longer range, or check that the logger is sending."));
    } else if (!chart || rebuild) {
      if (chart) chart.destroy();
      chart = makeChart(chartBox, "temp", data, opts);
    } else {
      chart.update(data, opts);
    }
    if (c.buckets.length) {
      chartNote.textContent = `${c.buckets.reduce((a, b) => a + b.count, 0).toLocaleString()} readings, ` +
        `shown as ${c.buckets.length} intervals of ${duration(c.interval_ms)}.`;
    }
    replace(summaryBox, summary ? dl([
      ["Readings", summary.count.toLocaleString()],
      ["Min / mean / max", `${temp(summary.min_c, 2)} / ${temp(summary.mean_c, 2)} / ${temp(summary.max_c, 2)}`],
      ["MKT", temp(summary.mkt_c, 2)],
      ["Time in range", summary.in_range_pct === null ? "—" : `${summary.in_range_pct.toFixed(1)} % of ${duration(summary.covered_min * 60000)} covered`],
      ["Gaps (no data)", summary.gaps.length ? `${duration(summary.gap_min * 60000)} in ${summary.gaps.length} gap${summary.gaps.length === 1 ? "" : "s"}` : "none"],
    ]) : h("p", { class: "muted" }, "No summary available for this range."));
    replace(excBox, excursionTable(own));
    const actionable = alerts.filter((a) => a.severity !== "info");
    replace(alertBox, actionable.length ? table([
      { label: "When", cell: (a) => time(a.created_at) },
      { label: "Alert", cell: (a) => alertLabel(a.type) },
      { label: "Severity", cell: (a) => severityBadge(a.severity) },
      { label: "State", cell: (a) => alertStateBadge(a.state) },
    ], actionable.slice(0, 6)) : empty("No warning or alarm for this device."));
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

export function excursionTable(excs) {
  return table([
    { label: "Start", cell: (e) => time(e.start) },
    { label: "End", cell: (e) => (e.open ? badge("ongoing", "bad") : time(e.end)) },
    { label: "Limit", cell: (e) => `${e.direction} ${e.threshold_c} °C (${e.limit_id})` },
    { label: "Severity", cell: (e) => severityBadge(e.severity) },
    { label: "Duration", num: true, cell: (e) => duration(e.duration_min * 60000) },
    { label: "Peak", num: true, cell: (e) => temp(e.peak_c, 2) },
    { label: "Degree-min", num: true, cell: (e) => e.degree_minutes.toFixed(1) },
    { label: "Alarm", cell: (e) => (e.alarm_at ? time(e.alarm_at) : h("span", { class: "muted" }, "no alarm")) },
    { label: "Shipment", cell: (e) => ((e.shipments || []).length ? e.shipments.map(([sid, ref], i) => [i ? ", " : "",
      link(`/ui/shipments/${encodeURIComponent(sid)}`, ref)]) : "—") },
  ], excs, { emptyText: "No excursion in this range." });
}

// One calibration session: set points with their stable windows, and per device under test the results
// (n, error, s, u, U, ILAC-G8 decision) with a link to each device's certificate and drift chart.

import { api } from "../api.js";
import { badge, dl, errorBox, h, link, loading, notFound, replace, section, table, temp, time } from "../dom.js";
import { sessionStateBadge } from "./calibration.js";

const num = (v, d = 3) => (v === null || v === undefined ? "—" : Number(v).toFixed(d));

export function decisionBadge(d) {
  return badge(d.replace("_", " "), { pass: "ok", fail: "bad", indeterminate: "warn" }[d] || "neutral");
}

export async function mount(main, ctx) {
  const id = ctx.params[0];
  try {
    await api.get(`/api/v1/calibration/sessions/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) { notFound(main, `Calibration session ${id}`, "/ui/calibration", "go back to calibration"); return null; }
  }
  const head = h("div", {}, loading("Loading the session"));
  const pointsBox = h("div", {});
  const resultsBox = h("div", {});
  replace(main, h("div", { class: "crumbs" }, link("/ui/calibration", "Calibration"), " / ", id), head,
    section("Set points", pointsBox), h("div", { id: "results" }, resultsBox));

  async function refresh() {
    let s;
    try {
      s = await api.get(`/api/v1/calibration/sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      replace(head, errorBox(e, "The session"));
      throw e;
    }
    replace(head, h("h1", {}, `Calibration session ${id} `, sessionStateBadge(s.state)), h("div", { class: "card" }, dl([
      ["Kind", (s.kind || "").replace("_", "-")], ["Reference", link(`/ui/calibration/devices/${encodeURIComponent(s.reference_id)}`, s.reference_id)],
      ["Reference uncertainty", `U = ${s.u_ref_c} °C (k = 2)`], ["MPE", `±${s.mpe_c} °C (${s.rule} decision rule)`],
      ["Started", time(s.started_at)], ["Completed", time(s.completed_at, { empty: s.state === "running" ? "running" : "—" })],
      ["Devices under test", s.duts.map((d) => d.device_id).join(", ")], s.notes && ["Notes", s.notes],
    ])));
    replace(pointsBox, table([
      { label: "#", num: true, cell: (p) => String(p.point_index + 1) },
      { label: "Set point", num: true, cell: (p) => temp(p.set_point_c, 2) },
      { label: "Stable from", cell: (p) => time(p.stable_from) },
      { label: "Capture", cell: (p) => [time(p.stable_at), " → ", time(p.capture_end)] },
      { label: "Reference mean", num: true, cell: (p) => temp(p.ref_mean_c, 3) },
      { label: "Reference s", num: true, cell: (p) => `${num(p.ref_std_c, 4)} °C` },
    ], s.points, { emptyText: s.state === "running" ? "Waiting for the bath to stabilise at the first set point." : "No set point was captured." }));
    const byDev = new Map();
    for (const r of s.results) { if (!byDev.has(r.device_id)) byDev.set(r.device_id, []); byDev.get(r.device_id).push(r); }
    replace(resultsBox, byDev.size ? [...byDev.entries()].map(([dev, rows]) => section(`Device ${dev}`,
      h("p", {}, "Overall: ", decisionBadge(rows[0].overall), " · ",
        link(`/api/v1/calibration/sessions/${encodeURIComponent(id)}/certificates/${encodeURIComponent(dev)}.pdf`, "certificate (PDF)"), " · ",
        link(`/ui/calibration/devices/${encodeURIComponent(dev)}`, "drift chart")),
      table([
        { label: "Set point", num: true, cell: (r) => temp(r.set_point_c, 2) },
        { label: "n", num: true, cell: (r) => String(r.n) },
        { label: "Error e", num: true, cell: (r) => `${num(r.error_c)} °C` },
        { label: "s", num: true, cell: (r) => num(r.s_c, 4) },
        { label: "u", num: true, cell: (r) => num(r.u_c, 4) },
        { label: "U (k=2)", num: true, cell: (r) => num(r.expanded_u_c) },
        { label: "Decision", cell: (r) => decisionBadge(r.decision) },
        { label: "Zone", cell: (r) => r.zone },
      ], rows))) : section("Results", h("p", { class: "muted" }, "No results yet: they appear as each set point is captured.")));
  }
  await refresh().catch(() => {});
  return { refresh, interval: 10000 };
}

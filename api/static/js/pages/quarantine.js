// Quarantine: every message or reading that arrived and could not be stored, with its reason.

import { api } from "../api.js";
import { badge, errorBox, h, link, loading, replace, section, table, time } from "../dom.js";

export async function mount(main, ctx) {
  const reason = h("select", { id: "f-reason" }, h("option", { value: "" }, "All reasons"));
  const device = h("input", { id: "f-dev", type: "search", value: ctx.query.get("device_id") || "", placeholder: "device id" });
  const summary = h("div", { class: "tiles", "aria-label": "Counts by reason" });
  const body = h("div", {}, loading("Loading the quarantine"));
  replace(main, h("h1", {}, "Quarantine"),
    h("p", { class: "muted" }, "Data that arrived but was not stored (malformed, unknown device, out of range, clock far off…). Nothing here counts in excursions or reports until it is fixed at the source."),
    summary,
    section("Quarantined messages and readings",
      h("div", { class: "filters" },
        h("div", { class: "field" }, h("label", { for: "f-reason" }, "Reason"), reason),
        h("div", { class: "field" }, h("label", { for: "f-dev" }, "Device"), device)),
      body));
  reason.addEventListener("change", () => refresh().catch(() => {}));
  device.addEventListener("change", () => refresh().catch(() => {}));

  async function refresh() {
    try {
      const [counts, items] = await Promise.all([
        api.get("/api/v1/quarantine/summary"),
        api.get("/api/v1/quarantine", { reason: reason.value, device_id: device.value.trim(), limit: 200 }),
      ]);
      const current = reason.value;
      reason.replaceChildren(h("option", { value: "" }, "All reasons"),
        ...Object.keys(counts).sort().map((r) => h("option", { value: r, selected: r === current }, `${r} (${counts[r]})`)));
      replace(summary, Object.keys(counts).length ? Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([r, n]) =>
        h("div", { class: "tile warn" }, h("div", { class: "v" }, String(n)), h("div", { class: "k" }, r))) : []);
      replace(body, table([
        { label: "Received", cell: (q) => time(q.received_at) },
        { label: "Reason", cell: (q) => badge(q.reason, "warn") },
        { label: "Detail", cell: (q) => q.detail },
        { label: "Device", cell: (q) => (q.device_id ? link(`/ui/devices/${encodeURIComponent(q.device_id)}`, q.device_id) : "—") },
        { label: "Source", cell: (q) => [q.source, q.topic ? h("div", { class: "muted mono" }, q.topic) : null] },
        { label: "What",  cell: (q) => (q.reading_index === null ? "whole message" : `reading ${q.reading_index + 1}`) },
        { label: "Raw (start)", cell: (q) => (q.raw_preview ? h("code", { class: "mono raw", title: q.raw_preview }, q.raw_preview.slice(0, 80)) : "—") },
      ], items, { emptyText: "Nothing in quarantine: every message received so far was stored." }));
    } catch (e) {
      replace(body, errorBox(e, "The quarantine"));
      throw e;
    }
  }
  await refresh().catch(() => {});
  return { refresh };
}

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
        { label: "Detail", cell: (q) => (q.reason === "conflicting_duplicate" ? conflictCell(q) : q.detail) },
        { label: "Device", cell: (q) => (q.device_id ? link(`/ui/devices/${encodeURIComponent(q.device_id)}`, q.device_id) : "—") },
        { label: "Source", cell: (q) => [q.source, q.topic ? h("div", { class: "muted mono" }, q.topic) : null] },
        { label: "What",  cell: (q) => (q.reading_index === null ? "whole message" : `reading ${q.reading_index + 1}`) },
        { label: "Raw (start)", cell: (q) => (q.raw_preview ? h("code", { class: "mono raw", title: q.raw_preview }, q.raw_preview.slice(0, 80))
          // a message with many rejected readings keeps its raw bytes once, on its first quarantined row
          : q.reading_index !== null || q.reason === "conflicting_duplicate" ? h("span", { class: "muted" }, "on the message's first row") : "—") },
      ], items, { emptyText: "Nothing in quarantine: every message received so far was stored." }));
    } catch (e) {
      replace(body, errorBox(e, "The quarantine"));
      throw e;
    }
  }
  // a conflicting duplicate: both values side by side, and QA's decision (or the form to record it)
  function conflictCell(q) {
    const values = h("dl", { class: "conflict" },
      h("dt", {}, "Reading at"), h("dd", {}, time(q.reading_ts)),
      h("dt", {}, q.stored_source ? `Stored (kept) from ${q.stored_source}` : "Stored (kept)"),
      h("dd", {}, `${q.stored_temp_c} °C`, q.stored_seq === null ? "" : ` (seq ${q.stored_seq})`),
      h("dt", {}, `Received from ${q.source}`), h("dd", {}, `${q.received_temp_c} °C`, q.received_seq === null ? "" : ` (seq ${q.received_seq})`));
    if (q.resolved_at) {
      return [values, h("p", {}, badge("resolved", "ok"), ` by ${q.resolved_by} at `, time(q.resolved_at), `: ${q.resolution}`)];
    }
    if (!ctx.canWrite) return [values, h("p", {}, badge("open", "warn"), " Resolving a conflict needs the QA role.")];
    const decision = h("select", { id: `d-${q.id}` },
      h("option", { value: "stored_value_correct" }, "The stored value is right"),
      h("option", { value: "received_value_correct" }, "The received value is right"),
      h("option", { value: "both_invalid" }, "Neither value can be trusted"),
      h("option", { value: "other" }, "Other (say in the comment)"));
    const comment = h("input", { id: `c-${q.id}`, placeholder: "why (recorded in the audit trail)", required: true, minlength: 3 });
    const msg = h("span", { role: "status" });
    return [values, h("form", { class: "inline-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api.post(`/api/v1/quarantine/${q.id}/resolve`, { decision: decision.value, comment: comment.value.trim() });
        await refresh();
      } catch (err) {
        msg.className = "form-error"; msg.textContent = `Resolving failed: ${err.message}`;
      }
    } }, h("label", { for: `d-${q.id}` }, "Decision"), decision, h("label", { for: `c-${q.id}` }, "Comment"), comment,
    h("button", { type: "submit", class: "btn" }, "Resolve"), msg)];
  }

  await refresh().catch(() => {});
  return { refresh };
}

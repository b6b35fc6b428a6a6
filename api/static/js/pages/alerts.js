// Alert inbox: filter, open one, acknowledge with a comment, assign, comment, resolve. The list refreshes
// live; the detail panel's forms are never redrawn under the user's typing.

import { api, getOptional } from "../api.js";
import { empty, errorBox, h, link, loading, replace, section, table, time } from "../dom.js";
import { ALERT_LABELS, alertLabel, alertStateBadge, alertSummary, severityBadge } from "./common.js";

export async function mount(main, ctx) {
  const q = ctx.query;
  const f = {
    state: select("f-state", [["", "All states"], ["open", "Open"], ["acknowledged", "Acknowledged"], ["resolved", "Resolved"]], q.get("state") ?? "open"),
    severity: select("f-sev", [["actionable", "Warning and above"], ["", "All, with info"], ["critical", "Critical"], ["alarm", "Alarm"],
      ["warning", "Warning"], ["info", "Info"]], q.get("severity") ?? "actionable"),
    type: select("f-type", [["", "All types"], ...Object.entries(ALERT_LABELS)], q.get("type") || ""),
    device_id: h("input", { id: "f-dev", type: "search", value: q.get("device_id") || "", placeholder: "e.g. LOG-0001" }),
  };
  const listBox = h("div", {}, loading("Loading alerts"));
  const detail = h("div", { class: "card detail", id: "alert-detail", "aria-live": "polite" },
    empty("Select an alert to see its history and act on it."));
  replace(main, h("h1", {}, "Alerts"),
    h("div", { class: "filters card", role: "search" },
      field("f-state", "State", f.state), field("f-sev", "Severity", f.severity), field("f-type", "Type", f.type),
      field("f-dev", "Device", f.device_id)),
    h("div", { class: "split" }, section("Inbox", listBox), detail));
  let selected = null, items = [];

  for (const el of Object.values(f)) el.addEventListener("change", () => { syncUrl(); refresh().catch(() => {}); });

  function syncUrl() {
    const p = new URLSearchParams();
    for (const [k, el] of Object.entries(f)) if (el.value) p.set(k, el.value);
    if (!f.state.value) p.set("state", "");
    history.replaceState(null, "", `?${p}`);
  }

  function renderList() {
    replace(listBox, table([
      { label: "Happened", cell: (a) => time(a.ts) },
      { label: "Alert", cell: (a) => [h("button", { type: "button", class: "linklike", "aria-pressed": String(a.id === selected),
        onclick: () => select_(a.id) }, alertLabel(a.type)), h("div", { class: "muted small" }, alertSummary(a))] },
      { label: "Severity", cell: (a) => severityBadge(a.severity) },
      { label: "Device", cell: (a) => (a.device_id ? link(`/ui/devices/${encodeURIComponent(a.device_id)}`, a.device_id) : "—") },
      { label: "Shipment", cell: (a) => (a.shipment_id ? link(`/ui/shipments/${encodeURIComponent(a.shipment_id)}`, a.shipment_id) : "—") },
      { label: "State", cell: (a) => alertStateBadge(a.state) },
      { label: "Assignee", cell: (a) => a.assignee || h("span", { class: "muted" }, "—") },
    ], items.map((a) => ({ ...a, _class: a.id === selected ? "row-selected" : null })),
    { caption: "Alerts", emptyText: f.state.value === "open" ? "No open alerts that need action. All caught up." : "No alert matches the filter." }));
  }

  async function refresh() {
    try {
      const base = { state: f.state.value, type: f.type.value, device_id: f.device_id.value.trim(), limit: 200 };
      if (f.severity.value === "actionable") { // info alerts (an excursion started / ended) are context, not work
        const parts = await Promise.all(["critical", "alarm", "warning"].map((sev) => api.get("/api/v1/alerts", { ...base, severity: sev })));
        items = parts.flat().sort((a, b) => b.created_at.localeCompare(a.created_at) || b.ts.localeCompare(a.ts)).slice(0, 200);
      } else {
        items = await api.get("/api/v1/alerts", { ...base, severity: f.severity.value });
      }
      renderList();
      if (selected) await renderHandling();
    } catch (e) {
      replace(listBox, errorBox(e, "The alert list"));
      throw e;
    }
  }

  // ---- detail panel: facts + history (refreshed) and forms (built once per selected alert)
  const facts = h("div", {}), hist = h("div", {}), msg = h("p", { role: "status", class: "form-ok", hidden: true });

  async function select_(id) {
    selected = id;
    renderList();
    replace(detail, h("h2", { id: "detail-title", tabindex: "-1" }, "Alert"), facts, msg, forms(id), h("h3", {}, "History"), hist);
    await renderHandling();
    detail.querySelector("#detail-title").focus();
  }

  async function renderHandling() {
    const id = selected;
    try {
      const [a, events] = await Promise.all([
        getOptional(`/api/v1/alerts/${encodeURIComponent(id)}/handling`).then((x) => x || api.get(`/api/v1/alerts/${encodeURIComponent(id)}`)),
        getOptional(`/api/v1/alerts/${encodeURIComponent(id)}/history`),
      ]);
      if (id !== selected) return;
      const title = detail.querySelector("#detail-title");
      if (title) title.textContent = `${alertLabel(a.type)} — ${a.device_id || a.shipment_id || ""}`;
      replace(facts, h("dl", { class: "facts" },
        h("dt", {}, "State"), h("dd", {}, alertStateBadge(a.state)),
        h("dt", {}, "Severity"), h("dd", {}, severityBadge(a.severity)),
        h("dt", {}, "Happened"), h("dd", {}, time(a.ts)),
        h("dt", {}, "Raised"), h("dd", {}, time(a.created_at)),
        h("dt", {}, "Assignee"), h("dd", {}, a.assignee || "nobody"),
        a.acknowledged_at && [h("dt", {}, "Acknowledged"), h("dd", {}, time(a.acknowledged_at), ` by ${a.acknowledged_by}`, a.ack_comment ? `: “${a.ack_comment}”` : "")],
        a.resolved_at && [h("dt", {}, "Resolved"), h("dd", {}, time(a.resolved_at), ` by ${a.resolved_by}: “${a.resolution}”`)],
        a.next_escalation_at && [h("dt", {}, "Escalates"), h("dd", {}, time(a.next_escalation_at))],
        h("dt", {}, "Details"), h("dd", {}, alertSummary(a) || detailsText(a.data))));
      replace(hist, events === null || !events.length ? empty("No history available.") : h("ol", { class: "history" },
        [...events].reverse().map((e) => h("li", {}, time(e.at), " · ", h("strong", {}, e.actor), ` ${e.action.replace("_", " ")}`,
          e.comment ? h("div", { class: "history-comment" }, `“${e.comment}”`) : null))));
      const ackBtn = detail.querySelector("#ack-button");
      if (ackBtn) ackBtn.disabled = a.state !== "open";
      const resBtn = detail.querySelector("#resolve-button");
      if (resBtn) resBtn.disabled = a.state === "resolved";
    } catch (e) {
      replace(facts, errorBox(e, "The alert"));
    }
  }

  function forms(id) {
    if (!ctx.canWrite) return h("p", { class: "muted" }, "Acknowledging and assigning alerts needs the QA role.");
    const act = async (path, body, done) => {
      msg.hidden = true;
      try {
        await api.post(`/api/v1/alerts/${encodeURIComponent(id)}/${path}`, body);
        msg.className = "form-ok"; msg.textContent = done; msg.hidden = false;
        await refresh();
        return true;
      } catch (e) {
        msg.className = "form-error"; msg.textContent = `${done.split(" ")[0]} failed: ${e.message}`; msg.hidden = false;
        return false;
      }
    };
    const ackComment = h("textarea", { id: "ack-comment", placeholder: "What was done, e.g. door closed, goods moved" });
    const assignee = h("input", { id: "assignee", value: "", placeholder: "username", autocomplete: "off" });
    const note = h("textarea", { id: "note-text" });
    return h("div", { class: "alert-forms" },
      h("form", { class: "stack", onsubmit: async (e) => { e.preventDefault();
        if (await act("acknowledge", { comment: ackComment.value.trim() || null }, "Acknowledged.")) ackComment.value = ""; } },
      h("div", { class: "field" }, h("label", { for: "ack-comment" }, "Comment (recorded with the acknowledgement)"), ackComment),
      h("button", { type: "submit", class: "btn btn-primary", id: "ack-button" }, "Acknowledge")),
      h("form", { class: "inline-form", onsubmit: async (e) => { e.preventDefault();
        await act("assign", { assignee: assignee.value.trim() || null }, assignee.value.trim() ? `Assigned to ${assignee.value.trim()}.` : "Unassigned."); } },
      h("div", { class: "field" }, h("label", { for: "assignee" }, "Assign to"), assignee),
      h("button", { type: "submit", class: "btn" }, "Assign"),
      h("button", { type: "button", class: "btn btn-quiet", onclick: () => { assignee.value = ctx.session.name; } }, "Me")),
      h("details", {}, h("summary", {}, "Comment or resolve"),
        h("form", { onsubmit: (e) => e.preventDefault() },
          h("div", { class: "field" }, h("label", { for: "note-text" }, "Text"), note),
          h("div", { class: "inline-form" },
            h("button", { type: "button", class: "btn", onclick: async () => {
              if (!note.value.trim()) { note.focus(); return; }
              if (await act("comments", { text: note.value.trim() }, "Comment added.")) note.value = ""; } }, "Add comment"),
            h("button", { type: "button", class: "btn", id: "resolve-button", onclick: async () => {
              if (!note.value.trim()) { msg.className = "form-error"; msg.textContent = "Resolving needs a reason in the text field."; msg.hidden = false; note.focus(); return; }
              if (await act("resolve", { comment: note.value.trim() }, "Resolved.")) note.value = ""; } }, "Resolve")))));
  }

  await refresh().catch(() => {});
  return { refresh };
}

function select(id, options, value) {
  return h("select", { id }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

function field(id, label, el) {
  return h("div", { class: "field" }, h("label", { for: id }, label), el);
}

function detailsText(data) {
  if (!data || !Object.keys(data).length) return "—";
  return Object.entries(data).filter(([, v]) => v !== null && typeof v !== "object").map(([k, v]) => `${k}: ${v}`).join(" · ") || "—";
}

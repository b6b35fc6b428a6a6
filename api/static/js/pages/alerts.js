// Alert inbox (ISA-18.2): what needs a person, unacknowledged-active first, then acknowledged-but-still-active,
// then cleared-but-unacknowledged. Open one, acknowledge it with a comment, assign, shelve, comment, resolve.
// On a laptop the list is a table with the detail beside it; below 640 px the list is cards and the detail
// (with Acknowledge) opens right under the tapped card. The list refreshes live; the detail panel's forms are
// never redrawn under the user's typing.

import { api, getOptional } from "../api.js";
import { empty, errorBox, h, link, loading, replace, section, table, time } from "../dom.js";
import { ALERT_LABELS, alertLabel, alertSummary, isaStateBadge as isaBadge, severityBadge } from "./common.js";

const NARROW = window.matchMedia("(max-width: 640px)");

/** Staged severities of one episode (limits sharing direction and threshold, e.g. high-warn and high at
 * 8 °C): "Stages: warning 07:24 → alarm 07:39", a stage not (yet) reached says so. */
function stages(a) {
  const st = a && a.episode && a.episode.stages;
  if (!st || st.length < 2) return null;
  const parts = st.map((s, i) => [i ? " → " : "", h("span", { class: s.alarm_ts ? "stage-reached" : "muted" }, s.severity, " ",
    s.alarm_ts ? time(s.alarm_ts) : "not reached")]);
  return h("span", { class: "stages", title: "one episode, staged severities" }, "Stages: ", parts);
}

export async function mount(main, ctx) {
  const q = ctx.query;
  const f = {
    view: select("f-view", [["inbox", "Inbox: needs a person"], ["shelved", "Shelved"], ["open", "Unacknowledged (all)"],
      ["acknowledged", "Acknowledged"], ["resolved", "Resolved"], ["", "All"]],
    q.get("view") ?? (q.has("state") ? q.get("state") : "inbox")), // ?state=: links of other pages
    severity: select("f-sev", [["actionable", "Warning and above"], ["", "All, with info"], ["critical", "Critical"], ["alarm", "Alarm"],
      ["warning", "Warning"], ["info", "Info"]], q.get("severity") ?? "actionable"),
    type: select("f-type", [["", "All types"], ...Object.entries(ALERT_LABELS)], q.get("type") || ""),
    device_id: h("input", { id: "f-dev", type: "search", value: q.get("device_id") || "", placeholder: "e.g. LOG-0001" }),
  };
  const listBox = h("div", { id: "alert-list" }, loading("Loading alerts"));
  const detail = h("div", { class: "card detail", id: "alert-detail", "aria-live": "polite" },
    empty("Select an alert to see its history and act on it."));
  const side = h("div", { class: "detail-slot" }, detail);
  replace(main, h("h1", {}, "Alerts"),
    h("div", { class: "filters card", role: "search" },
      field("f-view", "State", f.view), field("f-sev", "Severity", f.severity), field("f-type", "Type", f.type),
      field("f-dev", "Device", f.device_id)),
    h("div", { class: "split" }, section("Inbox", listBox), side));
  let selected = null, items = [], drawn = null;

  for (const el of Object.values(f)) el.addEventListener("change", () => { syncUrl(); drawn = null; refresh().catch(() => {}); });
  NARROW.addEventListener("change", () => { drawn = null; renderList(); });

  function syncUrl() {
    const p = new URLSearchParams();
    for (const [k, el] of Object.entries(f)) if (el.value) p.set(k, el.value);
    if (!f.view.value) p.set("view", "");
    history.replaceState(null, "", `?${p}`);
  }

  function emptyText() {
    return f.view.value === "inbox" ? "Nothing needs a person right now: no active or unacknowledged alarm." : "No alert matches the filter.";
  }

  function renderList() {
    const key = JSON.stringify([NARROW.matches, selected, items]);
    if (key === drawn) return; // unchanged: keep the DOM (and the focus) as it is
    drawn = key;
    if (NARROW.matches) renderCards(); else renderTable();
  }

  function renderTable() {
    if (detail.parentNode !== side) side.append(detail);
    replace(listBox, table([
      { label: "Happened", cell: (a) => time(a.ts) },
      { label: "Alert", cell: (a) => [h("button", { type: "button", class: "linklike", "aria-pressed": String(a.id === selected),
        onclick: () => select_(a.id) }, alertLabel(a.type)), h("div", { class: "muted small" }, alertSummary(a)),
        stages(a) && h("div", { class: "small" }, stages(a))] },
      { label: "Severity", cell: (a) => severityBadge(a.severity) },
      { label: "Device", cell: (a) => (a.device_id ? link(`/ui/devices/${encodeURIComponent(a.device_id)}`, a.device_id) : "—") },
      { label: "Shipment", cell: (a) => (a.shipment_id ? link(`/ui/shipments/${encodeURIComponent(a.shipment_id)}`, a.shipment_id) : "—") },
      { label: "State", cell: (a) => isaBadge(a) },
      { label: "Assignee", cell: (a) => a.assignee || h("span", { class: "muted" }, "—") },
    ], items.map((a) => ({ ...a, _class: a.id === selected ? "row-selected" : null })),
    { caption: "Alerts", emptyText: emptyText() }));
  }

  function renderCards() {
    if (!items.length) {
      if (detail.parentNode !== side) side.append(detail);
      replace(listBox, empty(emptyText()));
      return;
    }
    const list = h("ul", { class: "alert-cards", "aria-label": "Alerts" }, items.map((a) => h("li", {
      class: `alert-card sev-${a.severity}${a.id === selected ? " is-selected" : ""}`, "data-alert-id": a.id,
    },
    h("button", { type: "button", class: "alert-card-open", "aria-expanded": String(a.id === selected),
      "aria-controls": "alert-detail", onclick: () => select_(a.id === selected ? null : a.id) },
    h("span", { class: "alert-card-head" }, severityBadge(a.severity), isaBadge(a)),
    h("span", { class: "alert-card-title" }, alertLabel(a.type), a.device_id ? ` · ${a.device_id}` : ""),
    h("span", { class: "alert-card-sub muted small" }, time(a.ts), alertSummary(a) ? ` · ${alertSummary(a)}` : ""),
    stages(a) && h("span", { class: "alert-card-sub small" }, stages(a)),
    a.assignee && h("span", { class: "alert-card-sub small" }, `Assigned to ${a.assignee}`)))));
    replace(listBox, list);
    const li = selected && list.querySelector(`li[data-alert-id="${CSS.escape(selected)}"]`);
    if (li) li.append(detail); // the detail (and Acknowledge) right under the tapped alert
    else if (detail.parentNode !== side) side.append(detail);
  }

  async function refresh() {
    try {
      const v = f.view.value;
      const params = { type: f.type.value, device_id: f.device_id.value.trim(), limit: 200 };
      if (v === "inbox" || v === "shelved") params.view = v; else if (v) params.state = v;
      if (f.severity.value === "actionable") params.min_severity = "warning"; // info: context, not work
      else if (f.severity.value) params.severity = f.severity.value;
      if (v === "inbox") params.group = "episode"; // limits sharing a threshold: one entry per episode
      items = await api.get("/api/v1/alerts", params);
      renderList();
      if (selected) await renderHandling();
    } catch (e) {
      drawn = null;
      replace(listBox, errorBox(e, "The alert list"));
      throw e;
    }
  }

  // ---- detail panel: facts + history (refreshed) and forms (built once per selected alert)
  const facts = h("div", {}), hist = h("div", {}), msg = h("p", { role: "status", class: "form-ok", hidden: true });

  async function select_(id) {
    selected = id;
    if (!id) {
      replace(detail, empty("Select an alert to see its history and act on it."));
      renderList();
      return;
    }
    const title = h("h2", { id: "detail-title", tabindex: "-1" }, "Alert");
    // on a phone the card above already says what it is: Acknowledge comes first, the facts after it
    if (NARROW.matches) replace(detail, title, msg, forms(id), h("h3", {}, "Details"), facts, h("h3", {}, "History"), hist);
    else replace(detail, title, facts, msg, forms(id), h("h3", {}, "History"), hist);
    renderList();
    await renderHandling();
    if (detail.contains(title)) title.focus({ preventScroll: NARROW.matches });
    if (NARROW.matches) detail.scrollIntoView({ block: "nearest" });
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
        h("dt", {}, "State"), h("dd", { id: "detail-state" }, isaBadge(a)),
        h("dt", {}, "Severity"), h("dd", {}, severityBadge(a.severity)),
        h("dt", {}, "Happened"), h("dd", {}, time(a.ts)),
        h("dt", {}, "Raised"), h("dd", {}, time(a.created_at)),
        a.cleared_at && [h("dt", {}, "Cleared"), h("dd", {}, time(a.cleared_at))],
        h("dt", {}, "Assignee"), h("dd", {}, a.assignee || "nobody"),
        a.acknowledged_at && [h("dt", {}, "Acknowledged"), h("dd", {}, time(a.acknowledged_at), ` by ${a.acknowledged_by}`, a.ack_comment ? `: “${a.ack_comment}”` : "")],
        a.shelved_until && [h("dt", {}, "Shelved"), h("dd", {}, "until ", time(a.shelved_until), ` by ${a.shelved_by}: “${a.shelve_reason}”`)],
        a.resolved_at && [h("dt", {}, "Resolved"), h("dd", {}, time(a.resolved_at), ` by ${a.resolved_by}: “${a.resolution}”`)],
        a.next_escalation_at && [h("dt", {}, "Escalates"), h("dd", {}, time(a.next_escalation_at))],
        h("dt", {}, "Details"), h("dd", {}, alertSummary(a) || detailsText(a.data)),
        stages(a) && [h("dt", {}, "Episode"), h("dd", {}, stages(a))]));
      replace(hist, events === null || !events.length ? empty("No history available.") : h("ol", { class: "history" },
        [...events].reverse().map((e) => h("li", {}, time(e.at), " · ", h("strong", {}, e.actor), ` ${e.action.replaceAll("_", " ")}`,
          e.comment ? h("div", { class: "history-comment" }, `“${e.comment}”`) : null))));
      const ackBtn = detail.querySelector("#ack-button");
      if (ackBtn) ackBtn.disabled = a.state !== "open";
      const resBtn = detail.querySelector("#resolve-button");
      if (resBtn) {
        const active = a.condition === "active" && a.excursion_id;
        resBtn.disabled = a.state === "resolved" || Boolean(active);
        resBtn.title = active ? "The excursion is still going on: acknowledge or shelve it" : "";
      }
      const shelveBox = detail.querySelector("#shelve-box");
      if (shelveBox) shelveBox.hidden = a.state === "resolved" || Boolean(a.shelved_until);
      const unshelve = detail.querySelector("#unshelve-button");
      if (unshelve) unshelve.hidden = !a.shelved_until || a.state === "resolved";
    } catch (e) {
      replace(facts, errorBox(e, "The alert"));
    }
  }

  function forms(id) {
    if (!ctx.canWrite) return h("p", { class: "muted" }, "Acknowledging and assigning alerts needs the QA role.");
    const act = async (path, body, done, failed = path[0].toUpperCase() + path.slice(1)) => {
      msg.hidden = true;
      try {
        await api.post(`/api/v1/alerts/${encodeURIComponent(id)}/${path}`, body);
        msg.className = "form-ok"; msg.textContent = done; msg.hidden = false;
        await refresh();
        return true;
      } catch (e) {
        msg.className = "form-error"; msg.textContent = `${failed} failed: ${e.message}`; msg.hidden = false;
        return false;
      }
    };
    const ackComment = h("textarea", { id: "ack-comment", placeholder: "What was done, e.g. door closed, goods moved" });
    const assignee = h("input", { id: "assignee", value: "", placeholder: "username", autocomplete: "off" });
    const note = h("textarea", { id: "note-text" });
    const shelveReason = h("input", { id: "shelve-reason", placeholder: "e.g. planned defrost", autocomplete: "off" });
    const shelveMinutes = h("select", { id: "shelve-minutes" }, [[30, "30 min"], [60, "1 h"], [240, "4 h"], [480, "8 h"], [1440, "24 h"]]
      .map(([v, l]) => h("option", { value: String(v), selected: v === 60 }, l)));
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
      h("details", { id: "shelve-box" }, h("summary", {}, "Shelve (suppress for a while)"),
        h("form", { class: "inline-form", onsubmit: async (e) => { e.preventDefault();
          if (!shelveReason.value.trim()) { shelveReason.focus(); return; }
          if (await act("shelve", { reason: shelveReason.value.trim(), minutes: Number(shelveMinutes.value) }, "Shelved.")) shelveReason.value = ""; } },
        h("div", { class: "field" }, h("label", { for: "shelve-reason" }, "Reason"), shelveReason),
        h("div", { class: "field" }, h("label", { for: "shelve-minutes" }, "For"), shelveMinutes),
        h("button", { type: "submit", class: "btn" }, "Shelve"))),
      h("button", { type: "button", class: "btn", id: "unshelve-button", hidden: true, onclick: () => act("unshelve", {}, "Back in the inbox.") }, "Unshelve"),
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

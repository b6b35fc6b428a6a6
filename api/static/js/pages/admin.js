// Administration (admin role): people and their roles, API tokens (created, shown once, revoked), and webhook
// subscriptions (created with their secret shown once, enabled/disabled, removed, and "send test event": a
// signed webhook.ping whose answer is shown).

import { api } from "../api.js";
import { badge, errorBox, h, loading, replace, section, table, time } from "../dom.js";
import { field, formError, fromLocalInput, input, onSubmit, select } from "../forms.js";

const ROLES = [["viewer", "viewer (read only)"], ["qa", "qa (decisions, signatures)"], ["admin", "admin"]];

export async function mount(main, ctx) {
  if (ctx.session.role !== "admin") {
    replace(main, h("h1", {}, "Administration"), h("div", { class: "state state-empty", role: "alert" },
      h("p", {}, "This page needs the admin role."), h("p", { class: "muted" }, `You are signed in as ${ctx.session.name} (${ctx.session.role}).`)));
    return null;
  }
  const usersBox = h("div", {}, loading("Loading people"));
  const tokensBox = h("div", {}, loading("Loading tokens"));
  const hooksBox = h("div", {}, loading("Loading subscriptions"));
  const secretBox = h("div", { id: "shown-once", "aria-live": "polite" });
  replace(main, h("h1", {}, "Administration"), secretBox,
    section("People", userForm(), usersBox),
    section("API tokens", tokenForm(), tokensBox),
    section("Webhook subscriptions", webhookForm(), hooksBox));

  function showSecret(title, value, note) {
    replace(secretBox, h("div", { class: "card" }, h("h2", {}, title), h("p", {}, note), h("p", { class: "secret" }, value),
      h("button", { type: "button", class: "btn btn-small", onclick: () => replace(secretBox) }, "I have stored it")));
    secretBox.scrollIntoView({ block: "start" });
  }

  function userForm() {
    const f = { username: input({ maxlength: 64, autocomplete: "off" }), full_name: input({ maxlength: 200 }),
      password: input({ type: "password", autocomplete: "new-password" }), role: select(ROLES, "qa") };
    const err = formError();
    const done = h("p", { role: "status", class: "muted wide" });
    const form = h("form", { id: "user-form", class: "form-grid", novalidate: true },
      field("Username", f.username), field("Full name (printed with signatures)", f.full_name),
      field("Initial password", f.password, "at least 12 characters"), field("Role", f.role),
      h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Add person")), err, done);
    onSubmit(form, err, async () => {
      const u = await api.post("/api/v1/users", { username: f.username.value.trim(), full_name: f.full_name.value.trim(),
        password: f.password.value, role: f.role.value });
      f.password.value = "";
      done.textContent = `${u.full_name} (${u.username}) added as ${u.role}.`;
      await refresh();
    });
    return h("details", {}, h("summary", {}, "Add a person"), form);
  }

  function tokenForm() {
    const f = { name: input({ maxlength: 100 }), role: select([["", "your own role"], ...ROLES], ""),
      expires: input({ type: "datetime-local" }), service: h("input", { type: "checkbox" }) };
    const err = formError();
    const form = h("form", { id: "token-form", class: "form-grid", novalidate: true },
      field("Token name", f.name, "what uses it, e.g. 'LIMS export'"), field("Role", f.role),
      field("Expires (default 90 days)", f.expires),
      h("div", { class: "field" }, h("label", {}, f.service, " service token (not tied to a person; cannot sign)")),
      h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Create token")), err);
    onSubmit(form, err, async () => {
      const t = await api.post("/api/v1/auth/tokens", { name: f.name.value.trim(), role: f.role.value || null,
        expires: fromLocalInput(f.expires.value), service: f.service.checked });
      showSecret("New API token", t.token, `Shown only now: store it where the client keeps secrets. Role ${t.role}, expires ${new Date(t.expires_at).toLocaleString()}.`);
      f.name.value = "";
      await refresh();
    });
    return h("details", {}, h("summary", {}, "Create a token"), form);
  }

  function webhookForm() {
    const f = { url: input({ type: "url", maxlength: 2000, placeholder: "https://alerts.example.org/coldtrace" }),
      description: input({ maxlength: 500 }), types: input({ placeholder: "empty: every type; e.g. excursion.*, lot.*" }),
      severity: select([["", "any severity"], ["warning", "warning and above"], ["alarm", "alarm and above"], ["critical", "critical only"]], ""),
      escalation: h("input", { type: "checkbox" }) };
    const err = formError();
    const form = h("form", { id: "webhook-form", class: "form-grid", novalidate: true },
      h("div", { class: "wide" }, field("Receiver URL", f.url)), field("Description", f.description),
      field("Event types", f.types), field("Minimum severity", f.severity),
      h("div", { class: "field" }, h("label", {}, f.escalation, " escalation contact (receives alert.escalated)")),
      h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Add subscription")), err);
    onSubmit(form, err, async () => {
      const s = await api.post("/api/v1/webhooks/subscriptions", { url: f.url.value.trim(), description: f.description.value.trim(),
        event_types: f.types.value.split(/[\s,;]+/).filter(Boolean), min_severity: f.severity.value || null,
        escalation: f.escalation.checked });
      showSecret("Webhook signing secret", s.secret, `Shown only now: the receiver verifies each request's signature with it (subscription ${s.id}).`);
      f.url.value = "";
      await refresh();
    });
    return h("details", {}, h("summary", {}, "Add a subscription"), form);
  }

  async function refresh() {
    const [users, tokens, hooks] = await Promise.all([
      api.get("/api/v1/users").catch((e) => { replace(usersBox, errorBox(e, "The people")); return null; }),
      api.get("/api/v1/auth/tokens").catch((e) => { replace(tokensBox, errorBox(e, "The tokens")); return null; }),
      api.get("/api/v1/webhooks/subscriptions").catch((e) => { replace(hooksBox, errorBox(e, "The subscriptions")); return null; }),
    ]);
    if (users) {
      replace(usersBox, table([
        { label: "Username", cell: (u) => u.username }, { label: "Full name", cell: (u) => u.full_name },
        { label: "Role", cell: (u) => u.role }, { label: "Active", cell: (u) => (u.active ? badge("active", "ok") : badge("inactive", "neutral")) },
      ], users));
    }
    if (tokens) {
      const byUser = new Map((users || []).map((u) => [u.id, u.username]));
      replace(tokensBox, table([
        { label: "Name", cell: (t) => t.name }, { label: "Owner", cell: (t) => (t.user_id ? byUser.get(t.user_id) || t.user_id : "service") },
        { label: "Role", cell: (t) => t.role }, { label: "Created", cell: (t) => time(t.created_at) },
        { label: "Expires", cell: (t) => time(t.expires_at, { empty: "never" }) }, { label: "Last used", cell: (t) => time(t.last_used_at, { empty: "never" }) },
        { label: "", cell: (t) => (t.revoked_at ? [badge("revoked", "neutral"), " ", time(t.revoked_at)]
          : h("button", { type: "button", class: "btn btn-small", onclick: () => revoke(t) }, `Revoke ${t.name}`)) },
      ], tokens, { emptyText: "No token." }));
    }
    if (hooks) {
      replace(hooksBox, table([
        { label: "Receiver", cell: (s) => [s.url, s.description ? h("div", { class: "muted" }, s.description) : null] },
        { label: "Events", cell: (s) => (s.event_types.length ? s.event_types.join(", ") : "all") + (s.min_severity ? `, ≥ ${s.min_severity}` : "") },
        { label: "State", cell: (s) => (s.enabled ? badge("enabled", "ok") : badge(s.disabled_reason ? `disabled: ${s.disabled_reason}` : "disabled", "neutral")) },
        { label: "", cell: (s) => h("div", { class: "row-actions" },
          h("button", { type: "button", class: "btn btn-small", dataset: { ping: s.id }, onclick: (e) => ping(s, e.target) }, "Send test event"),
          h("button", { type: "button", class: "btn btn-small", onclick: () => toggle(s) }, s.enabled ? "Disable" : "Enable"),
          h("button", { type: "button", class: "btn btn-small", onclick: () => remove(s) }, "Remove"),
          h("span", { class: "ping-result", role: "status", id: `ping-${s.id}` })) },
      ], hooks, { emptyText: "No webhook subscription." }));
    }
    if (!users || !tokens || !hooks) throw new Error("part of the administration data could not be loaded");
  }

  async function revoke(t) {
    if (!window.confirm(`Revoke the token "${t.name}"? Clients using it stop working at once.`)) return;
    try { await api.del(`/api/v1/auth/tokens/${encodeURIComponent(t.id)}`); await refresh(); } catch (e) { tokensBox.prepend(errorBox(e, "Revoking")); }
  }

  async function ping(s, button) {
    const out = document.getElementById(`ping-${s.id}`);
    button.disabled = true;
    out.textContent = "sending…";
    try {
      const r = await api.post(`/api/v1/webhooks/subscriptions/${encodeURIComponent(s.id)}/ping`);
      out.textContent = r.outcome === "delivered" || (r.status && r.status < 300)
        ? `delivered: HTTP ${r.status} in ${r.latency_ms} ms`
        : `not delivered: ${r.status ? `HTTP ${r.status}` : r.error || r.outcome} (${r.latency_ms} ms)`;
    } catch (e) {
      out.textContent = `failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  async function toggle(s) {
    try { await api.patch(`/api/v1/webhooks/subscriptions/${encodeURIComponent(s.id)}`, { enabled: !s.enabled }); await refresh(); } catch (e) { hooksBox.prepend(errorBox(e, "Changing")); }
  }

  async function remove(s) {
    if (!window.confirm(`Remove the subscription to ${s.url}?`)) return;
    try { await api.del(`/api/v1/webhooks/subscriptions/${encodeURIComponent(s.id)}`); await refresh(); } catch (e) { hooksBox.prepend(errorBox(e, "Removing")); }
  }

  await refresh().catch(() => {});
  return { refresh, interval: 30000 };
}

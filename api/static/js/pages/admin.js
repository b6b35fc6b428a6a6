// Administration (admin role): people (added; edited inline: full name, role, active, a new password), API tokens
// (created, shown once, revoked), and webhook subscriptions (created with their secret shown once, edited
// inline, secret rotated (the new one shown once), enabled/disabled, removed, and "send test event": a signed
// webhook.ping whose answer is shown). An open edit form is kept across the page's polling.

import { api } from "../api.js";
import { badge, errorBox, h, loading, replace, section, table, time } from "../dom.js";
import { field, formError, fromLocalInput, input, onSubmit, select } from "../forms.js";

const SEVERITIES = [["", "any severity"], ["warning", "warning and above"], ["alarm", "alarm and above"], ["critical", "critical only"]];
const words = (text) => String(text).split(/[\s,;]+/).filter(Boolean);
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
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
  const usersNote = h("p", { role: "status", class: "muted", id: "users-note" });
  const hooksNote = h("p", { role: "status", class: "muted", id: "hooks-note" });
  replace(main, h("h1", {}, "Administration"), secretBox,
    section("People", userForm(), usersNote, usersBox),
    section("API tokens", tokenForm(), tokensBox),
    section("Webhook subscriptions", webhookForm(), hooksNote, hooksBox));

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
      field("Initial password", f.password, "at least 10 characters"), field("Role", f.role),
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
      severity: select(SEVERITIES, ""),
      devices: input({ placeholder: "empty: every device" }), escalation: h("input", { type: "checkbox" }) };
    const err = formError();
    const form = h("form", { id: "webhook-form", class: "form-grid", novalidate: true },
      h("div", { class: "wide" }, field("Receiver URL", f.url)), field("Description", f.description),
      field("Event types", f.types), field("Minimum severity", f.severity), field("Device ids", f.devices),
      h("div", { class: "field" }, h("label", {}, f.escalation, " escalation contact (receives alert.escalated)")),
      h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Add subscription")), err);
    onSubmit(form, err, async () => {
      const s = await api.post("/api/v1/webhooks/subscriptions", { url: f.url.value.trim(), description: f.description.value.trim(),
        event_types: words(f.types.value), min_severity: f.severity.value || null, device_ids: words(f.devices.value),
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
    if (users && !usersBox.querySelector(".edit-row")) { // an open edit form is not replaced under the user's hands
      replace(usersBox, table([
        { label: "Username", cell: (u) => u.username }, { label: "Full name", cell: (u) => u.full_name },
        { label: "Role", cell: (u) => u.role }, { label: "Active", cell: (u) => (u.active ? badge("active", "ok") : badge("disabled", "neutral")) },
        { label: "", cell: (u) => h("button", { type: "button", class: "btn btn-small", "aria-expanded": "false",
          onclick: (e) => toggleEdit(e.currentTarget, userEditor(u)) }, `Edit ${u.username}`) },
      ], users));
    }
    if (tokens) {
      const byUser = new Map((users || []).map((u) => [u.id, u.username]));
      const owner = new Map((users || []).map((u) => [u.id, u]));
      const RANK = { viewer: 1, qa: 2, admin: 3 };
      // a personal token never acts above its owner's current role, nor at all while the owner is disabled
      const tokenRole = (t) => {
        const u = t.user_id ? owner.get(t.user_id) : null;
        if (!u) return t.role;
        if (!u.active) return [t.role, " ", badge("owner disabled", "neutral")];
        return RANK[u.role] < RANK[t.role] ? `${t.role} (acts as ${u.role})` : t.role;
      };
      replace(tokensBox, table([
        { label: "Name", cell: (t) => t.name }, { label: "Owner", cell: (t) => (t.user_id ? byUser.get(t.user_id) || t.user_id : "service") },
        { label: "Role", cell: tokenRole }, { label: "Created", cell: (t) => time(t.created_at) },
        { label: "Expires", cell: (t) => time(t.expires_at, { empty: "never" }) }, { label: "Last used", cell: (t) => time(t.last_used_at, { empty: "never" }) },
        { label: "", cell: (t) => (t.revoked_at ? [badge("revoked", "neutral"), " ", time(t.revoked_at)]
          : h("button", { type: "button", class: "btn btn-small", onclick: () => revoke(t) }, `Revoke ${t.name}`)) },
      ], tokens, { emptyText: "No token." }));
    }
    if (hooks && !hooksBox.querySelector(".edit-row")) {
      replace(hooksBox, table([
        { label: "Receiver", cell: (s) => [s.url, s.description ? h("div", { class: "muted" }, s.description) : null] },
        { label: "Events", cell: (s) => [(s.event_types.length ? s.event_types.join(", ") : "all") + (s.min_severity ? `, ≥ ${s.min_severity}` : ""),
          s.device_ids.length ? h("div", { class: "muted" }, `devices: ${s.device_ids.join(", ")}`) : null,
          s.escalation ? h("div", { class: "muted" }, "escalation contact") : null] },
        { label: "State", cell: (s) => [s.enabled ? badge("enabled", "ok") : badge(s.disabled_reason ? `disabled: ${s.disabled_reason}` : "disabled", "neutral"),
          s.rotation_expires_at && s.rotation_expires_at > Date.now()
            ? h("div", { class: "muted" }, "old secret also signs until ", time(s.rotation_expires_at)) : null] },
        { label: "", cell: (s) => h("div", { class: "row-actions" },
          h("button", { type: "button", class: "btn btn-small", dataset: { ping: s.id }, onclick: (e) => ping(s, e.target) }, "Send test event"),
          h("button", { type: "button", class: "btn btn-small", "aria-expanded": "false",
            onclick: (e) => toggleEdit(e.currentTarget, hookEditor(s)) }, "Edit"),
          h("button", { type: "button", class: "btn btn-small", onclick: () => rotate(s) }, "Rotate secret"),
          h("button", { type: "button", class: "btn btn-small", onclick: () => toggle(s) }, s.enabled ? "Disable" : "Enable"),
          h("button", { type: "button", class: "btn btn-small", onclick: () => remove(s) }, "Remove"),
          h("span", { class: "ping-result", role: "status", id: `ping-${s.id}` })) },
      ], hooks, { emptyText: "No webhook subscription." }));
    }
    if (!users || !tokens || !hooks) throw new Error("part of the administration data could not be loaded");
  }

  /** Open (or close) an edit row under the table row of ``button``; ``build`` makes its content. */
  function toggleEdit(button, build) {
    const tr = button.closest("tr");
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("edit-row")) {
      next.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const close = () => { row.remove(); button.setAttribute("aria-expanded", "false"); button.focus(); };
    const row = h("tr", { class: "edit-row" }, h("td", { colspan: tr.children.length }, build(close)));
    tr.after(row);
    button.setAttribute("aria-expanded", "true");
    const first = row.querySelector("input, select");
    if (first) first.focus();
  }

  function userEditor(u) {
    return (close) => {
      const f = { full_name: input({ maxlength: 200, value: u.full_name }), role: select(ROLES, u.role),
        active: h("input", { type: "checkbox", checked: u.active }) };
      const err = formError();
      const form = h("form", { class: "form-grid", novalidate: true, "aria-label": `Edit ${u.username}` },
        field("Full name", f.full_name, "printed with their signatures"), field("Role", f.role),
        h("div", { class: "field" }, h("label", {}, f.active, " active (may sign in)"),
          h("small", { class: "muted" }, "disabling ends their sessions and stops their tokens")),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save changes"),
          h("button", { type: "button", class: "btn", onclick: close }, "Cancel")), err);
      onSubmit(form, err, async () => {
        const body = {};
        if (f.full_name.value.trim() !== u.full_name) body.full_name = f.full_name.value.trim();
        if (f.role.value !== u.role) body.role = f.role.value;
        if (f.active.checked !== u.active) body.active = f.active.checked;
        if (!Object.keys(body).length) throw new Error("nothing was changed");
        const what = [body.full_name !== undefined && `full name “${body.full_name}”`, body.role && `role ${u.role} → ${body.role}`,
          body.active === false && "disabled: sessions ended, tokens stopped", body.active === true && "enabled"].filter(Boolean);
        if (body.active === false && !window.confirm(`Disable ${u.username}? They are signed out at once and their tokens stop working.`)) return;
        await api.patch(`/api/v1/users/${encodeURIComponent(u.username)}`, body);
        if (u.username === ctx.session.name && (body.role || body.active === false)) { location.reload(); return; }
        close();
        await refresh().catch(() => {}); // a failed reload shows in its section; the change was saved
        usersNote.textContent = `${u.username}: ${what.join("; ")}.`;
      });
      const pw = input({ type: "password", autocomplete: "new-password", minlength: 10 });
      const pwErr = formError();
      const pwForm = h("form", { class: "form-grid", novalidate: true, "aria-label": `Password of ${u.username}` },
        field("New password", pw, "at least 10 characters; ends their open sessions"),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn" }, "Set password")), pwErr);
      onSubmit(pwForm, pwErr, async () => {
        if (!window.confirm(`Set a new password for ${u.username}? Their open sessions end.`)) return;
        await api.post(`/api/v1/users/${encodeURIComponent(u.username)}/password`, { password: pw.value });
        pw.value = "";
        close();
        await refresh().catch(() => {}); // a failed reload shows in its section; the change was saved
        usersNote.textContent = `${u.username}: password set; give it to them through another channel.`;
      });
      return h("div", { class: "inline-edit" }, form, pwForm);
    };
  }

  function hookEditor(s) {
    return (close) => {
      const f = { url: input({ type: "url", maxlength: 2000, value: s.url }), description: input({ maxlength: 500, value: s.description }),
        types: input({ value: s.event_types.join(", "), placeholder: "empty: every type" }), severity: select(SEVERITIES, s.min_severity || ""),
        devices: input({ value: s.device_ids.join(", "), placeholder: "empty: every device" }),
        enabled: h("input", { type: "checkbox", checked: s.enabled }), escalation: h("input", { type: "checkbox", checked: s.escalation }) };
      const err = formError();
      const form = h("form", { class: "form-grid", novalidate: true, "aria-label": `Edit subscription to ${s.url}` },
        h("div", { class: "wide" }, field("Receiver URL", f.url)), field("Description", f.description),
        field("Event types", f.types, "comma-separated, e.g. excursion.*, alert.escalated"), field("Minimum severity", f.severity),
        field("Device ids", f.devices, "comma-separated"),
        h("div", { class: "field" }, h("label", {}, f.enabled, " enabled")),
        h("div", { class: "field" }, h("label", {}, f.escalation, " escalation contact (receives alert.escalated)")),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Save subscription"),
          h("button", { type: "button", class: "btn", onclick: close }, "Cancel")), err);
      onSubmit(form, err, async () => {
        const body = {};
        if (f.url.value.trim() !== s.url) body.url = f.url.value.trim();
        if (f.description.value.trim() !== s.description) body.description = f.description.value.trim();
        if (!sameList(words(f.types.value), s.event_types)) body.event_types = words(f.types.value);
        if ((f.severity.value || null) !== s.min_severity) body.min_severity = f.severity.value || null;
        if (!sameList(words(f.devices.value), s.device_ids)) body.device_ids = words(f.devices.value);
        if (f.enabled.checked !== s.enabled) body.enabled = f.enabled.checked;
        if (f.escalation.checked !== s.escalation) body.escalation = f.escalation.checked;
        if (!Object.keys(body).length) throw new Error("nothing was changed");
        await api.patch(`/api/v1/webhooks/subscriptions/${encodeURIComponent(s.id)}`, body);
        close();
        await refresh().catch(() => {}); // a failed reload shows in its section; the change was saved
        hooksNote.textContent = `Subscription to ${body.url || s.url} saved (${Object.keys(body).join(", ").replace(/_/g, " ")}).`;
      });
      return h("div", { class: "inline-edit" }, form);
    };
  }

  async function rotate(s) {
    if (!window.confirm(`Give the subscription to ${s.url} a new signing secret? The old one keeps signing as a second signature for a while, so the receiver can switch.`)) return;
    try {
      const r = await api.post(`/api/v1/webhooks/subscriptions/${encodeURIComponent(s.id)}/rotate`);
      const until = r.rotation_expires_at ? new Date(r.rotation_expires_at).toLocaleString() : null;
      showSecret("New webhook signing secret", r.secret, `Shown only now (subscription ${s.id}). ${until
        ? `Until ${until} each request also carries a signature with the old secret; give the receiver this one before then.`
        : "The old secret no longer signs: give the receiver this one now."}`);
      await refresh();
    } catch (e) { hooksBox.prepend(errorBox(e, "Rotating the secret")); }
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

// One calibration session: set points with their stable windows, and per device under test the results
// (n, error, s, u, U, ILAC-G8 decision) with a link to each device's certificate and drift chart.

import { api } from "../api.js";
import { badge, dl, errorBox, fixed, h, link, loading, notFound, replace, section, table, temp, time } from "../dom.js";
import { sessionStateBadge } from "./calibration.js";
import { field, formError, input, onSubmit, signDialog } from "../forms.js";

const num = (v, d = 3) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(d));
const notRecorded = () => h("span", { class: "muted" }, "not recorded (required before a certificate is issued)");

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
  const signBox = h("div", { id: "signatures" });
  const certBox = h("div", { id: "certificates" });
  const condBox = h("div", {});
  replace(main, h("div", { class: "crumbs" }, link("/ui/calibration", "Calibration"), " / ", id), head,
    ctx.canWrite ? section("Signatures and certificates", signBox, certBox) : null,
    section("Set points", pointsBox), h("div", { id: "results" }, resultsBox),
    ctx.canWrite ? section("Customer, location and conditions", condBox) : null);
  const sid = encodeURIComponent(id);
  let condShown = false;
  let certKey = null;

  async function refresh() {
    let s;
    try {
      s = await api.get(`/api/v1/calibration/sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      replace(head, errorBox(e, "The session"));
      throw e;
    }
    const actions = h("div", { class: "actions" },
      ctx.canWrite && s.state === "running" && h("button", { type: "button", class: "btn", onclick: () => evaluateNow() }, "Evaluate now"),
      ctx.canWrite && s.state === "running" && h("button", { type: "button", class: "btn", onclick: () => cancelSession() }, "Cancel session"));
    replace(head, h("div", { class: "page-head" }, h("h1", {}, `Calibration session ${id} `, sessionStateBadge(s.state)), actions), h("div", { class: "card" }, dl([
      ["Kind", (s.kind || "").replace("_", "-")], ["Reference", link(`/ui/calibration/devices/${encodeURIComponent(s.reference_id)}`, s.reference_id)],
      ["Reference uncertainty", `U = ${fixed(s.u_ref_c, 4)} °C (k = 2)`], ["MPE", `±${fixed(s.mpe_c, 3)} °C (${s.rule} decision rule)`],
      ["Started", time(s.started_at)], ["Completed", time(s.completed_at, { empty: s.state === "running" ? "running" : `not completed (${s.state})` })],
      ["Devices under test", s.duts.map((d) => d.device_id).join(", ")], s.notes && ["Notes", s.notes],
      ["Customer", s.customer || notRecorded()], ["Location", s.location || notRecorded()],
      ["Ambient", s.ambient_c === null || s.ambient_c === undefined ? "not recorded" : `${num(s.ambient_c, 1)} °C, ${s.ambient_rh_pct === null ? "RH not recorded" : `${num(s.ambient_rh_pct, 0)} % RH`}`],
    ])));
    if (ctx.canWrite) {
      if (!condShown) { condShown = true; renderConditions(s); }
      await renderCertificates(s);
    }
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
        { label: "s (°C)", num: true, cell: (r) => num(r.s_c, 4) },
        { label: "u (°C)", num: true, cell: (r) => num(r.u_c, 4) },
        { label: "U, k=2 (°C)", num: true, cell: (r) => num(r.expanded_u_c) },
        { label: "Decision", cell: (r) => decisionBadge(r.decision) },
        { label: "Zone", cell: (r) => r.zone },
      ], rows))) : section("Results", h("p", { class: "muted" }, "No results yet: they appear as each set point is captured.")));
  }
  async function evaluateNow() {
    try { await api.post(`/api/v1/calibration/sessions/${sid}/evaluate`); await refresh(); } catch (e) { head.append(errorBox(e, "Evaluating")); }
  }

  async function cancelSession() {
    if (!window.confirm("Stop following this session? Its records are kept.")) return;
    try { await api.post(`/api/v1/calibration/sessions/${sid}/cancel`); await refresh(); } catch (e) { head.append(errorBox(e, "Cancelling")); }
  }

  function renderConditions(s) {
    const f = {
      customer: input({ value: s.customer || "", maxlength: 200 }), location: input({ value: s.location || "", maxlength: 200 }),
      ambient_c: input({ type: "number", step: "0.1", value: s.ambient_c ?? "" }),
      ambient_rh_pct: input({ type: "number", step: "1", min: "0", max: "100", value: s.ambient_rh_pct ?? "" }),
    };
    const err = formError();
    const done = h("p", { role: "status", class: "muted wide" });
    const form = h("form", { class: "form-grid", id: "conditions-form", novalidate: true },
      field("Customer", f.customer), field("Location", f.location), field("Ambient temperature (°C)", f.ambient_c),
      field("Relative humidity (%)", f.ambient_rh_pct),
      h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn" }, "Save conditions")), err, done);
    onSubmit(form, err, async () => {
      const n = (el) => (el.value === "" ? null : Number(el.value));
      await api.patch(`/api/v1/calibration/sessions/${sid}`, { customer: f.customer.value.trim() || null,
        location: f.location.value.trim() || null, ambient_c: n(f.ambient_c), ambient_rh_pct: n(f.ambient_rh_pct) });
      done.textContent = "Saved. An issued certificate changes only by a re-issue (a new revision).";
      certKey = null;
      await refresh();
    });
    replace(condBox, form);
  }

  async function renderCertificates(s) {
    const states = await Promise.all(s.duts.map((d) => api.get(`/api/v1/calibration/sessions/${sid}/certificates/${encodeURIComponent(d.device_id)}/revisions`)));
    const key = JSON.stringify([s.state, states]);
    if (key === certKey) return;
    certKey = key;
    const performed = states.length ? states[0].performed : null;
    const sig = [];
    if (s.state !== "completed") {
      sig.push(h("p", { class: "muted" }, "Signatures and certificates follow once the session is completed."));
    } else if (performed) {
      sig.push(h("p", {}, "Performed by ", h("strong", {}, performed.printed_name), ` (${performed.signer_username}) on `, time(performed.signed_at), `: ${performed.meaning}.`));
    } else {
      sig.push(h("p", {}, "Not signed as performed yet. ",
        h("button", { type: "button", class: "btn btn-primary", id: "sign-performed", onclick: () => signDialog({
          title: "Sign the session as performed", session: ctx.session,
          statement: `As ${ctx.session.full_name || ctx.session.name} you sign that you performed this calibration and are responsible for its measurement results. The signature is bound to the results and recorded in the audit trail.`,
          onSign: async (password) => { await api.post(`/api/v1/calibration/sessions/${sid}/signatures`, { password }, { redirectOn401: false }); certKey = null; await refresh(); },
        }) }, "Sign as performed…")));
    }
    replace(signBox, sig);
    replace(certBox, table([
      { label: "Device", cell: (c) => c.device_id },
      { label: "Certificate", cell: (c) => c.number },
      { label: "Issued revisions", cell: (c) => [c.revisions.length ? c.revisions.map((r) => h("div", {},
        link(`/api/v1/calibration/sessions/${sid}/certificates/${encodeURIComponent(c.device_id)}.pdf?revision=${r.revision}`, `revision ${r.revision}`),
        " issued ", time(r.issued_at), ` by ${r.approver_name}`, r.changes ? ` — ${r.changes}` : "")) : h("span", { class: "muted" }, "not issued"),
        // what ISO/IEC 17025 7.8 needs and the records lack: the API refuses the issue until it is recorded
        c.missing && c.missing.length ? h("p", { class: "cert-missing", dataset: { missing: c.device_id } },
          `Before ${c.revisions.length ? "a re-issue" : "issue"}, record: ${c.missing.join("; ")}.`) : null] },
      { label: "", cell: (c) => h("div", { class: "row-actions" },
        link(`/api/v1/calibration/sessions/${sid}/certificates/${encodeURIComponent(c.device_id)}.pdf`, c.revisions.length ? "PDF (latest)" : "draft PDF"),
        s.state === "completed" && performed && h("button", { type: "button", class: "btn btn-small", dataset: { issue: c.device_id },
          onclick: () => issue(c) }, c.revisions.length ? "Re-issue…" : "Approve and issue…")) },
    ], states, { emptyText: "No device under test." }));
  }

  function issue(c) {
    const changes = h("textarea", { maxlength: 2000 });
    const re = c.revisions.length > 0;
    signDialog({
      title: `${re ? "Re-issue" : "Approve and issue"} certificate ${c.number}`, session: ctx.session,
      statement: `As ${ctx.session.full_name || ctx.session.name} (authorised signatory, not the person who performed it) you approve ${re ? `revision ${c.revisions.length + 1}` : "the first revision"} of this certificate for issue. Its content and issue date are then fixed.`,
      extra: re ? [field("What changed and why (stated on the certificate)", changes)] : [],
      submitLabel: re ? "Sign and re-issue" : "Sign and issue",
      onSign: async (password) => {
        await api.post(`/api/v1/calibration/sessions/${sid}/certificates/${encodeURIComponent(c.device_id)}/issue`,
          { password, changes: re ? changes.value.trim() : null }, { redirectOn401: false });
        certKey = null;
        await refresh();
      },
    });
  }

  await refresh().catch(() => {});
  return { refresh, interval: 10000 };
}

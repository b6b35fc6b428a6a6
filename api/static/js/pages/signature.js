// The e-signature dialog of a shipment decision: what is signed is stated in words, the signer re-enters
// their password (the server checks it and binds the signature to the evaluated record), and a decision that
// replaces an earlier one must say why.

import { api } from "../api.js";
import { h } from "../dom.js";

const MEANINGS = [["released", "Release"], ["quarantined", "Quarantine"], ["rejected", "Reject"]];

export function openSignatureDialog({ shipment, current, session, checklist, onSigned }) {
  const err = h("p", { class: "form-error", role: "alert", hidden: true });
  const reason = h("textarea", { id: "sig-reason", required: true, maxlength: 2000 });
  const password = h("input", { id: "sig-password", type: "password", autocomplete: "current-password", required: true });
  const supersede = current ? h("textarea", { id: "sig-supersede", required: true, maxlength: 2000 }) : null;
  const failed = checklist ? checklist.items.filter((i) => i.status === "fail") : [];
  const override = h("input", { id: "sig-override", type: "checkbox" });
  const overrideBox = failed.length ? h("div", { class: "field override", hidden: true },
    h("label", { for: "sig-override" }, override,
      ` I release although ${failed.length} checklist item${failed.length === 1 ? "" : "s"} fail; my reason justifies it.`)) : null;
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign");
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h("form", { method: "dialog", novalidate: true },
    h("h2", { id: "sig-title" }, `Sign a decision for ${shipment.reference}`),
    checklist && h("div", { class: `sig-checklist ${failed.length ? "state-error" : ""}` },
      h("strong", {}, `Release checklist: ${checklist.overall.toUpperCase()}`),
      failed.length ? h("ul", {}, failed.map((i) => h("li", {}, `${i.title}: ${i.detail}`))) : null),
    // no decision is pre-selected: the signer chooses one deliberately
    h("fieldset", { class: "meaning" }, h("legend", {}, "Decision"),
      MEANINGS.map(([value, label]) => h("label", {},
        h("input", { type: "radio", name: "meaning", value, required: true }), label))),
    overrideBox,
    h("div", { class: "field" }, h("label", { for: "sig-reason" }, "Reason (recorded with the signature)"), reason),
    supersede && h("div", { class: "field" }, h("label", { for: "sig-supersede" }, `Why this replaces the ${current.meaning} decision of ${current.printed_name}`), supersede),
    h("div", { class: "field" }, h("label", { for: "sig-password" }, `Password of ${session.name} (re-enter to sign)`), password),
    h("p", { class: "signature-note" }, `Signing as ${session.full_name || session.name}. The signature binds your name, the `,
      "date and time, the meaning and the shipment's evaluated record (excursions, statistics, MKT); it is ",
      "kept in the audit trail and cannot be changed, only superseded by a later signed decision."),
    err,
    h("div", { class: "dialog-actions" }, cancel, submit));
  const dialog = h("dialog", { "aria-labelledby": "sig-title", id: "signature-dialog" }, form);
  document.body.append(dialog);
  const close = () => { dialog.close(); dialog.remove(); };
  cancel.addEventListener("click", close);
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(); });
  form.addEventListener("change", () => {
    const m = (form.querySelector("input[name=meaning]:checked") || {}).value;
    if (overrideBox) overrideBox.hidden = m !== "released";
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const meaning = (form.querySelector("input[name=meaning]:checked") || {}).value;
    const problems = [];
    if (!meaning) problems.push("choose a decision");
    if (!reason.value.trim()) problems.push("give a reason");
    if (supersede && !supersede.value.trim()) problems.push("say why the earlier decision is replaced");
    if (!password.value) problems.push("re-enter your password");
    if (meaning === "released" && failed.length && !override.checked) problems.push("confirm that you release over the failing checklist items");
    if (problems.length) {
      err.textContent = `To sign, ${problems.join(", ")}.`;
      err.hidden = false;
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing…";
    try {
      await api.post(`/api/v1/shipments/${encodeURIComponent(shipment.id)}/decisions`, {
        meaning, reason: reason.value.trim(), password: password.value,
        supersede_reason: supersede ? supersede.value.trim() : null,
        override_failed_checks: meaning === "released" && failed.length > 0 && override.checked,
      }, { redirectOn401: false });
      close();
      onSigned();
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign";
    }
  });
  dialog.showModal();
  form.querySelector("input[name=meaning]").focus();
}

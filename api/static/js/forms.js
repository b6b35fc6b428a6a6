// Small helpers of the QA forms: labelled fields, a submit that shows the API's error next to the form (never
// loses what was typed), local date-time inputs (the user's zone; the API gets an instant with an offset),
// and a password dialog for electronic signatures.

import { h } from "./dom.js";

let seq = 0;

/** A labelled field around an input; the input gets an id when it has none. */
export function field(label, input, hint = null) {
  if (!input.id) input.id = `f-${++seq}`;
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input,
    hint && h("small", { class: "muted" }, hint));
}

export function input(attrs = {}) {
  return h("input", { type: "text", ...attrs });
}

export function select(options, value = null, attrs = {}) {
  return h("select", attrs, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

/** "2026-11-26T11:00" in the browser's zone for a datetime-local input (minutes). */
export function toLocalInput(ms = Date.now()) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local value (the user's zone) as RFC 3339 UTC for the API; null when empty. */
export function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

/** Numbers typed as "-20, 5, 25" (comma, semicolon or space separated). */
export function numberList(text) {
  return String(text).split(/[\s,;]+/).filter(Boolean).map(Number);
}

export function formError() {
  return h("p", { class: "form-error", role: "alert", hidden: true });
}

/** Wire a form: on submit run ``action`` with the button disabled; show errors in ``err``; keep the inputs. */
export function onSubmit(form, err, action, { busy = "Saving…" } = {}) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const label = button ? button.textContent : null;
    err.hidden = true;
    if (button) { button.disabled = true; button.textContent = busy; }
    try {
      await action();
    } catch (ex) {
      err.textContent = ex.message + (ex.code ? ` (${ex.code})` : "");
      err.hidden = false;
    } finally {
      if (button) { button.disabled = false; button.textContent = label; }
    }
  });
}

/** A modal asking for the signer's password (and optional extra fields) before an e-signature request. */
export function signDialog({ title, statement, session, extra = [], submitLabel = "Sign", onSign }) {
  const password = h("input", { type: "password", autocomplete: "current-password", required: true });
  const err = formError();
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h("form", { method: "dialog", novalidate: true },
    h("h2", {}, title), h("p", { class: "signature-note" }, statement),
    extra, field(`Password of ${session.name} (re-enter to sign)`, password), err,
    h("div", { class: "dialog-actions" }, cancel, h("button", { type: "submit", class: "btn btn-primary" }, submitLabel)));
  const dialog = h("dialog", { class: "sign-dialog" }, form);
  document.body.append(dialog);
  const close = () => { dialog.close(); dialog.remove(); };
  cancel.addEventListener("click", close);
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(); });
  onSubmit(form, err, async () => {
    if (!password.value) throw new Error("re-enter your password to sign");
    try {
      await onSign(password.value);
    } catch (ex) {
      password.value = "";
      throw ex;
    }
    close();
  }, { busy: "Signing…" });
  dialog.showModal();
  password.focus();
  return dialog;
}

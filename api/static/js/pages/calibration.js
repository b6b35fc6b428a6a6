// Calibration at a glance: sessions (running, completed, cancelled) and every device's calibration state
// (due date, expired, failed), each device linking to its drift chart.

import { api, getOptional } from "../api.js";
import { badge, errorBox, fixed, h, link, loading, replace, section, table, time, toMs } from "../dom.js";
import { calibrationBadge } from "./common.js";
import { field, formError, fromLocalInput, input, numberList, onSubmit, select, toLocalInput } from "../forms.js";

export function sessionStateBadge(s) {
  return badge(s, { running: "info", completed: "ok", cancelled: "neutral" }[s] || "neutral");
}

export async function mount(main, ctx) {
  const sessionsBox = h("div", {}, loading("Loading sessions"));
  const devicesBox = h("div", {}, loading("Loading devices"));
  let devs = [];
  try { devs = await api.get("/api/v1/devices", { limit: 10000 }); } catch (e) { /* the list below shows the error */ }
  replace(main, h("h1", {}, "Calibration"),
    ctx.canWrite ? newSessionForm(devs) : null,
    ctx.canWrite ? deviceRecordForm(devs) : null,
    section("Sessions", sessionsBox),
    section("Devices: calibration due and drift", devicesBox));
  const states = new Map();
  let lastStates = 0;

  async function refresh() {
    const [sessions, devices] = await Promise.all([
      api.get("/api/v1/calibration/sessions", { limit: 100 }).catch((e) => { replace(sessionsBox, errorBox(e, "The sessions")); return null; }),
      api.get("/api/v1/devices", { limit: 10000 }).catch((e) => { replace(devicesBox, errorBox(e, "The devices")); return null; }),
    ]);
    if (sessions) {
      replace(sessionsBox, table([
        { label: "Session", cell: (s) => link(`/ui/calibration/sessions/${encodeURIComponent(s.id)}`, s.id) },
        { label: "State", cell: (s) => sessionStateBadge(s.state) },
        { label: "Kind", cell: (s) => (s.kind || "").replace("_", "-") },
        { label: "Reference", cell: (s) => s.reference_id },
        { label: "Set points", cell: (s) => (s.set_points || []).map((p) => `${fixed(p, 2)} °C`).join(", ") },
        { label: "Started", cell: (s) => time(s.started_at) },
        { label: "Completed", cell: (s) => time(s.completed_at) },
      ], sessions, { emptyText: "No calibration session yet. Start one with the form above." }));
    }
    if (devices) {
      if (Date.now() - lastStates > 30_000) {
        lastStates = Date.now();
        for (let i = 0; i < devices.length; i += 8) {
          await Promise.all(devices.slice(i, i + 8).map(async (d) => {
            states.set(d.id, await getOptional(`/api/v1/calibration/devices/${encodeURIComponent(d.id)}`).catch((e) => ({ error: e.message })));
          }));
        }
      }
      const rank = (d) => ({ expired: 0, failed: 0, due_soon: 1, unknown: 3, valid: 2 }[((states.get(d.id) || {}).status || {}).status] ?? 4);
      const rows = [...devices].sort((a, b) => rank(a) - rank(b) || dueOf(states.get(a.id)) - dueOf(states.get(b.id)) || a.id.localeCompare(b.id));
      replace(devicesBox, table([
        { label: "Device", cell: (d) => link(`/ui/calibration/devices/${encodeURIComponent(d.id)}`, d.id) },
        { label: "Kind", cell: (d) => d.kind },
        { label: "State", cell: (d) => calibrationBadge(states.get(d.id)) },
        { label: "Last calibrated", cell: (d) => time(((states.get(d.id) || {}).status || {}).last_calibrated_at, { dateOnly: true }) },
        { label: "Certificate", cell: (d) => ((states.get(d.id) || {}).status || {}).certificate_ref || h("span", { class: "muted" }, "none on record") },
      ], rows, { emptyText: "No devices yet." }));
    }
    if (!sessions || !devices) throw new Error("part of the calibration data could not be loaded");
  }
  await refresh().catch(() => {});
  return { refresh, interval: 10000 };
}

function dueOf(c) {
  const due = c && c.status ? toMs(c.status.due_at) : null;
  return due === null ? Infinity : due;
}

function deviceList(id, devices) {
  return h("datalist", { id }, devices.map((d) => h("option", { value: d.id }, d.kind)));
}

/** Start a session: the reference, the loggers under test, set points, MPE, decision rule, conditions. */
function newSessionForm(devices) {
  const refs = devices.filter((d) => d.kind === "reference");
  const f = {
    reference: input({ list: "cal-refs", required: true, placeholder: refs.length ? refs[0].id : "REF-1", autocomplete: "off" }),
    duts: input({ required: true, placeholder: "LOG-1, LOG-2", class: "wide" }),
    set_points: input({ value: "-20, 5, 25", required: true }),
    mpe_c: input({ type: "number", step: "0.01", min: "0.01", value: "0.5" }),
    rule: select([["guarded", "ILAC-G8 guarded acceptance (w = U)"], ["simple", "simple acceptance (w = 0)"]], "guarded"),
    kind: select([["as_found", "as-found (before adjustment)"], ["as_left", "as-left (after adjustment)"]], "as_found"),
    capture_min: input({ type: "number", step: "1", min: "1", value: "10" }),
    start: input({ type: "datetime-local", value: toLocalInput() }),
    customer: input({ maxlength: 200, placeholder: "default: the lab setting" }),
    location: input({ maxlength: 200, placeholder: "default: the lab setting" }),
    ambient_c: input({ type: "number", step: "0.1" }),
    ambient_rh_pct: input({ type: "number", step: "1", min: "0", max: "100" }),
  };
  const err = formError();
  const form = h("form", { id: "new-session", class: "form-grid", novalidate: true },
    field("Reference", f.reference, "its U (k=2) must be on record"), deviceList("cal-refs", devices),
    field("Set points (°C)", f.set_points, "comma separated, bench order"),
    field("MPE ± (°C)", f.mpe_c), field("Decision rule", f.rule), field("Kind", f.kind),
    field("Capture window (min)", f.capture_min), field("Follow readings from", f.start),
    h("div", { class: "wide" }, field("Devices under test", f.duts, "device ids, comma separated")),
    field("Customer", f.customer), field("Location", f.location),
    field("Ambient temperature (°C)", f.ambient_c), field("Relative humidity (%)", f.ambient_rh_pct),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Start session")), err);
  onSubmit(form, err, async () => {
    const duts = f.duts.value.split(/[\s,;]+/).filter(Boolean);
    const sps = numberList(f.set_points.value);
    if (!f.reference.value.trim() || !duts.length || !sps.length || sps.some(Number.isNaN)) {
      throw new Error("Give the reference, at least one device under test and numeric set points.");
    }
    const opt = (el) => (el.value === "" ? null : Number(el.value));
    const s = await api.post("/api/v1/calibration/sessions", {
      reference_id: f.reference.value.trim(), duts: duts.map((d) => ({ device_id: d })), set_points: sps,
      mpe_c: Number(f.mpe_c.value), rule: f.rule.value, kind: f.kind.value, capture_min: Number(f.capture_min.value),
      start: fromLocalInput(f.start.value), customer: f.customer.value.trim() || null, location: f.location.value.trim() || null,
      ambient_c: opt(f.ambient_c), ambient_rh_pct: opt(f.ambient_rh_pct),
    });
    location.assign(`/ui/calibration/sessions/${encodeURIComponent(s.id)}`);
  }, { busy: "Starting…" });
  return h("details", { class: "card form-card" }, h("summary", {}, "Start a calibration session"), form);
}

/** A device's calibration record: an external certificate, a reference's U and traceability, make/model/serial. */
function deviceRecordForm(devices) {
  const f = {
    device: input({ list: "cal-devices", required: true, autocomplete: "off" }),
    last_calibrated_at: input({ type: "date" }),
    interval_days: input({ type: "number", min: "1", step: "1", value: "365" }),
    certificate_ref: input({ maxlength: 200 }),
    expanded_uncertainty_c: input({ type: "number", step: "0.001", min: "0" }),
    resolution_c: input({ type: "number", step: "0.001", min: "0" }),
    calibrated_by: input({ maxlength: 300 }),
    traceability: input({ maxlength: 2000 }),
    make: input({ maxlength: 100 }), model: input({ maxlength: 100 }), serial_number: input({ maxlength: 100 }),
  };
  const err = formError();
  const done = h("p", { role: "status", class: "muted wide" });
  const form = h("form", { id: "device-record", class: "form-grid", novalidate: true },
    field("Device", f.device), deviceList("cal-devices", devices),
    field("Calibrated on", f.last_calibrated_at), field("Interval (days)", f.interval_days),
    field("Certificate number", f.certificate_ref), field("Issuing laboratory", f.calibrated_by),
    field("Expanded uncertainty U, k=2 (°C)", f.expanded_uncertainty_c, "references"), field("Resolution (°C)", f.resolution_c),
    h("div", { class: "wide" }, field("Traceability", f.traceability, "chain to national standards (lab, certificate)")),
    field("Make", f.make), field("Model", f.model), field("Serial number", f.serial_number),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn" }, "Save calibration record")), err, done);
  onSubmit(form, err, async () => {
    const id = f.device.value.trim();
    if (!id) throw new Error("Name the device.");
    const body = {};
    for (const [k, el] of Object.entries(f)) {
      if (k === "device" || el.value === "") continue;
      body[k] = el.type === "number" ? Number(el.value) : el.value.trim();
    }
    if (body.last_calibrated_at) body.last_calibrated_at = new Date(`${body.last_calibrated_at}T12:00:00`).toISOString();
    await api.put(`/api/v1/calibration/devices/${encodeURIComponent(id)}`, body);
    done.textContent = `Calibration record of ${id} saved.`;
  });
  return h("details", { class: "card form-card" }, h("summary", {}, "Record a device's calibration (certificate, traceability, identity)"), form);
}

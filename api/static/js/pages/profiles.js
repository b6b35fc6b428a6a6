// Temperature profiles: the list, and a form to create or change a custom profile (limits with their delays,
// cumulative budgets and hysteresis, the MKT limit, the data-gap rule) with a live preview of its limits on a
// sample curve (uPlot): where each limit's alarm would fall on that curve.

import { api } from "../api.js";
import { makeChart } from "../chart.js";
import { badge, errorBox, h, loading, replace, section, table, time } from "../dom.js";
import { field, formError, input, onSubmit, select } from "../forms.js";

const MIN = 60000;
const short = (x) => (x === null || x === undefined || x === "" ? "—" : String(Number(Number(x).toFixed(2))));
const minutes = (ms) => (ms === null || ms === undefined ? "—" : `${short(ms / MIN)} min`);

export async function mount(main, ctx) {
  const listBox = h("div", {}, loading("Loading profiles"));
  const isAdmin = ctx.session.role === "admin";
  const editor = h("div", { id: "profile-editor" });
  replace(main, h("h1", {}, "Temperature profiles"),
    section("Profiles", listBox),
    section(isAdmin ? "Create or change a profile" : "Profile preview", editor));
  let profiles = [];

  async function refresh() {
    try {
      profiles = await api.get("/api/v1/profiles");
    } catch (e) {
      replace(listBox, errorBox(e, "The profiles"));
      throw e;
    }
    replace(listBox, table([
      { label: "Profile", cell: (p) => [p.name, " ", h("span", { class: "muted" }, `(${p.id})`), p.builtin ? [" ", badge("built-in", "neutral")] : ""] },
      { label: "Limits", cell: (p) => p.limits.map((l) => `${l.id}: ${l.direction} ${short(l.threshold_c)} °C`).join("; ") },
      { label: "MKT limit", num: true, cell: (p) => (p.mkt_max_c === null ? "—" : `${short(p.mkt_max_c)} °C`) },
      { label: "Data gap after", num: true, cell: (p) => minutes(p.max_gap_ms) },
      { label: "Changed", cell: (p) => [time(p.updated_at), p.updated_by ? ` by ${p.updated_by}` : ""] },
      { label: "", cell: (p) => h("button", { type: "button", class: "btn btn-small", onclick: () => edit(p) }, p.builtin ? `Copy ${p.id}` : `Edit ${p.id}`) },
    ], profiles));
  }

  function edit(p) {
    renderEditor(editor, p.builtin ? { ...p, id: `${p.id}-custom`, name: `${p.name} (custom)` } : p, isAdmin, refresh);
    editor.scrollIntoView({ block: "start" });
  }

  await refresh().catch(() => {});
  renderEditor(editor, profiles.find((p) => p.id === "2-8C") || { id: "", name: "", limits: [] }, isAdmin, refresh, true);
  return { refresh, interval: 30000 };
}

function limitRow(l = {}) {
  const row = {
    id: input({ value: l.id || "", maxlength: 64, size: 10, "aria-label": "Limit id" }),
    direction: select([["above", "above"], ["below", "below"]], l.direction || "above", { "aria-label": "Direction" }),
    threshold: input({ type: "number", step: "0.1", value: l.threshold_c ?? "", "aria-label": "Threshold (°C)" }),
    severity: select([["warning", "warning"], ["alarm", "alarm"], ["critical", "critical"], ["info", "info"]], l.severity || "alarm", { "aria-label": "Severity" }),
    delay: input({ type: "number", step: "1", min: "0", value: l.delay_ms !== undefined ? l.delay_ms / MIN : 0, "aria-label": "Alarm delay (min)" }),
    budget: input({ type: "number", step: "1", min: "0", value: l.cumulative_ms ? l.cumulative_ms / MIN : "", "aria-label": "Cumulative budget (min)" }),
    hysteresis: input({ type: "number", step: "0.1", min: "0", value: l.hysteresis_c ?? 0.2, "aria-label": "Hysteresis (°C)" }),
  };
  return row;
}

function renderEditor(box, p, isAdmin, refresh, initial = false) {
  const f = {
    id: input({ value: initial && p.builtin ? "" : p.id, maxlength: 64, placeholder: "e.g. 2-8C-site-104" }),
    name: input({ value: initial && p.builtin ? "" : p.name, maxlength: 200 }),
    mkt: input({ type: "number", step: "0.1", value: p.mkt_max_c ?? "" }),
    gap: input({ type: "number", step: "1", min: "1", value: (p.max_gap_ms ?? 30 * MIN) / MIN }),
    offline: input({ type: "number", step: "1", min: "1", value: (p.offline_after_ms ?? 30 * MIN) / MIN }),
    ea: input({ type: "number", step: "0.001", min: "0", value: p.activation_energy_kj ?? 83.144 }),
  };
  const rows = (p.limits || []).map(limitRow);
  const rowsBox = h("tbody", {});
  const preview = h("div", { class: "preview-chart", id: "profile-preview" });
  const alarmsBox = h("div", { id: "preview-alarms" });
  const err = formError();
  const done = h("p", { role: "status", class: "muted wide" });
  let chart = null;
  let timer = null;

  function drawRows() {
    replace(rowsBox, rows.map((r, i) => h("tr", {},
      [r.id, r.direction, r.threshold, r.severity, r.delay, r.budget, r.hysteresis].map((el) => h("td", {}, el)),
      h("td", {}, h("button", { type: "button", class: "btn btn-small", onclick: () => { rows.splice(i, 1); drawRows(); schedule(); } }, "Remove")))));
  }

  function body() {
    const num = (el) => (el.value === "" ? null : Number(el.value));
    return {
      id: f.id.value.trim(), name: f.name.value.trim(), mkt_max_c: num(f.mkt),
      max_gap_ms: Math.round(Number(f.gap.value) * MIN), offline_after_ms: Math.round(Number(f.offline.value) * MIN),
      activation_energy_kj: Number(f.ea.value),
      limits: rows.map((r) => ({
        id: r.id.value.trim(), direction: r.direction.value, threshold_c: Number(r.threshold.value), severity: r.severity.value,
        delay_ms: Math.round(Number(r.delay.value || 0) * MIN), cumulative_ms: r.budget.value === "" ? null : Math.round(Number(r.budget.value) * MIN),
        hysteresis_c: Number(r.hysteresis.value || 0),
      })),
    };
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(draw, 150);
  }

  function draw() {
    const b = body();
    const limits = b.limits.filter((l) => Number.isFinite(l.threshold_c));
    const { data, t0 } = sampleCurve(limits);
    const spans = alarmsOnSample(limits, data);
    if (chart) chart.destroy();
    chart = makeChart(preview, "temp", data, {
      limits, height: 260, excursions: spans.map((s) => ({ start_ms: s.start, end_ms: s.end, severity: s.severity })),
      markers: spans.filter((s) => s.alarm !== null).map((s, i) => ({ ts_ms: s.alarm, label: `${s.id} alarms`, color: "#7a0052", row: i % 3 })),
      label: "Sample curve (a day from local midnight) with the profile's limits",
    });
    replace(alarmsBox, table([
      { label: "Limit", cell: (s) => `${s.id} (${s.direction} ${short(s.threshold)} °C)` },
      { label: "On the sample curve", cell: (s) => `beyond for ${minutes(s.end - s.start)} from ${hhmm(s.start - t0)} into the sample day` },
      { label: "Alarm", cell: (s) => (s.alarm === null ? h("span", { class: "muted" }, `none (delay ${minutes(s.delay)} not reached)`) : `after ${minutes(s.alarm - s.start)} (at ${hhmm(s.alarm - t0)} into the day)`) },
    ], spans, { emptyText: "The sample curve crosses no limit." }));
  }

  const add = h("button", { type: "button", class: "btn btn-small", onclick: () => { rows.push(limitRow()); drawRows(); } }, "Add a limit");
  const form = h("form", { id: "profile-form", class: "form-grid", novalidate: true },
    field("Profile id", f.id), field("Name", f.name), field("MKT limit (°C, optional)", f.mkt),
    field("Data gap after (min)", f.gap), field("Offline after (min)", f.offline), field("Activation energy ΔH (kJ/mol)", f.ea),
    h("div", { class: "wide table-wrap" }, h("table", { class: "limits-table" },
      h("thead", {}, h("tr", {}, ["Id", "Direction", "Threshold (°C)", "Severity", "Alarm delay (min)", "Cumulative budget (min)", "Hysteresis (°C)", ""].map((x) => h("th", {}, x)))),
      rowsBox)),
    h("div", { class: "form-actions" }, add, isAdmin ? h("button", { type: "submit", class: "btn btn-primary" }, "Save profile") : null),
    !isAdmin ? h("p", { class: "muted wide" }, "Saving a profile needs the admin role; the preview works for everyone.") : null,
    err, done);
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  onSubmit(form, err, async () => {
    const b = body();
    if (!b.id || !b.name) throw new Error("Give the profile an id and a name.");
    if (b.limits.some((l) => !l.id || !Number.isFinite(l.threshold_c))) throw new Error("Every limit needs an id and a threshold.");
    const saved = await api.post("/api/v1/profiles", b);
    done.textContent = `Profile ${saved.id} saved.`;
    await refresh();
  });
  replace(box, form, h("h3", {}, "Preview: the limits on a sample curve"),
    h("p", { class: "muted" }, "A made-up day: the load warms above the upper limits for 90 min, later dips below the lower ones for 20 min. Shaded: time beyond a limit; marks: where each limit would alarm (its delay)."),
    preview, alarmsBox);
  drawRows();
  draw();
}

function hhmm(ms) {
  const m = Math.round(ms / MIN);
  return `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")} h`;
}

/** 24 h every 5 min around the middle of the profile's band: 90 min above the upper limits, 20 min below the lower. */
function sampleCurve(limits) {
  const above = limits.filter((l) => l.direction === "above").map((l) => l.threshold_c);
  const below = limits.filter((l) => l.direction === "below").map((l) => l.threshold_c);
  const hi = above.length ? Math.min(...above) : null;
  const lo = below.length ? Math.max(...below) : null;
  const mid = hi !== null && lo !== null ? (hi + lo) / 2 : hi !== null ? hi - 3 : lo !== null ? lo + 3 : 5;
  // yesterday from local midnight: the axis then reads the same hours as the table ("08:00 h into the day")
  const day = new Date();
  day.setHours(0, 0, 0, 0);
  day.setDate(day.getDate() - 1);
  const t0 = day.getTime();
  const x = [], v = [];
  for (let i = 0; i <= 288; i++) {
    const t = t0 + i * 5 * MIN;
    let y = mid + 0.3 * Math.sin(i / 9);
    if (hi !== null && i >= 96 && i < 114) y = hi + 1.5 * Math.min(1, (i - 95) / 3, (114 - i) / 3);
    if (lo !== null && i >= 200 && i < 204) y = lo - 0.8;
    x.push(t / 1000); v.push(Math.round(y * 100) / 100);
  }
  return { data: [x, v, v, v], t0 };
}

/** Per limit: the first run beyond its threshold on the sample curve and when its delay would alarm. */
function alarmsOnSample(limits, data) {
  const [x, v] = data;
  const out = [];
  for (const l of limits) {
    const beyond = (y) => (l.direction === "above" ? y > l.threshold_c : y < l.threshold_c);
    let start = null;
    for (let i = 0; i < x.length; i++) {
      if (start === null && beyond(v[i])) start = i;
      if (start !== null && (!beyond(v[i]) || i === x.length - 1)) {
        const s = x[start] * 1000, e = x[i] * 1000;
        out.push({ id: l.id, direction: l.direction, threshold: l.threshold_c, severity: l.severity, start: s, end: e,
          delay: l.delay_ms, alarm: e - s >= l.delay_ms ? s + l.delay_ms : null });
        break;
      }
    }
  }
  return out;
}

// One shipment: facts, MKT and statistics, a chart per logger (limits and excursions shaded), the excursions,
// the signed decisions, and the decision button (signature dialog: meaning, reason, password re-entered).

import { api } from "../api.js";
import { badge, dl, duration, empty, errorBox, h, link, loading, notFound, replace, section, table, temp, time } from "../dom.js";
import { bucketsToData, makeChart } from "../chart.js";
import { chartLegend, excursionSpans, severityBadge } from "./common.js";
import { shipmentStateBadge } from "./shipments.js";
import { openSignatureDialog } from "./signature.js";
import { field, formError, fromLocalInput, input, onSubmit, select, toLocalInput } from "../forms.js";

export async function mount(main, ctx) {
  const id = ctx.params[0];
  try {
    await api.get(`/api/v1/shipments/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) { notFound(main, `Shipment ${id}`, "/ui/shipments", "go back to the shipments"); return null; }
  }
  const head = h("div", {}, loading("Loading the shipment"));
  const tiles = h("div", { class: "tiles" });
  const checklistBox = h("div", { id: "release-checklist" }, loading("Checking the release criteria"));
  const budgetBox = h("div", { id: "lot-budget" });
  const decisionBox = h("div", {});
  const manageBox = h("div", { id: "manage" });
  let manageKey = null;
  const loggersBox = h("div", {});
  const crumb = h("span", {}, id);
  replace(main, h("div", { class: "crumbs" }, link("/ui/shipments", "Shipments"), " / ", crumb), head, tiles,
    ctx.canWrite ? section("Loggers and transport", manageBox) : null,
    section("Release checklist", checklistBox), section("Lot stability budget", budgetBox),
    section("Decision", decisionBox), h("div", { id: "loggers" }, loggersBox));
  let lastChecklist = null;
  const charts = new Map();
  let lastKey = null;

  async function refresh() {
    let sh, ev, decisions, cl;
    try {
      [sh, ev, decisions, cl] = await Promise.all([
        api.get(`/api/v1/shipments/${encodeURIComponent(id)}`),
        api.get(`/api/v1/shipments/${encodeURIComponent(id)}/evaluation`),
        api.get(`/api/v1/shipments/${encodeURIComponent(id)}/decisions`),
        api.get(`/api/v1/shipments/${encodeURIComponent(id)}/checklist`),
      ]);
    } catch (e) {
      replace(head, errorBox(e, "The shipment"));
      throw e;
    }
    lastChecklist = cl;
    renderHead(sh);
    renderTiles(sh, ev, cl);
    renderChecklist(cl);
    renderBudget(sh, cl);
    renderDecision(sh, decisions);
    const mk = JSON.stringify([sh.state, sh.loggers.map((l) => l.device_id), sh.origin, sh.destination, sh.product, sh.lot, sh.profile_id]);
    if (ctx.canWrite && mk !== manageKey) {
      manageKey = mk;
      await renderManage(sh);
    }
    // Readings change while in transit; a delivered shipment's curves do not: redraw only when they can differ.
    const key = JSON.stringify([sh.state, sh.end, ev.loggers.map((l) => [l.device_id, l.stats.count, l.excursions.length])]);
    if (key !== lastKey) {
      lastKey = key;
      await renderLoggers(sh, ev);
    }
  }

  function renderHead(sh) {
    crumb.textContent = sh.reference;
    document.title = `${sh.reference} · ColdTrace QA`;
    const actions = h("div", { class: "actions" },
      h("a", { class: "btn", href: `/api/v1/shipments/${encodeURIComponent(id)}/report.html`, target: "_blank", rel: "noopener" }, "Trip report"),
      h("a", { class: "btn", href: `/api/v1/shipments/${encodeURIComponent(id)}/report.pdf` }, "PDF"),
      h("a", { class: "btn", href: `/api/v1/shipments/${encodeURIComponent(id)}/readings.csv` }, "Readings CSV"));
    replace(head,
      h("div", { class: "page-head" },
        h("h1", {}, `Shipment ${sh.reference} `, shipmentStateBadge(sh.state)), actions),
      h("div", { class: "card" }, dl([
        ["Route", `${sh.origin} → ${sh.destination}`], ["Product / lot", `${sh.product} / ${sh.lot}`],
        ["Profile", sh.profile_id], ["Departed", time(sh.start, { empty: "not yet" })],
        ["Arrived", time(sh.end, { empty: "not yet" })], ["Loggers", sh.loggers.map((l) => l.device_id).join(", ") || "none attached"],
      ])));
  }

  function renderTiles(sh, ev, cl) {
    const excs = ev.loggers.flatMap((l) => l.excursions);
    const alarms = excs.filter((e) => e.alarm_ts !== null).length;
    const covered = ev.loggers.reduce((a, l) => a + (l.stats.covered_ms || 0), 0);
    const inRange = ev.loggers.reduce((a, l) => a + (l.stats.in_range_ms || 0), 0);
    const mktMax = ev.profile.mkt_max_c;
    // a logger over the MKT limit fails the shipment's MKT even when the combined MKT is under it
    const over = mktMax === null ? [] : ev.loggers.filter((l) => l.stats.mkt_c !== null && l.stats.mkt_c > mktMax);
    const mktBad = ev.mkt_exceeded || over.length > 0;
    const mktNote = mktMax === null ? "no MKT limit in the profile" : [
      `combined, limit ${short(mktMax)} °C${ev.mkt_exceeded ? " — exceeded" : ""}`,
      ...over.map((l) => h("div", { class: "k mkt-over" }, `⚠ ${l.device_id}: ${temp(l.stats.mkt_c, 2)} over the limit`)),
    ];
    const calFail = cl.items.find((i) => i.id === "calibration");
    replace(tiles,
      h("div", { class: `tile ${mktBad ? "bad" : ""}`, id: "mkt" }, h("div", { class: "v" }, ev.mkt_c === null ? "no data yet" : temp(ev.mkt_c, 2)),
        h("div", { class: "k" }, "MKT"), h("div", { class: "k" }, mktNote)),
      tileEl("Calibration", calFail ? statusText(calFail.status) : "not judged", tileKind(calFail && calFail.status),
        calFail ? calFail.rows.map((r) => `${r.device_id}: ${r.status.replace("_", " ")}`).join(", ") || "no logger" : null),
      tileEl("Excursions", String(excs.length), excs.length ? "warn" : null, `${alarms} alarmed`),
      tileEl("Time in range", covered ? `${(100 * inRange / covered).toFixed(1)} %` : "no data yet", null,
        covered ? `of ${duration(covered)} covered` : "no covered time in the loggers' windows"),
      tileEl("Loggers", String(ev.loggers.length), null, ev.loggers.length ? "evaluated over their window" : "attach a logger"));
  }

  function renderChecklist(cl) {
    const rows = cl.items.map((i) => h("li", { class: `check check-${i.status.replace("/", "")}`, dataset: { item: i.id } },
      h("span", { class: "check-status" }, checkBadge(i.status)),
      h("div", { class: "check-body" },
        h("a", { href: i.link, class: "check-title" }, i.title),
        h("div", { class: "check-detail" }, i.detail),
        i.id === "calibration" && h("div", { class: "muted" }, `Loggers without a calibration record: policy "${cl.uncalibrated_policy}" (`,
          cl.uncalibrated_policy === "refuse" ? "refused at attachment" : "attached with a warning", ", setting shipments.uncalibrated_loggers)."),
        i.id === "calibration" && i.rows.length > 0 && h("ul", { class: "check-rows" }, i.rows.map((r) => h("li", {},
          `${r.device_id}: ${r.status.replace("_", " ")}`, r.certificate_ref ? [", certificate ", h("a", { href: r.link }, r.certificate_ref)] : [", ", h("a", { href: r.link }, "calibration record")],
          r.due_at ? [", due ", time(r.due_at)] : null))),
        i.id === "alarms" && i.rows.length > 0 && h("ul", { class: "check-rows" }, i.rows.map((a) => h("li", {},
          `${a.device_id || "shipment"} ${a.type} (${a.limit_id || a.severity}) at `, time(a.ts), ": ",
          a.acknowledged_at ? [`acknowledged by ${a.acknowledged_by} `, time(a.acknowledged_at), a.comment ? ` — “${a.comment}”` : ""]
            : a.auto_resolved_at ? ["resolved itself ", time(a.auto_resolved_at), " (self-clearing warning: nothing to acknowledge)"]
              : h("a", { href: a.link }, "not acknowledged")))))));
    replace(checklistBox,
      h("p", {}, "Overall: ", checkBadge(cl.overall),
        cl.overall === "fail" ? " — a release over failing items must be stated as an override with its justification." : ""),
      h("ul", { class: "checklist" }, rows));
  }

  // one unit down a budget's columns (a stability budget is stated in minutes), so they compare at a glance
  const minutes = (ms) => (ms === null || ms === undefined ? "—" : `${num(ms / 60000, 1)} min`);

  function renderBudget(sh, cl) {
    const item = cl.items.find((i) => i.id === "stability_budget");
    if (!item || !item.rows.length) { replace(budgetBox, empty("No limit of the profile has a cumulative budget.")); return; }
    replace(budgetBox, h("p", { class: "muted" }, `Product ${sh.product}, lot ${sh.lot}: time beyond each band summed over all legs (the worst logger of each leg).`),
      table([
        { label: "Band", cell: (b) => `${b.band} (${b.direction} ${short(b.threshold_c)} °C)` },
        { label: "Budget", num: true, cell: (b) => minutes(b.budget_ms) },
        { label: "Used (all legs)", num: true, cell: (b) => minutes(b.used_ms) },
        { label: "This shipment", num: true, cell: (b) => minutes(b.by_shipment[sh.id] ?? 0) },
        { label: "Remaining", num: true, cell: (b) => `${minutes(b.remaining_ms)} (${num(b.remaining_pct, 1)} %)` },
        { label: "Status", cell: (b) => badge(b.status, b.status === "exhausted" ? "bad" : b.status === "low" ? "warn" : "ok") },
      ], item.rows));
  }

  function renderDecision(sh, decisions) {
    const current = decisions.length ? decisions[decisions.length - 1] : null;
    const parts = [];
    if (current) {
      parts.push(h("p", {}, "Current decision: ", shipmentStateBadge(current.meaning), " signed by ",
        h("strong", {}, current.printed_name), ` (${current.signer_username}) on `, time(current.signed_at), ". ",
        current.signature_valid ? badge("signature verified", "ok") : badge("signature INVALID", "bad", "the record changed after signing")),
        h("p", {}, h("span", { class: "muted" }, "Reason: "), current.reason));
    } else {
      parts.push(empty("No decision yet.", sh.state === "under_review" ? "The shipment is under review: QA can sign a decision." : null));
    }
    const buttons = h("div", { class: "inline-form" });
    if (ctx.canWrite && sh.state === "delivered") {
      buttons.append(h("button", { type: "button", class: "btn", onclick: () => startReview(sh) }, "Start QA review"));
    }
    if (ctx.canWrite && (sh.state === "under_review" || (current && ["released", "rejected", "quarantined"].includes(sh.state)))) {
      buttons.append(h("button", { type: "button", class: "btn btn-primary", id: "sign-decision",
        onclick: () => openSignatureDialog({ shipment: sh, current, session: ctx.session, checklist: lastChecklist, onSigned: () => refresh() }) },
      current ? "Sign a new decision…" : "Sign decision…"));
    }
    if (!ctx.canWrite) buttons.append(h("p", { class: "muted" }, "Signing decisions needs the QA role."));
    else if (!buttons.children.length) buttons.append(h("p", { class: "muted" }, `A decision can be signed once the shipment is delivered and under review (now: ${sh.state.replace("_", " ")}).`));
    parts.push(buttons);
    if (decisions.length > 1) {
      parts.push(h("h3", {}, "Earlier decisions"), table([
        { label: "Signed", cell: (d) => time(d.signed_at) },
        { label: "Decision", cell: (d) => shipmentStateBadge(d.meaning) },
        { label: "By", cell: (d) => d.printed_name },
        { label: "Reason", cell: (d) => d.reason },
        { label: "Superseded because", cell: (d) => d.supersede_reason || "—" },
      ], decisions.slice(0, -1).reverse()));
    }
    replace(decisionBox, ...parts);
  }

  async function renderManage(sh) {
    const parts = [];
    const sid = encodeURIComponent(sh.id);
    const after = async () => { manageKey = null; await refresh(); };
    // loggers: attached ones (detach while planned), and attaching another (before delivery)
    parts.push(h("h3", {}, "Loggers"), table([
      { label: "Logger", cell: (l) => link(`/ui/devices/${encodeURIComponent(l.device_id)}`, l.device_id) },
      { label: "Window", cell: (l) => (l.start || l.end ? [time(l.start, { empty: "departure" }), " → ", time(l.end, { empty: "arrival" })] : "the shipment's") },
      { label: "Attached", cell: (l) => [time(l.attached_at), ` by ${l.attached_by}`] },
      { label: "", cell: (l) => (sh.state === "planned" ? h("button", { type: "button", class: "btn btn-small", onclick: () => detach(l.device_id) }, `Detach ${l.device_id}`) : "") },
    ], sh.loggers, { emptyText: "No logger attached yet." }));
    if (["planned", "in_transit"].includes(sh.state)) {
      let devices = [];
      try { devices = await api.get("/api/v1/devices", { limit: 10000 }); } catch (e) { /* typed id still works */ }
      const attached = new Set(sh.loggers.map((l) => l.device_id));
      const dev = input({ id: "attach-device", list: "attach-devices", required: true, placeholder: "LOG-0001", autocomplete: "off" });
      const list = h("datalist", { id: "attach-devices" }, devices.filter((d) => !attached.has(d.id) && d.kind !== "reference").map((d) => h("option", { value: d.id })));
      const from = input({ type: "datetime-local" });
      const to = input({ type: "datetime-local" });
      const err = formError();
      const form = h("form", { class: "form-grid", id: "attach-form", novalidate: true },
        field("Logger to attach", dev, "its calibration must be valid (policy for loggers without a record: see the checklist)"), list,
        field("Own window from (optional)", from), field("Own window to (optional)", to),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn" }, "Attach logger")), err);
      onSubmit(form, err, async () => {
        if (!dev.value.trim()) throw new Error("Name the logger to attach.");
        await api.post(`/api/v1/shipments/${sid}/loggers`, { device_id: dev.value.trim(), start: fromLocalInput(from.value), end: fromLocalInput(to.value) });
        await after();
      }, { busy: "Attaching…" });
      parts.push(form);
    }
    // transport: departure and arrival, dated (default now)
    const next = { planned: ["in_transit", "Record departure", "Departed at"], in_transit: ["delivered", "Record arrival", "Arrived at"] }[sh.state];
    if (next) {
      const at = input({ type: "datetime-local", value: toLocalInput(), id: "transition-at" });
      const reason = input({ maxlength: 1000, id: "transition-note" });
      const err = formError();
      const form = h("form", { class: "form-grid", id: "transition-form", novalidate: true },
        h("h3", { class: "wide" }, "Transport"),
        field(`${next[2]} (your time zone)`, at), field("Note (optional)", reason),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, next[1])), err);
      onSubmit(form, err, async () => {
        await api.post(`/api/v1/shipments/${sid}/transitions`, { to: next[0], at: fromLocalInput(at.value), reason: reason.value.trim() || null });
        await after();
      });
      parts.push(form);
    }
    if (sh.state === "planned") {
      let profiles = [];
      try { profiles = await api.get("/api/v1/profiles"); } catch (e) { /* keep the current one */ }
      const f = {
        origin: input({ value: sh.origin, maxlength: 200 }), destination: input({ value: sh.destination, maxlength: 200 }),
        product: input({ value: sh.product, maxlength: 200 }), lot: input({ value: sh.lot, maxlength: 200 }),
        profile_id: select((profiles.length ? profiles : [{ id: sh.profile_id, name: sh.profile_id }]).map((p) => [p.id, `${p.name} (${p.id})`]), sh.profile_id),
      };
      const reason = input({ maxlength: 1000 });
      const err = formError();
      const form = h("form", { class: "form-grid", id: "edit-shipment", novalidate: true },
        field("Origin", f.origin), field("Destination", f.destination), field("Product", f.product), field("Lot", f.lot),
        field("Temperature profile", f.profile_id), field("Reason for the change", reason),
        h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn" }, "Save changes")), err);
      onSubmit(form, err, async () => {
        const body = Object.fromEntries(Object.entries(f).map(([k, el]) => [k, el.value.trim()]));
        await api.patch(`/api/v1/shipments/${sid}`, { ...body, reason: reason.value.trim() || null });
        await after();
      });
      parts.push(h("details", {}, h("summary", {}, "Edit the shipment (while planned)"), form));
    }
    replace(manageBox, parts);

    async function detach(device) {
      const why = window.prompt(`Why is ${device} detached? (recorded in the audit trail)`);
      if (!why) return;
      try {
        await api.del(`/api/v1/shipments/${sid}/loggers/${encodeURIComponent(device)}?reason=${encodeURIComponent(why)}`);
        await after();
      } catch (e) {
        manageBox.append(errorBox(e, "Detaching"));
      }
    }
  }

  async function startReview(sh) {
    try {
      await api.post(`/api/v1/shipments/${encodeURIComponent(sh.id)}/transitions`, { to: "under_review" });
      await refresh();
    } catch (e) {
      decisionBox.append(errorBox(e, "Starting the review"));
    }
  }

  async function renderLoggers(sh, ev) {
    for (const c of charts.values()) c.destroy();
    charts.clear();
    if (!ev.loggers.length) {
      replace(loggersBox, section("Loggers", empty("No logger attached to this shipment.")));
      return;
    }
    const limits = ev.profile.limits;
    const cards = ev.loggers.map((lg) => {
      const chartBox = h("div", { class: "chart-box", dataset: { device: lg.device_id } }, loading("Loading the chart"));
      return { lg, chartBox, card: section(`Logger ${lg.device_id}`, chartBox, chartLegend(), statsFacts(lg, ev.profile),
        h("h3", { id: excursionsAnchor(lg) }, "Excursions"), excursionsOf(lg)) };
    });
    replace(loggersBox, cards.map((c) => c.card));
    await Promise.all(cards.map(async ({ lg, chartBox }) => {
      if (lg.start === null) {
        replace(chartBox, empty("Not departed yet: readings count from departure."));
        return;
      }
      const end = lg.end ?? Date.now() + 60_000;
      try {
        const c = await api.get(`/api/v1/devices/${encodeURIComponent(lg.device_id)}/chart`,
          { from: lg.start, to: end, points: Math.min(2000, Math.round(chartBox.clientWidth || 900)) });
        if (!c.buckets.length) { replace(chartBox, empty("No readings in the logger's window.")); return; }
        const spans = excursionSpans(lg.excursions.map((e) => ({ start: e.start_ts, end: e.end_ts, severity: e.severity })));
        charts.set(lg.device_id, makeChart(chartBox, "temp", bucketsToData(c.buckets, c.interval_ms, ev.profile.max_gap_ms),
          { limits, excursions: spans, xRange: [lg.start / 1000, end / 1000], label: `Temperature of logger ${lg.device_id} during shipment ${sh.reference}` }));
      } catch (e) {
        replace(chartBox, errorBox(e, "The chart"));
      }
    }));
  }

  await refresh().catch(() => {});
  return { refresh, interval: 10000 };
}

function num(x, digits) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

/** A configured value (threshold, limit) as short as it is exact to 0.01: 8 -> "8", 2.5 -> "2.5". */
function short(x) {
  return x === null || x === undefined ? "—" : String(Number(Number(x).toFixed(2)));
}

function excursionsAnchor(lg) {
  return `excursions-${lg.device_id}`;
}

const CHECK_KIND = { pass: "ok", fail: "bad", warn: "warn", "n/a": "neutral" };

function statusText(s) {
  return { pass: "Pass", fail: "Fail", warn: "Warning", "n/a": "n/a" }[s] || s;
}

function tileKind(s) {
  return s === "fail" ? "bad" : s === "warn" ? "warn" : null;
}

function checkBadge(s) {
  return badge(statusText(s).toUpperCase(), CHECK_KIND[s] || "neutral");
}

function tileEl(label, value, kind, note) {
  return h("div", { class: `tile ${kind || ""}` }, h("div", { class: "v" }, value), h("div", { class: "k" }, label),
    note && h("div", { class: "k" }, note));
}

function statsFacts(lg, profile) {
  const s = lg.stats;
  if (lg.start === null || lg.start === undefined) {  // not departed: nothing to state yet (no "—" rows)
    return h("div", { class: "card-sub" }, dl([["Window", "from departure (not departed yet)"], ["Readings", "none counted yet"]]));
  }
  if (!s.count) {
    return h("div", { class: "card-sub" }, dl([["Window", [time(lg.start), " → ", time(lg.end, { empty: "now" })]],
      ["Readings", "none in the window yet"]]));
  }
  const beyond = Object.entries(s.beyond_ms || {}).filter(([, ms]) => ms > 0);
  return h("div", { class: "card-sub" }, dl([
    ["Window", [time(lg.start), " → ", time(lg.end, { empty: "now" })]],
    ["Readings", (s.count ?? 0).toLocaleString()],
    ["Min / mean / max", `${temp(s.min_c, 2)} / ${temp(s.mean_c, 2)} / ${temp(s.max_c, 2)}`],
    ["MKT of this logger", s.mkt_c === null ? "not enough covered time" : [temp(s.mkt_c, 2),
      profile.mkt_max_c !== null && s.mkt_c > profile.mkt_max_c ? [" ", badge(`over the ${short(profile.mkt_max_c)} °C limit`, "bad")] : ""]],
    ["Time in range", s.time_in_range_pct === null || s.time_in_range_pct === undefined ? "no covered time" : `${Number(s.time_in_range_pct).toFixed(1)} %`],
    ["Gaps (no data)", s.gap_ms ? `${duration(s.gap_ms)} in ${s.gaps.length} gap${s.gaps.length === 1 ? "" : "s"}` : "none"],
    beyond.length && ["Time beyond limits", beyond.map(([k, ms]) => `${k}: ${duration(ms)}`).join(", ")],
  ]));
}

function excursionsOf(lg) {
  return table([
    { label: "Start", cell: (e) => time(e.start_ts) },
    // open at the window's end (delivered still beyond the limit): not "ongoing", which reads as still happening
    { label: "End", cell: (e) => (e.end_ts !== null ? time(e.end_ts)
      : lg.end !== null && lg.end !== undefined ? [badge("beyond at arrival", "bad"), " ", time(lg.end)]
        : badge("ongoing", "bad")) },
    { label: "Limit", cell: (e) => `${e.direction} ${short(e.threshold_c)} °C (${e.limit_id})` },
    { label: "Severity", cell: (e) => severityBadge(e.severity) },
    { label: "Duration", num: true, cell: (e) => duration(e.duration_ms) },
    { label: "Peak", num: true, cell: (e) => temp(e.peak_c, 2) },
    { label: "Degree-min", num: true, cell: (e) => Number(e.degree_minutes).toFixed(1) },
    { label: "Alarm", cell: (e) => (e.alarm_ts ? time(e.alarm_ts) : h("span", { class: "muted" }, "no alarm")) },
  ], lg.excursions, { emptyText: "No excursion: the logger stayed within the profile's limits." });
}

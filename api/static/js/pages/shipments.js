// Shipments list: state, route, product/lot, with a filter by state. Each opens the shipment page. QA creates
// a shipment here (the form stays put while the list refreshes).

import { api } from "../api.js";
import { badge, errorBox, h, link, loading, replace, section, table, time } from "../dom.js";
import { field, formError, input, onSubmit, select } from "../forms.js";

export const STATES = ["planned", "in_transit", "delivered", "under_review", "released", "quarantined", "rejected"];

export function shipmentStateBadge(state) {
  const kind = { released: "ok", rejected: "bad", quarantined: "crit", under_review: "warn", in_transit: "info", delivered: "info" }[state] || "neutral";
  return badge(state.replace("_", " "), kind);
}

export async function mount(main, ctx) {
  const stateSel = h("select", { id: "f-state" }, h("option", { value: "" }, "All states"),
    STATES.map((s) => h("option", { value: s, selected: ctx.query.get("state") === s }, s.replace("_", " "))));
  const text = h("input", { id: "f-q", type: "search", placeholder: "reference, product, lot" });
  const body = h("div", {}, loading("Loading shipments"));
  replace(main, h("h1", {}, "Shipments"),
    ctx.canWrite ? await newShipmentForm() : null,
    section("All shipments",
      h("div", { class: "filters" },
        h("div", { class: "field" }, h("label", { for: "f-q" }, "Search"), text),
        h("div", { class: "field" }, h("label", { for: "f-state" }, "State"), stateSel)),
      body));
  let items = [];

  function render() {
    const q = text.value.trim().toLowerCase();
    const rows = items.filter((s) => !q || [s.reference, s.product, s.lot, s.origin, s.destination].some((v) => (v || "").toLowerCase().includes(q)));
    replace(body, table([
      { label: "Reference", cell: (s) => link(`/ui/shipments/${encodeURIComponent(s.id)}`, s.reference) },
      { label: "State", cell: (s) => shipmentStateBadge(s.state) },
      { label: "Route", cell: (s) => `${s.origin} → ${s.destination}` },
      { label: "Product / lot", cell: (s) => `${s.product} / ${s.lot}` },
      { label: "Profile", cell: (s) => s.profile_id },
      { label: "Departed", cell: (s) => time(s.start) },
      { label: "Arrived", cell: (s) => time(s.end) },
    ], rows, { caption: "Shipments", emptyText: items.length ? "No shipment matches the filter." : "No shipments yet. Create one with the form above." }));
  }
  text.addEventListener("input", render);
  stateSel.addEventListener("change", () => { refresh().catch(() => {}); });

  async function refresh() {
    try {
      const page = await api.get("/api/v1/shipments", { state: stateSel.value, limit: 500 });
      items = page.items;
      render();
    } catch (e) {
      replace(body, errorBox(e, "The shipment list"));
      throw e;
    }
  }
  await refresh().catch(() => {});
  return { refresh, interval: 10000 };
}

async function newShipmentForm() {
  let profiles = [];
  try { profiles = await api.get("/api/v1/profiles"); } catch (e) { /* the form says so below */ }
  const f = {
    reference: input({ required: true, maxlength: 64, pattern: "[A-Za-z0-9._/-]{1,64}", placeholder: "SHP-2026-0042" }),
    origin: input({ required: true, maxlength: 200 }), destination: input({ required: true, maxlength: 200 }),
    product: input({ required: true, maxlength: 200 }), lot: input({ required: true, maxlength: 200 }),
    profile_id: select(profiles.map((p) => [p.id, `${p.name} (${p.id})`]), "2-8C"),
  };
  const err = formError();
  const form = h("form", { id: "new-shipment", class: "form-grid", novalidate: true },
    field("Reference", f.reference, "letters, digits, . _ / -"), field("Origin", f.origin), field("Destination", f.destination),
    field("Product", f.product), field("Lot", f.lot), field("Temperature profile", f.profile_id),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "btn btn-primary" }, "Create shipment")), err);
  onSubmit(form, err, async () => {
    const body = Object.fromEntries(Object.entries(f).map(([k, el]) => [k, el.value.trim()]));
    const missing = Object.entries(body).filter(([, v]) => !v).map(([k]) => k.replace("_id", ""));
    if (missing.length) throw new Error(`Fill in: ${missing.join(", ")}.`);
    const sh = await api.post("/api/v1/shipments", body);
    location.assign(`/ui/shipments/${encodeURIComponent(sh.id)}`);
  }, { busy: "Creating…" });
  return h("details", { class: "card form-card" }, h("summary", {}, "New shipment"), form);
}

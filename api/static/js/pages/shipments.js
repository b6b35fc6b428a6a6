// Shipments list: state, route, product/lot, with a filter by state. Each opens the shipment page.

import { api } from "../api.js";
import { badge, errorBox, h, link, loading, replace, section, table, time } from "../dom.js";

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
    ], rows, { caption: "Shipments", emptyText: items.length ? "No shipment matches the filter." : "No shipments yet. QA creates them through the API (POST /api/v1/shipments)." }));
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

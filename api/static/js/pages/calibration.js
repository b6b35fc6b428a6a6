// Calibration at a glance: sessions (running, completed, cancelled) and every device's calibration state
// (due date, expired, failed), each device linking to its drift chart.

import { api, getOptional } from "../api.js";
import { badge, errorBox, h, link, loading, replace, section, table, time, toMs } from "../dom.js";
import { calibrationBadge } from "./common.js";

export function sessionStateBadge(s) {
  return badge(s, { running: "info", completed: "ok", cancelled: "neutral" }[s] || "neutral");
}

export async function mount(main) {
  const sessionsBox = h("div", {}, loading("Loading sessions"));
  const devicesBox = h("div", {}, loading("Loading devices"));
  replace(main, h("h1", {}, "Calibration"),
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
        { label: "Set points", cell: (s) => (s.set_points || []).map((p) => `${p} °C`).join(", ") },
        { label: "Started", cell: (s) => time(s.started_at) },
        { label: "Completed", cell: (s) => time(s.completed_at) },
      ], sessions, { emptyText: "No calibration session yet. Sessions are started through the API (POST /api/v1/calibration/sessions)." }));
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
        { label: "Certificate", cell: (d) => ((states.get(d.id) || {}).status || {}).certificate_ref || "—" },
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

"""SQL of device health: ``device_health`` (one JSON state per device, coldtrace/core/health.py's
``DeviceHealth``). ``devices.online`` is written by coldtrace/store/devices.py (``set_online``).

Every function takes the caller's connection (the pipeline's transaction), so a state change commits with the
alerts it causes. Portable statements (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coldtrace.ports import MonitoredDevice

CHUNK = 500


def state(c: Any, device_id: str) -> str | None:
    """A device's health state (JSON text), or None."""
    row = c.execute("SELECT state FROM device_health WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else row[0]


def states(c: Any, device_ids: Sequence[str]) -> dict[str, str]:
    """Health states (JSON text) of these devices, those that have one: one statement per 500."""
    out: dict[str, str] = {}
    for k in range(0, len(device_ids), CHUNK):
        chunk = list(device_ids[k:k + CHUNK])
        marks = ",".join("?" * len(chunk))
        for dev, st in c.execute(f"SELECT device_id, state FROM device_health WHERE device_id IN ({marks})",
                                 chunk):
            out[dev] = st
    return out


_SAVE = ("INSERT INTO device_health (device_id, state, updated_at) VALUES (?,?,?) ON CONFLICT(device_id)"
         " DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at")


def save(c: Any, device_id: str, state_json: str, now: int) -> None:
    c.execute(_SAVE, (device_id, state_json, now))


def save_many(c: Any, rows: Sequence[tuple[str, str, int]]) -> None:
    """(device_id, state JSON, updated_at) rows, one statement."""
    c.executemany(_SAVE, rows)


def monitored(c: Any) -> list[MonitoredDevice]:
    """Every device the deadman watches, with its health state."""
    return [MonitoredDevice._make(r) for r in c.execute(
        "SELECT d.id, d.profile_id, d.last_seen_at, h.state FROM devices d"
        " LEFT JOIN device_health h ON h.device_id = d.id"
        " WHERE d.last_seen_at IS NOT NULL AND (d.monitored = 1 OR EXISTS ("
        " SELECT 1 FROM shipment_loggers l JOIN shipments s ON s.id = l.shipment_id"
        " WHERE l.device_id = d.id AND s.state = 'in_transit'))").fetchall()]

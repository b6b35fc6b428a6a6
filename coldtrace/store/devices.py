"""SQL of the device family: ``devices``, ``profiles`` (with ``profile_changes`` and
``device_profile_assignments``) and ``quarantine``. The one module that writes ``devices``.

Every function takes a connection ``c``: the caller's write transaction (``with db.write() as c``) or, for a
plain read, ``db.conn()``. The statements are portable (docs/CONVENTIONS.md, portable SQL): the same text runs
on SQLite and on PostgreSQL. Rows the API returns as they are come back as dicts; the rest as named tuples.
The ingest hot path (``ensure_devices``, ``device_states``, ``update_device_states``, ``add_quarantine_many``)
keeps one statement per flush, whatever the number of devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from coldtrace.ports import DeviceState, DeviceUpdate, RoleState
from coldtrace.store.db import conn_of
from coldtrace.store.db import marks as _marks

CHUNK = 500  # ids per IN (...) list


def _dicts(cur: Any) -> list[dict[str, Any]]:
    return [dict(zip(r.keys(), r, strict=True)) for r in cur]


def _dict(row: Any) -> dict[str, Any] | None:
    return None if row is None else dict(zip(row.keys(), row, strict=True))


# ---- devices -----------------------------------------------------------------------------------------------

class DeviceAhead(NamedTuple):
    id: str
    last_ts: int | None
    last_seq: int | None


def ensure_devices(c: Any, ids: Iterable[str], now: int) -> None:
    """Register the devices not registered yet (first message of a device), one statement for all."""
    c.executemany("INSERT INTO devices (id, registered_at) VALUES (?,?) ON CONFLICT DO NOTHING",
                  [(d, now) for d in ids])


def ensure_device(c: Any, device_id: str, now: int) -> None:
    c.execute("INSERT INTO devices (id, registered_at) VALUES (?,?) ON CONFLICT DO NOTHING", (device_id, now))


def device_states(c: Any, ids: Sequence[str]) -> dict[str, DeviceState]:
    """The ingest state of these devices (those registered), by id."""
    state: dict[str, DeviceState] = {}
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        for r in c.execute(f"SELECT id, last_ts, last_seq, profile_id, evaluated_ts, role, kind, judged_from"
                           f" FROM devices WHERE id IN ({_marks(len(chunk))})", chunk):
            state[r[0]] = DeviceState._make(r)
    return state


def update_device_states(c: Any, updates: Sequence[DeviceUpdate] | Sequence[tuple]) -> None:
    """Last message, seq and gaps, battery, newest reading and evaluated time of devices: one statement."""
    c.executemany(
        "UPDATE devices SET last_seen_at = ?, last_seq = ?, seq_gaps = seq_gaps + ?,"
        " battery_pct = COALESCE(?, battery_pct), last_ts = COALESCE(?, last_ts),"
        " last_temp_c = CASE WHEN CAST(? AS BIGINT) IS NULL THEN last_temp_c ELSE ? END, evaluated_ts = ?"
        " WHERE id = ?",
        updates)


def known_devices(c: Any, ids: Iterable[str]) -> set[str]:
    """Which of these ids are registered devices."""
    ids = list(ids)
    out: set[str] = set()
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        out.update(r[0] for r in c.execute(f"SELECT id FROM devices WHERE id IN ({_marks(len(chunk))})", chunk))
    return out


def record_sources(c: Any, pairs: Iterable[tuple[str, str]], now: int) -> None:
    """(device_id, source) pairs that delivered readings; the first sighting of each is kept (migration 1800)."""
    rows = [(d, s, now) for d, s in pairs]
    if rows:
        c.executemany("INSERT INTO device_sources (device_id, source, first_seen) VALUES (?,?,?)"
                      " ON CONFLICT (device_id, source) DO NOTHING", rows)


def sources_of(c: Any, ids: Sequence[str]) -> dict[str, set[str]]:
    """The sources that have delivered readings of these devices (devices without any are left out)."""
    ids = list(ids)
    out: dict[str, set[str]] = {}
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        for dev, src in c.execute(f"SELECT device_id, source FROM device_sources WHERE device_id IN"
                                  f" ({_marks(len(chunk))})", chunk):
            out.setdefault(dev, set()).add(src)
    return out


def set_status(c: Any, device_id: str, status_json: str, online: bool | None) -> bool:
    """A device's last status message (birth or last will); ``online`` None keeps the stored value. False when
    the device is not registered."""
    cur = c.execute("UPDATE devices SET status_json = ?, online = COALESCE(?, online) WHERE id = ?",
                    (status_json, None if online is None else int(online), device_id))
    return cur.rowcount > 0


def set_online(c: Any, device_ids: Iterable[str], online: bool) -> None:
    """Mark devices online (a reading after an offline alarm) or offline (deadman)."""
    c.executemany("UPDATE devices SET online = ? WHERE id = ?", [(int(online), d) for d in device_ids])


def register_device(c: Any, device_id: str, kind: str, name: str | None, profile_id: str | None, monitored: bool,
                    now: int) -> None:
    """Register or re-register a device (kind, name, monitored; the profile only when given)."""
    c.execute("INSERT INTO devices (id, kind, name, profile_id, monitored, registered_at) VALUES (?,?,?,?,?,?)"
              " ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, name=excluded.name,"
              " profile_id=COALESCE(excluded.profile_id, devices.profile_id), monitored=excluded.monitored",
              (device_id, kind, name, profile_id, int(monitored), now))


def register_unmonitored(c: Any, device_id: str, kind: str, name: str, now: int) -> None:
    """Register a device the deadman does not watch (a calibration bench's, simulated): a new one gets
    ``name``, an existing one keeps its name and profile and becomes unmonitored."""
    c.execute("INSERT INTO devices (id, kind, name, monitored, registered_at) VALUES (?,?,?,0,?)"
              " ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, monitored = 0",
              (device_id, kind, name, now))


def get_device(c: Any, device_id: str) -> dict[str, Any] | None:
    """The device row (every column), or None."""
    return _dict(c.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone())


def device_profile_id(c: Any, device_id: str) -> tuple[bool, str | None]:
    """(registered, its assigned profile id or None)."""
    row = c.execute("SELECT profile_id FROM devices WHERE id = ?", (device_id,)).fetchone()
    return (False, None) if row is None else (True, row[0])


# effective_role() of coldtrace/services/device_roles.py in SQL, for a query over ``devices`` (the same order:
# set, running calibration session, kind). Reads the calibration family's tables.
EFFECTIVE_ROLE_SQL = (
    "COALESCE(devices.role, (SELECT 'calibration_reference' FROM calibration_sessions s WHERE s.state = 'running'"
    " AND s.reference_id = devices.id LIMIT 1), (SELECT 'device_under_calibration' FROM calibration_session_duts d"
    " JOIN calibration_sessions s ON s.id = d.session_id WHERE s.state = 'running' AND d.device_id = devices.id"
    " LIMIT 1), CASE WHEN devices.kind = 'reference' THEN 'calibration_reference' ELSE 'shipment_logger' END)")


def list_devices(c: Any, *, kind: str | None = None, role: str | None = None, limit: int = 1000,
                 offset: int = 0) -> list[dict[str, Any]]:
    """Devices by id; ``role`` filters on the effective role."""
    where: list[str] = []
    params: list[Any] = []
    if kind:
        where.append("kind = ?")
        params.append(kind)
    if role:
        where.append(f"{EFFECTIVE_ROLE_SQL} = ?")
        params.append(role)
    sql = "SELECT * FROM devices" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY id LIMIT ? OFFSET ?"
    return _dicts(c.execute(sql, (*params, limit, offset)))


def effective_role_of(c: Any, device_id: str) -> str | None:
    """The effective role as the SQL expression computes it (None for an unknown device)."""
    row = c.execute(f"SELECT {EFFECTIVE_ROLE_SQL} FROM devices WHERE id = ?", (device_id,)).fetchone()
    return None if row is None else row[0]


def role_state(c: Any, device_id: str) -> RoleState | None:
    row = c.execute("SELECT role, kind, last_ts, judged_from FROM devices WHERE id = ?", (device_id,)).fetchone()
    return None if row is None else RoleState._make(row)


def set_role(c: Any, device_id: str, role: str | None, judged_from: int | None = None) -> None:
    """Set (None: clear) a device's role; ``judged_from`` given: also its judged_from (computed by the caller,
    never lowered)."""
    if judged_from is None:
        c.execute("UPDATE devices SET role = ? WHERE id = ?", (role, device_id))
    else:
        c.execute("UPDATE devices SET role = ?, judged_from = ? WHERE id = ?", (role, judged_from, device_id))


def set_judged_from(c: Any, device_id: str, judged_from: int) -> None:
    c.execute("UPDATE devices SET judged_from = ? WHERE id = ?", (judged_from, device_id))


def assign_profile(c: Any, device_id: str, profile_id: str, previous: str | None, now: int, by: str) -> None:
    """Assign a profile to a registered device and record the assignment (who, when, what before)."""
    c.execute("UPDATE devices SET profile_id = ? WHERE id = ?", (profile_id, device_id))
    c.execute("INSERT INTO device_profile_assignments (device_id, profile_id, previous_profile_id,"
              " assigned_at, assigned_by) VALUES (?,?,?,?,?)", (device_id, profile_id, previous, now, by))


def profile_assignments(c: Any, device_id: str) -> list[dict[str, Any]]:
    """A device's profile assignments, oldest first."""
    return _dicts(c.execute("SELECT * FROM device_profile_assignments WHERE device_id = ? ORDER BY id",
                            (device_id,)))


def count_devices(c: Any) -> int:
    return c.execute("SELECT COUNT(*) FROM devices").fetchone()[0]


def count_devices_ahead(c: Any, ts: int) -> int:
    """Devices whose newest reading is stamped after ``ts``."""
    return c.execute("SELECT COUNT(*) FROM devices WHERE last_ts > ?", (ts,)).fetchone()[0]


def resume_states(c: Any, ids: Sequence[str]) -> dict[str, DeviceAhead]:
    """Newest reading time and seq of these devices (the simulator resumes its fleet from them)."""
    return {d: DeviceAhead(s.id, s.last_ts, s.last_seq) for d, s in device_states(c, ids).items()}


# ---- profiles ----------------------------------------------------------------------------------------------

def ensure_builtin_profile(c: Any, profile_id: str, name: str, body: str, now: int) -> None:
    """Store a built-in profile (``body``: its JSON) unless a profile with its id is stored already."""
    c.execute("INSERT INTO profiles (id, name, body, builtin, updated_at, updated_by)"
              " VALUES (?,?,?,1,?,'system') ON CONFLICT DO NOTHING", (profile_id, name, body, now))


def profile_body(c: Any, profile_id: str) -> str | None:
    """A stored profile's JSON body, or None."""
    row = c.execute("SELECT body FROM profiles WHERE id = ?", (profile_id,)).fetchone()
    return None if row is None else row[0]


def get_profile(c: Any, profile_id: str) -> dict[str, Any] | None:
    return _dict(c.execute("SELECT * FROM profiles WHERE id = ?", (profile_id,)).fetchone())


def list_profiles(c: Any) -> list[dict[str, Any]]:
    """Built-in profiles first, then by id."""
    return _dicts(c.execute("SELECT * FROM profiles ORDER BY builtin DESC, id"))


def save_profile(c: Any, profile_id: str, name: str, body: str, now: int, by: str) -> None:
    """Create or change a custom profile and record the change (who, when, the body)."""
    c.execute("INSERT INTO profiles (id, name, body, builtin, updated_at, updated_by) VALUES (?,?,?,0,?,?)"
              " ON CONFLICT(id) DO UPDATE SET name = excluded.name, body = excluded.body,"
              " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
              (profile_id, name, body, now, by))
    c.execute("INSERT INTO profile_changes (profile_id, body, changed_at, changed_by) VALUES (?,?,?,?)",
              (profile_id, body, now, by))


def profile_changes(c: Any, profile_id: str) -> list[dict[str, Any]]:
    """A profile's recorded changes, oldest first."""
    return _dicts(c.execute("SELECT * FROM profile_changes WHERE profile_id = ? ORDER BY id", (profile_id,)))


# ---- quarantine --------------------------------------------------------------------------------------------

def add_quarantine_many(c: Any, rows: Sequence[tuple]) -> None:
    """(received_at, source, topic, device_id, reason, detail, reading_index, raw) rows: one statement."""
    c.executemany("INSERT INTO quarantine (received_at, source, topic, device_id, reason, detail,"
                  " reading_index, raw) VALUES (?,?,?,?,?,?,?,?)", rows)


def add_quarantine(c: Any, row: tuple) -> None:
    """One whole message (no reading index): (received_at, source, topic, device_id, reason, detail, raw)."""
    c.execute("INSERT INTO quarantine (received_at, source, topic, device_id, reason, detail,"
              " reading_index, raw) VALUES (?,?,?,?,?,?,NULL,?)", row)


def open_conflict_exists(c: Any, device_id: str, reading_ts: int, received_temp_c: float) -> bool:
    """Whether this conflicting reading is quarantined already and not resolved (a redelivery)."""
    return c.execute("SELECT 1 FROM quarantine WHERE reason = 'conflicting_duplicate' AND resolved_at IS NULL"
                     " AND device_id = ? AND reading_ts = ? AND received_temp_c = ?",
                     (device_id, reading_ts, received_temp_c)).fetchone() is not None


def add_conflicts(c: Any, rows: Sequence[tuple]) -> None:
    """Conflicting duplicates: (received_at, source, topic, device_id, detail, raw, reading_ts, stored_temp_c,
    stored_seq, received_temp_c, received_seq, stored_source) rows, one statement."""
    c.executemany("INSERT INTO quarantine (received_at, source, topic, device_id, reason, detail, reading_index,"
                  " raw, reading_ts, stored_temp_c, stored_seq, received_temp_c, received_seq, stored_source)"
                  " VALUES (?,?,?,?,'conflicting_duplicate',?,NULL,?,?,?,?,?,?,?)", rows)


def open_conflicts(c: Any, device_ids: Sequence[str] | None = None) -> dict[str, int]:
    """Open (unresolved) conflicting duplicates per device, of these devices or of all."""
    sql = ("SELECT device_id, COUNT(*) FROM quarantine WHERE reason = 'conflicting_duplicate'"
           " AND resolved_at IS NULL")
    if device_ids is None:
        return {r[0]: r[1] for r in c.execute(sql + " GROUP BY device_id")}
    out: dict[str, int] = {}
    for i in range(0, len(device_ids), CHUNK):
        chunk = list(device_ids[i:i + CHUNK])
        out.update((r[0], r[1]) for r in c.execute(
            f"{sql} AND device_id IN ({_marks(len(chunk))}) GROUP BY device_id", chunk))
    return out


def list_quarantine(c: Any, *, reason: str | None = None, device_id: str | None = None, open_only: bool = False,
                    limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """Quarantine rows, newest first; ``open_only``: unresolved conflicting duplicates."""
    where: list[str] = []
    params: list[Any] = []
    for col, val in (("reason", reason), ("device_id", device_id)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    if open_only:
        where.append("reason = 'conflicting_duplicate' AND resolved_at IS NULL")
    sql = "SELECT * FROM quarantine" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
    return _dicts(c.execute(sql, (*params, limit, offset)))


def get_quarantine(c: Any, quarantine_id: int) -> dict[str, Any] | None:
    return _dict(c.execute("SELECT * FROM quarantine WHERE id = ?", (quarantine_id,)).fetchone())


def resolve_quarantine(c: Any, quarantine_id: int, now: int, by: str, resolution: str) -> None:
    c.execute("UPDATE quarantine SET resolved_at = ?, resolved_by = ?, resolution = ? WHERE id = ?",
              (now, by, resolution, quarantine_id))


def quarantine_by_reason(c: Any) -> dict[str, int]:
    return {r[0]: r[1] for r in c.execute("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason")}


def count_quarantine(c: Any) -> int:
    return c.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]


def quarantined_for(c: Any, reason: str) -> tuple[int, int | None]:
    """(how many rows were quarantined for ``reason``, when the last one arrived)."""
    row = c.execute("SELECT COUNT(*), MAX(received_at) FROM quarantine WHERE reason = ?", (reason,)).fetchone()
    return row[0], row[1]


_IN_CHUNK = 500  # ids per IN (...) list


def open_conflicts_in(db: Any, device_id: str, start: int, end: int | None) -> int:
    """Quarantined conflicting duplicates of a device with start <= reading_ts < end (None: open) that nobody
    has resolved."""
    sql = ("SELECT COUNT(*) FROM quarantine WHERE reason = 'conflicting_duplicate' AND resolved_at IS NULL"
           " AND device_id = ? AND reading_ts >= ?")
    params: list[Any] = [device_id, start]
    if end is not None:
        sql += " AND reading_ts < ?"
        params.append(end)
    return int(conn_of(db).execute(sql, tuple(params)).fetchone()[0])


def device_profile_bodies(db: Any, device_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(device id, profile id, profile body JSON) of the devices that have a profile. The alerts
    service reads them for the severities a device's profile marks self-clearing."""
    ids = sorted(set(device_ids))
    out: list[tuple[str, str, str]] = []
    for i in range(0, len(ids), _IN_CHUNK):
        part = ids[i:i + _IN_CHUNK]
        out.extend((r[0], r[1], r[2]) for r in conn_of(db).execute(
            "SELECT d.id, d.profile_id, p.body FROM devices d JOIN profiles p ON p.id = d.profile_id"
            f" WHERE d.id IN ({_marks(len(part))}) ORDER BY d.id", part))
    return out

"""SQL of the excursions table, shared by the live pipeline and shipment evaluation."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from coldtrace.core.model import Excursion
from coldtrace.store.db import insert_many

_UPSERT = (
    "INSERT INTO excursions (id, series_id, device_id, shipment_id, limit_id, direction, threshold_c,"
    " severity, start_ts, end_ts, duration_ms, peak_c, degree_minutes, alarm_ts, alarm_kind,"
    " superseded, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?)"
    " ON CONFLICT(id) DO UPDATE SET end_ts=excluded.end_ts, duration_ms=excluded.duration_ms,"
    " peak_c=excluded.peak_c, degree_minutes=excluded.degree_minutes, alarm_ts=excluded.alarm_ts,"
    " alarm_kind=excluded.alarm_kind, severity=excluded.severity, superseded=0,"
    " updated_at=excluded.updated_at"
)


def upsert_excursion(c: sqlite3.Connection, e: Excursion, device_id: str, shipment_id: str | None,
                     now_ms: int) -> None:
    """Insert or update one excursion by its stable id (an update un-supersedes it)."""
    c.execute(_UPSERT, (e.id, e.series_id, device_id, shipment_id, e.limit_id, e.direction, e.threshold_c,
                        e.severity, e.start_ts, e.end_ts, e.duration_ms, e.peak_c, e.degree_minutes, e.alarm_ts,
                        e.alarm_kind, now_ms))


def row_to_excursion(r: sqlite3.Row) -> Excursion:
    return Excursion(r["series_id"], r["limit_id"], r["direction"], r["threshold_c"], r["severity"],
                     r["start_ts"], r["end_ts"], r["duration_ms"], r["peak_c"], r["degree_minutes"],
                     r["alarm_ts"], r["alarm_kind"])


# ---- the live evaluation's statements (coldtrace/services/live_evaluation.py) -------------------------------

CHUNK = 500


def stored_excursions(c: sqlite3.Connection, series_id: str, since: int | None = None) -> list[Excursion]:
    """The series' excursions not superseded; ``since`` given: only those that may change when the series is
    re-evaluated from a checkpoint at ``since`` (started after it, open, or ended after it)."""
    sql = "SELECT * FROM excursions WHERE series_id = ? AND superseded = 0"
    params: tuple = (series_id,)
    if since is not None:
        sql += " AND (start_ts > ? OR end_ts IS NULL OR end_ts > ?)"
        params = (series_id, since, since)
    return [row_to_excursion(r) for r in c.execute(sql, params)]


def supersede(c: sqlite3.Connection, ids: Sequence[str], now_ms: int) -> None:
    """Mark excursions superseded (late data removed them; kept, never deleted): one statement."""
    c.executemany("UPDATE excursions SET superseded = 1, updated_at = ? WHERE id = ?", [(now_ms, i) for i in ids])


def alert_states(c: sqlite3.Connection, excursion_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """excursion id -> (revision, announced state JSON) of those announced already."""
    prior: dict[str, tuple[int, str]] = {}
    for i in range(0, len(excursion_ids), CHUNK):
        part = list(excursion_ids[i:i + CHUNK])
        for r in c.execute("SELECT excursion_id, revision, state FROM excursion_alert_state"
                           f" WHERE excursion_id IN ({','.join('?' * len(part))})", part):
            prior[r[0]] = (r[1], r[2])
    return prior


def save_alert_states(c: sqlite3.Connection, rows: Sequence[tuple[str, int, str, int]]) -> None:
    """(excursion_id, revision, state JSON, updated_at) rows, one statement (the last row of an id wins)."""
    c.executemany("INSERT INTO excursion_alert_state (excursion_id, revision, state, updated_at)"
                  " VALUES (?,?,?,?) ON CONFLICT (excursion_id) DO UPDATE SET revision = excluded.revision,"
                  " state = excluded.state, updated_at = excluded.updated_at", rows)


def delete_checkpoints_from(c: sqlite3.Connection, series_id: str, ts: int) -> None:
    """Forget the series' checkpoints at or after ``ts`` (data before them changed)."""
    c.execute("DELETE FROM series_checkpoints WHERE series_id = ? AND ts >= ?", (series_id, ts))


def checkpoint_before(c: sqlite3.Connection, series_id: str, ts: int, profile_hash: str
                      ) -> tuple[int, str] | None:
    """(ts, snapshot JSON) of the newest checkpoint before ``ts`` taken under this profile, or None."""
    row = c.execute("SELECT ts, snapshot FROM series_checkpoints WHERE series_id = ? AND ts < ?"
                    " AND profile_hash = ? ORDER BY ts DESC LIMIT 1", (series_id, ts, profile_hash)).fetchone()
    return None if row is None else (row[0], row[1])


def last_checkpoint_ts(c: sqlite3.Connection, series_id: str) -> int | None:
    r = c.execute("SELECT MAX(ts) FROM series_checkpoints WHERE series_id = ?", (series_id,)).fetchone()
    return r[0] if r else None


def _last_per_key(rows: Sequence[tuple[str, int, str, str]]) -> Sequence[tuple[str, int, str, str]]:
    """One row per (series_id, ts), the last one: an upsert may not touch a row twice in one statement on
    PostgreSQL."""
    keys = {(r[0], r[1]) for r in rows}
    return list({(r[0], r[1]): r for r in rows}.values()) if len(keys) < len(rows) else rows


def save_checkpoints(c: sqlite3.Connection, rows: Sequence[tuple[str, int, str, str]], cutoff: int) -> None:
    """Store (series_id, ts, profile_hash, snapshot JSON) checkpoints (a second one for the same series and ts
    replaces the first) and drop the checkpoints older than ``cutoff`` of the series stored: two statements
    for all of them (one per 500 series for the second)."""
    insert_many(c, "INSERT INTO series_checkpoints (series_id, ts, profile_hash, snapshot) VALUES",
                _last_per_key(rows), 4, "ON CONFLICT (series_id, ts) DO UPDATE SET"
                " profile_hash = excluded.profile_hash, snapshot = excluded.snapshot")
    devices = sorted({r[0] for r in rows})
    for i in range(0, len(devices), CHUNK):
        part = devices[i:i + CHUNK]
        c.execute(f"DELETE FROM series_checkpoints WHERE ts < ? AND series_id IN ({','.join('?' * len(part))})",
                  [cutoff, *part])


# ---- reads for the API -------------------------------------------------------------------------------------

def list_excursions(c: sqlite3.Connection, *, start: int, end: int, device_id: str | None = None,
                    shipment_id: str | None = None, limit_id: str | None = None, open: bool | None = None,
                    alarmed: bool | None = None, limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
    """Excursions (not superseded) overlapping [start, end), newest start first, then by limit id."""
    where = ["superseded = 0", "start_ts < ?", "(end_ts IS NULL OR end_ts >= ?)"]
    params: list[Any] = [end, start]
    for col, val in (("device_id", device_id), ("shipment_id", shipment_id), ("limit_id", limit_id)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    if open is not None:
        where.append("end_ts IS NULL" if open else "end_ts IS NOT NULL")
    if alarmed is not None:
        where.append("alarm_ts IS NOT NULL" if alarmed else "alarm_ts IS NULL")
    sql = f"SELECT * FROM excursions WHERE {' AND '.join(where)} ORDER BY start_ts DESC, limit_id LIMIT ? OFFSET ?"
    return [dict(zip(r.keys(), r, strict=True)) for r in c.execute(sql, (*params, limit, offset))]


def get_excursion(c: sqlite3.Connection, excursion_id: str) -> dict[str, Any] | None:
    r = c.execute("SELECT * FROM excursions WHERE id = ?", (excursion_id,)).fetchone()
    return None if r is None else dict(zip(r.keys(), r, strict=True))


def supersede_shipment_excursions(c: sqlite3.Connection, shipment_id: str, keep: set[str],
                                  now_ms: int) -> list[str]:
    """Mark the shipment's stored excursions not in ``keep`` superseded (late data removed them: kept, never
    deleted); returns their ids."""
    gone = [r[0] for r in c.execute("SELECT id FROM excursions WHERE shipment_id = ? AND superseded = 0"
                                    " ORDER BY id", (shipment_id,)).fetchall() if r[0] not in keep]
    c.executemany("UPDATE excursions SET superseded = 1, updated_at = ? WHERE id = ?",
                  [(now_ms, i) for i in gone])
    return gone

"""SQL of the excursions table, shared by the live pipeline and shipment evaluation."""

from __future__ import annotations

import sqlite3

from coldtrace.core.model import Excursion

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

"""Calibration rows: device calibration state, bench sessions with their devices under test, set points, live
EWMA charts, results, the as-found history, "performed by" signatures and issued certificate revisions.

Rows in, typed dicts out (the API returns most of them as they are). The rules (when a session advances, what a
certificate states, who may sign) live in ``coldtrace.services.calibration_service``,
``calibration_records`` and ``certificate_issue``; this module only reads and writes, inside the caller's
transaction where a connection is given. Every statement is portable (SQLite and PostgreSQL run the same text:
docs/CONVENTIONS.md "Portable SQL").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from coldtrace.core.errors import NotFound
from coldtrace.ports import (
    CalibratedDevice,
    CertificateRevision,
    DeviceCalibration,
    DueRow,
    Dut,
    EwmaRow,
    HistoryRow,
    PointRow,
    ResultRow,
    SessionRow,
    SignatureRow,
)
from coldtrace.store.db import add_equal_filters, conn_of

# The fields of a device's calibration state that callers set (device_id and updated_at are the store's).
DEVICE_FIELDS = ("last_calibrated_at", "interval_days", "due_at", "status", "certificate_ref",
                 "expanded_uncertainty_c", "resolution_c", "traceability", "due_alerted",
                 "make", "model", "serial_number", "calibrated_by")
# What a certificate states about a session besides its results (ISO/IEC 17025 7.8.2.1, 7.8.4.1).
SESSION_CONDITIONS = ("customer", "location", "ambient_c", "ambient_rh_pct")
SESSION_COLUMNS = ("id", "reference_id", "set_points", "mpe_c", "rule", "kind", "capture_ms", "tolerance_c",
                   "u_medium_c", "u_ref_c", "cursor_ms", "started_at", "created_at", "created_by", "notes",
                   *SESSION_CONDITIONS)
SESSION_STATES = ("running", "completed", "cancelled")
RESULT_COLUMNS = ("session_id", "device_id", "point_index", "set_point_c", "n", "error_c", "s_c", "u_c",
                  "expanded_u_c", "decision", "zone", "ref_mean_c", "dut_mean_c", "capture_from", "capture_to",
                  "created_at")
CERTIFICATE_COLUMNS = ("number", "revision", "session_id", "device_id", "issued_at", "approver_user_id",
                       "approver_username", "approver_name", "changes", "body", "body_hash", "signature_hash")
SIGNATURE_COLUMNS = ("id", "session_id", "role", "meaning", "signer_user_id", "signer_username", "printed_name",
                     "signed_at", "record_hash", "signature_hash")


def _dicts(cur: Iterable[Any]) -> list[Any]:
    return [dict(r) for r in cur]


def _one(cur: Any) -> Any:
    r = cur.fetchone()
    return None if r is None else dict(r)


def _insert(c: sqlite3.Connection, table: str, columns: Sequence[str], row: dict[str, Any], tail: str = "") -> Any:
    """INSERT of the named columns (module constants, never user text) from ``row``."""
    return c.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}){tail}",
                     tuple(row[k] for k in columns))


# ---------------------------------------------------------------- device calibration state

def device_calibration(db: Any, device_id: str) -> DeviceCalibration | None:
    return _one(conn_of(db).execute("SELECT * FROM device_calibration WHERE device_id = ?", (device_id,)))


def device_calibrations(db: Any) -> dict[str, DeviceCalibration]:
    """Every device's calibration state, by device id."""
    return {r["device_id"]: dict(r) for r in conn_of(db).execute("SELECT * FROM device_calibration")}


def calibration_device_ids(db: Any) -> list[str]:
    """The devices known to ColdTrace (registered, heard from, or with a calibration record), by id.

    One UNION over ``devices`` and ``device_calibration``: a device with a calibration record need not be
    registered."""
    return [r[0] for r in conn_of(db).execute(
        "SELECT id FROM devices UNION SELECT device_id FROM device_calibration ORDER BY 1")]


def save_device_calibration(c: sqlite3.Connection, device_id: str, values: dict[str, Any], now_ms: int) -> None:
    """Insert or replace every ``DEVICE_FIELDS`` value of a device (the caller merges with the stored state)."""
    missing = set(DEVICE_FIELDS) - set(values)
    if missing:
        raise ValueError(f"missing calibration fields {sorted(missing)}")
    cols, marks = ", ".join(DEVICE_FIELDS), ", ".join("?" * len(DEVICE_FIELDS))
    c.execute(f"INSERT INTO device_calibration (device_id, {cols}, updated_at) VALUES (?, {marks}, ?)"
              f" ON CONFLICT (device_id) DO UPDATE SET {', '.join(f'{k} = excluded.{k}' for k in DEVICE_FIELDS)},"
              " updated_at = excluded.updated_at", (device_id, *[values[k] for k in DEVICE_FIELDS], now_ms))


def set_drift_judgement(c: sqlite3.Connection, device_id: str, predicted_ms: int | None, judged_at: int) -> None:
    c.execute("UPDATE device_calibration SET drift_predicted_ms = ?, drift_judged_at = ? WHERE device_id = ?",
              (predicted_ms, judged_at, device_id))


def devices_to_rejudge(db: Any, judged_before: int) -> list[str]:
    """Devices with a due date and an as-found history whose predicted drift was not judged after
    ``judged_before`` (or never)."""
    return [r[0] for r in conn_of(db).execute(
        "SELECT device_id FROM device_calibration WHERE due_at IS NOT NULL AND"
        " (drift_judged_at IS NULL OR drift_judged_at <= ?) AND device_id IN"
        " (SELECT device_id FROM calibration_history) ORDER BY device_id", (judged_before,))]


def due_within(db: Any, now_ms: int, horizon_ms: int) -> list[DueRow]:
    """Devices whose due date is at most ``horizon_ms`` after ``now_ms`` (or past)."""
    return _dicts(conn_of(db).execute(
        "SELECT device_id, due_at, due_alerted FROM device_calibration WHERE due_at IS NOT NULL"
        " AND due_at <= ? ORDER BY device_id", (now_ms + horizon_ms,)))


def mark_due_alerted(c: sqlite3.Connection, marks: Sequence[tuple[str, str]]) -> None:
    """(stage, device_id) pairs: the calibration.due stage last raised for each device."""
    c.executemany("UPDATE device_calibration SET due_alerted = ? WHERE device_id = ?", list(marks))


# ---------------------------------------------------------------- sessions

def session_exists(db: Any, session_id: str) -> bool:
    return conn_of(db).execute("SELECT 1 FROM calibration_sessions WHERE id = ?", (session_id,)).fetchone() is not None


def get_session(db: Any, session_id: str) -> SessionRow:
    row = _one(conn_of(db).execute("SELECT * FROM calibration_sessions WHERE id = ?", (session_id,)))
    if row is None:
        raise NotFound(f"no calibration session {session_id!r}")
    return row


def insert_session(c: sqlite3.Connection, row: dict[str, Any], duts: Sequence[tuple[str, float]]) -> None:
    """A new running session (``row`` holds ``SESSION_COLUMNS``; conditions may be missing) and its devices
    under test as (device_id, resolution_c)."""
    full = {k: row.get(k) for k in SESSION_COLUMNS}
    _insert(c, "calibration_sessions", SESSION_COLUMNS, full)
    c.executemany("INSERT INTO calibration_session_duts (session_id, device_id, resolution_c) VALUES (?, ?, ?)",
                  [(row["id"], dev, float(res)) for dev, res in duts])


def update_session_conditions(c: sqlite3.Connection, session_id: str, fields: dict[str, Any]) -> None:
    """Set some of customer, location, ambient_c, ambient_rh_pct."""
    bad = set(fields) - set(SESSION_CONDITIONS)
    if bad:
        raise ValueError(f"unknown session fields {sorted(bad)}")
    if fields:
        sets = ", ".join(f"{k} = ?" for k in fields)
        c.execute(f"UPDATE calibration_sessions SET {sets} WHERE id = ?", (*fields.values(), session_id))


def finish_session(c: sqlite3.Connection, session_id: str, state: str, completed_at: int) -> None:
    """A session leaves ``running``: ``completed`` or ``cancelled`` at ``completed_at``."""
    if state not in ("completed", "cancelled"):
        raise ValueError("a session finishes completed or cancelled")
    c.execute("UPDATE calibration_sessions SET state = ?, completed_at = ? WHERE id = ?",
              (state, completed_at, session_id))


def next_set_point(c: sqlite3.Connection, session_id: str, cursor_ms: int) -> None:
    """The current set point is done: seek the next one in reference readings from ``cursor_ms``."""
    c.execute("UPDATE calibration_sessions SET point_index = point_index + 1, cursor_ms = ? WHERE id = ?",
              (cursor_ms, session_id))


def running_session_ids(db: Any) -> list[str]:
    return [r[0] for r in conn_of(db).execute(
        "SELECT id FROM calibration_sessions WHERE state = 'running' ORDER BY started_at, id")]


def list_sessions(db: Any, *, reference_id: str | None = None, device_id: str | None = None,
                  state: str | None = None, limit: int = 100, offset: int = 0) -> list[SessionRow]:
    """Sessions, newest start first; empty filters are ignored."""
    where: list[str] = []
    params: list[Any] = []
    add_equal_filters(where, params, (("s.reference_id", reference_id or None), ("s.state", state or None)))
    if device_id:
        where.append("s.id IN (SELECT session_id FROM calibration_session_duts WHERE device_id = ?)")
        params.append(device_id)
    sql = "SELECT s.* FROM calibration_sessions s" + (" WHERE " + " AND ".join(where) if where else "")
    return _dicts(conn_of(db).execute(sql + " ORDER BY s.started_at DESC, s.created_at DESC, s.id LIMIT ? OFFSET ?",
                                    (*params, int(limit), int(offset))))


def session_duts(db: Any, session_id: str) -> list[Dut]:
    return _dicts(conn_of(db).execute("SELECT device_id, resolution_c FROM calibration_session_duts"
                                      " WHERE session_id = ? ORDER BY device_id", (session_id,)))


def session_dut(db: Any, session_id: str, device_id: str) -> Dut | None:
    return _one(conn_of(db).execute("SELECT device_id, resolution_c FROM calibration_session_duts"
                                    " WHERE session_id = ? AND device_id = ?", (session_id, device_id)))


def delete_session(c: sqlite3.Connection, session_id: str) -> None:
    """Remove a session that captured nothing, with its devices and charts (refused when it has set points:
    the caller checks ``has_points`` first to say so)."""
    if has_points(c, session_id):
        raise ValueError(f"session {session_id} has captured set points")
    c.execute("DELETE FROM calibration_ewma WHERE session_id = ?", (session_id,))
    c.execute("DELETE FROM calibration_session_duts WHERE session_id = ?", (session_id,))
    c.execute("DELETE FROM calibration_sessions WHERE id = ?", (session_id,))


def has_points(db: Any, session_id: str) -> bool:
    return conn_of(db).execute("SELECT 1 FROM calibration_points WHERE session_id = ? LIMIT 1",
                             (session_id,)).fetchone() is not None


def sessions_with_reference(db: Any, reference_id: str) -> list[CalibratedDevice]:
    """Every device under test of every completed session that used this reference, oldest first."""
    return _dicts(conn_of(db).execute(
        "SELECT d.device_id, s.id AS session_id, s.kind, s.completed_at, s.u_ref_c, s.state"
        " FROM calibration_session_duts d JOIN calibration_sessions s ON s.id = d.session_id"
        " WHERE s.reference_id = ? AND s.state = 'completed' ORDER BY s.completed_at, d.device_id, s.id",
        (reference_id,)))


# ---------------------------------------------------------------- set points and live charts

def point(db: Any, session_id: str, point_index: int) -> PointRow | None:
    return _one(conn_of(db).execute("SELECT * FROM calibration_points WHERE session_id = ? AND point_index = ?",
                                  (session_id, point_index)))


def points(db: Any, session_id: str) -> list[PointRow]:
    return _dicts(conn_of(db).execute("SELECT * FROM calibration_points WHERE session_id = ? ORDER BY point_index",
                                    (session_id,)))


def add_point(c: sqlite3.Connection, session_id: str, point_index: int, set_point_c: float, *, stable_from: int,
              stable_at: int, capture_end: int, ref_mean_c: float, ref_std_c: float,
              ref_slope_c_per_min: float) -> bool:
    """The stable window of a set point, once (a second call for the same point changes nothing: False)."""
    cur = c.execute("INSERT INTO calibration_points (session_id, point_index, set_point_c, stable_from, stable_at,"
                    " capture_end, ref_mean_c, ref_std_c, ref_slope_c_per_min) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (session_id, point_index) DO NOTHING",
                    (session_id, point_index, set_point_c, stable_from, stable_at, capture_end, ref_mean_c,
                     ref_std_c, ref_slope_c_per_min))
    return cur.rowcount == 1


def mark_point_evaluated(c: sqlite3.Connection, session_id: str, point_index: int) -> None:
    c.execute("UPDATE calibration_points SET evaluated = 1 WHERE session_id = ? AND point_index = ?",
              (session_id, point_index))


def last_capture_end(db: Any, session_id: str) -> int | None:
    row = conn_of(db).execute("SELECT MAX(capture_end) FROM calibration_points WHERE session_id = ?",
                            (session_id,)).fetchone()
    return None if row is None else row[0]


def add_ewma(c: sqlite3.Connection, session_id: str, device_id: str, point_index: int, *, mu0: float, sigma: float,
             n0: int, last_ts: int) -> bool:
    """A live EWMA chart's baseline (z starts at mu0, i at 0), once per (session, device, set point)."""
    cur = c.execute("INSERT INTO calibration_ewma (session_id, device_id, point_index, mu0, sigma, n0, z, i,"
                    " last_ts) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)"
                    " ON CONFLICT (session_id, device_id, point_index) DO NOTHING",
                    (session_id, device_id, point_index, mu0, sigma, n0, mu0, last_ts))
    return cur.rowcount == 1


def ewma(db: Any, session_id: str, device_id: str, point_index: int) -> EwmaRow | None:
    return _one(conn_of(db).execute("SELECT * FROM calibration_ewma WHERE session_id = ? AND device_id = ?"
                                    " AND point_index = ?", (session_id, device_id, point_index)))


def update_ewma(c: sqlite3.Connection, session_id: str, device_id: str, point_index: int, *, z: float, i: int,
                last_ts: int, drift_at: int | None) -> None:
    c.execute("UPDATE calibration_ewma SET z = ?, i = ?, last_ts = ?, drift_at = ? WHERE session_id = ? AND"
              " device_id = ? AND point_index = ?", (z, i, last_ts, drift_at, session_id, device_id, point_index))


# ---------------------------------------------------------------- results and history

def save_result(c: sqlite3.Connection, row: dict[str, Any]) -> None:
    """The result of one device at one set point (``RESULT_COLUMNS``); a re-evaluation replaces it."""
    keys = ("session_id", "device_id", "point_index")
    _insert(c, "calibration_results", RESULT_COLUMNS, row,
            " ON CONFLICT (session_id, device_id, point_index) DO UPDATE SET "
            + ", ".join(f"{k} = excluded.{k}" for k in RESULT_COLUMNS if k not in keys))


def results(db: Any, session_id: str, device_id: str | None = None) -> list[ResultRow]:
    """A session's results by device, then set point."""
    sql, params = "SELECT * FROM calibration_results WHERE session_id = ?", [session_id]
    if device_id is not None:
        sql += " AND device_id = ?"
        params.append(device_id)
    return _dicts(conn_of(db).execute(sql + " ORDER BY device_id, point_index", tuple(params)))


def save_history(c: sqlite3.Connection, device_id: str, set_point_c: float, ts: int, *, error_c: float,
                 expanded_u_c: float, mpe_c: float, source: str) -> None:
    """An as-found error of a device at a set point and time (a session's, or an imported certificate's); the
    same (device, set point, ts) again replaces it."""
    c.execute("INSERT INTO calibration_history (device_id, set_point_c, ts, error_c, expanded_u_c, mpe_c, source)"
              " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, set_point_c, ts) DO UPDATE SET"
              " error_c = excluded.error_c, expanded_u_c = excluded.expanded_u_c, mpe_c = excluded.mpe_c,"
              " source = excluded.source", (device_id, set_point_c, ts, error_c, expanded_u_c, mpe_c, source))


def history(db: Any, device_id: str) -> list[HistoryRow]:
    """A device's as-found history by set point, then time."""
    return _dicts(conn_of(db).execute("SELECT set_point_c, ts, error_c, expanded_u_c, mpe_c FROM calibration_history"
                                      " WHERE device_id = ? ORDER BY set_point_c, ts", (device_id,)))


# ---------------------------------------------------------------- signatures and certificates

def performed_signature(db: Any, session_id: str) -> SignatureRow | None:
    return _one(conn_of(db).execute("SELECT * FROM calibration_signatures WHERE session_id = ? AND role = 'performed'",
                                  (session_id,)))


def insert_signature(c: sqlite3.Connection, row: dict[str, Any]) -> bool:
    """A session's signature (``SIGNATURE_COLUMNS``); False when the session already has one of that role."""
    cur = _insert(c, "calibration_signatures", SIGNATURE_COLUMNS, row, " ON CONFLICT (session_id, role) DO NOTHING")
    return cur.rowcount == 1


def certificate_revisions(db: Any, session_id: str, device_id: str) -> list[CertificateRevision]:
    """The issued revisions of a device's certificate, oldest first (without their bodies)."""
    return _dicts(conn_of(db).execute(
        "SELECT number, revision, session_id, device_id, issued_at, approver_username, approver_name, changes,"
        " body_hash, signature_hash FROM calibration_certificates WHERE session_id = ? AND device_id = ?"
        " ORDER BY revision", (session_id, device_id)))


def certificate_body(db: Any, session_id: str, device_id: str, revision: int | None = None) -> str | None:
    """The frozen body (JSON) of a revision, the latest when ``revision`` is None; None when there is none."""
    sql = "SELECT body FROM calibration_certificates WHERE session_id = ? AND device_id = ?"
    params: tuple[Any, ...] = (session_id, device_id)
    if revision is not None:
        sql += " AND revision = ?"
        params += (revision,)
    row = conn_of(db).execute(sql + " ORDER BY revision DESC LIMIT 1", params).fetchone()
    return None if row is None else row[0]


def insert_certificate(c: sqlite3.Connection, row: dict[str, Any]) -> bool:
    """An issued revision (``CERTIFICATE_COLUMNS``); False when that number and revision exist already."""
    cur = _insert(c, "calibration_certificates", CERTIFICATE_COLUMNS, row,
                  " ON CONFLICT (number, revision) DO NOTHING")
    return cur.rowcount == 1


def certificate_session(db: Any, number: str, device_id: str) -> str | None:
    """The session of an issued certificate number of this device (None: not one of ours)."""
    row = conn_of(db).execute("SELECT session_id FROM calibration_certificates WHERE number = ? AND device_id = ?"
                              " ORDER BY revision DESC LIMIT 1", (number, device_id)).fetchone()
    return None if row is None else row[0]


def session_roles(c: Any) -> dict[str, str]:
    """Devices taking part in a running calibration session -> their role there (the reference first)."""
    out: dict[str, str] = {}
    for dev, role in c.execute(
            "SELECT reference_id, 'calibration_reference' FROM calibration_sessions WHERE state = 'running'"
            " UNION ALL SELECT d.device_id, 'device_under_calibration' FROM calibration_session_duts d"
            " JOIN calibration_sessions s ON s.id = d.session_id WHERE s.state = 'running'"):
        out.setdefault(dev, role)
    return out


def latest_session_by(c: Any, created_by: str, notes: str, reference_id: str) -> tuple[str, int] | None:
    """(id, started_at) of the newest calibration session not cancelled that ``created_by`` made with these
    notes and reference, or None."""
    row = c.execute(
        "SELECT id, started_at FROM calibration_sessions WHERE created_by = ? AND notes = ? AND reference_id = ?"
        " AND state != 'cancelled' ORDER BY created_at DESC LIMIT 1", (created_by, notes, reference_id)).fetchone()
    return None if row is None else (row[0], int(row[1]))

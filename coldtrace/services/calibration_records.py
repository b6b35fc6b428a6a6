"""Calibration records in SQLite: device calibration state, sessions, results, history, drift, certificates.

The read side of calibration (what the API and the certificate show) kept apart from the session engine in
``calibration_service`` so each stays small. Functions take a ``Database`` or a connection (inside a
caller's transaction).
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import numpy as np

from coldtrace.adapters.certificate import CertificateData, CertificatePoint
from coldtrace.core import calibration as cal
from coldtrace.core import calibration_drift as drift_maths
from coldtrace.core.errors import NotFound
from coldtrace.store.db import Database, add_equal_filters

DEVICE_FIELDS = ("last_calibrated_at", "interval_days", "due_at", "status", "certificate_ref",
                 "expanded_uncertainty_c", "resolution_c", "traceability", "due_alerted",
                 "make", "model", "serial_number", "calibrated_by")


def _conn(db: Database | sqlite3.Connection) -> sqlite3.Connection:
    return db.conn() if isinstance(db, Database) else db


def certificate_ref(session_id: str, device_id: str) -> str:
    return f"CT-{session_id}-{device_id}"


def session_row(db: Database | sqlite3.Connection, session_id: str) -> sqlite3.Row:
    row = _conn(db).execute("SELECT * FROM calibration_sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise NotFound(f"no calibration session {session_id!r}")
    return row


def device_calibration(db: Database | sqlite3.Connection, device_id: str) -> dict[str, Any] | None:
    row = _conn(db).execute("SELECT * FROM device_calibration WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else dict(row)


def upsert_device_calibration(c: sqlite3.Connection, device_id: str, now: int, **fields: Any) -> None:
    """Set some calibration fields of a device (others unchanged); due_at follows last + interval."""
    bad = set(fields) - set(DEVICE_FIELDS)
    if bad:
        raise ValueError(f"unknown calibration fields {sorted(bad)}")
    cur = device_calibration(c, device_id) or {}
    merged = {k: cur.get(k) for k in DEVICE_FIELDS} | fields
    if merged["interval_days"] is None:
        merged["interval_days"] = 365.0
    if "due_at" not in fields and merged["last_calibrated_at"] is not None and (
            "last_calibrated_at" in fields or "interval_days" in fields):
        merged["due_at"] = drift_maths.due_date(merged["last_calibrated_at"], merged["interval_days"])
    if merged["status"] is None:
        merged["status"] = "valid" if merged["last_calibrated_at"] is not None else "unknown"
    cols, marks = ", ".join(DEVICE_FIELDS), ",".join("?" * len(DEVICE_FIELDS))
    c.execute(f"INSERT INTO device_calibration (device_id, {cols}, updated_at) VALUES (?,{marks},?)"
              f" ON CONFLICT(device_id) DO UPDATE SET {', '.join(f'{k}=excluded.{k}' for k in DEVICE_FIELDS)},"
              " updated_at=excluded.updated_at", (device_id, *[merged[k] for k in DEVICE_FIELDS], now))


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def session_detail(db: Database, session_id: str) -> dict[str, Any]:
    s = dict(session_row(db, session_id))
    s["set_points"] = json.loads(s["set_points"])
    s["duts"] = [dict(r) for r in db.query("SELECT device_id, resolution_c FROM calibration_session_duts"
                                           " WHERE session_id = ? ORDER BY device_id", (session_id,))]
    s["points"] = [dict(r) for r in db.query("SELECT * FROM calibration_points WHERE session_id = ?"
                                             " ORDER BY point_index", (session_id,))]
    s["results"] = session_results(db, session_id)
    return s


def session_results(db: Database, session_id: str, device_id: str | None = None) -> list[dict[str, Any]]:
    sql, params = "SELECT * FROM calibration_results WHERE session_id = ?", [session_id]
    if device_id is not None:
        sql += " AND device_id = ?"
        params.append(device_id)
    rows = [dict(r) for r in db.query(sql + " ORDER BY device_id, point_index", tuple(params))]
    decisions: dict[str, list[str]] = {}
    for r in rows:
        decisions.setdefault(r["device_id"], []).append(r["decision"])
    for r in rows:
        r["overall"] = cal.overall_decision(decisions[r["device_id"]])
    return rows


def list_sessions(db: Database, *, reference_id: str | None = None, device_id: str | None = None,
                  state: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    add_equal_filters(where, params, (("s.reference_id", reference_id or None), ("s.state", state or None)))
    if device_id:
        where.append("s.id IN (SELECT session_id FROM calibration_session_duts WHERE device_id = ?)")
        params.append(device_id)
    sql = "SELECT s.* FROM calibration_sessions s" + (" WHERE " + " AND ".join(where) if where else "")
    rows = db.query(sql + " ORDER BY s.started_at DESC LIMIT ? OFFSET ?", (*params, limit, offset))
    out = []
    for r in rows:
        d = dict(r)
        d["set_points"] = json.loads(d["set_points"])
        out.append(d)
    return out


def devices_calibrated_against(db: Database, reference_id: str) -> list[dict[str, Any]]:
    """Reverse traceability: every DUT of every completed session that used this reference. When a
    reference's certificate turns out wrong, these are the devices (and their shipments) to re-assess."""
    rows = db.query(
        "SELECT d.device_id, s.id AS session_id, s.kind, s.completed_at, s.u_ref_c, s.state"
        " FROM calibration_session_duts d JOIN calibration_sessions s ON s.id = d.session_id"
        " WHERE s.reference_id = ? AND s.state = 'completed' ORDER BY s.completed_at, d.device_id",
        (reference_id,))
    out = []
    for r in rows:
        res = session_results(db, r["session_id"], r["device_id"])
        out.append({**dict(r), "overall": res[0]["overall"] if res else "no_data",
                    "certificate_ref": certificate_ref(r["session_id"], r["device_id"])})
    return out


def history_arrays(db: Database | sqlite3.Connection, device_id: str
                   ) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As-found history of one device as (set points, T, E, U_last, MPE_last) ready for ``fit_drift``."""
    rows = _conn(db).execute("SELECT set_point_c, ts, error_c, expanded_u_c, mpe_c FROM calibration_history"
                             " WHERE device_id = ? ORDER BY set_point_c, ts", (device_id,)).fetchall()
    by_sp: dict[float, list[sqlite3.Row]] = {}
    for r in rows:
        by_sp.setdefault(float(r[0]), []).append(r)
    sps = sorted(by_sp)
    T, E = drift_maths.pad_histories([([r[1] for r in by_sp[sp]], [r[2] for r in by_sp[sp]]) for sp in sps])
    U = np.array([by_sp[sp][-1][3] for sp in sps], dtype=np.float64)
    M = np.array([by_sp[sp][-1][4] for sp in sps], dtype=np.float64)
    return sps, T, E, U, M


def device_drift(db: Database, device_id: str, *, next_due_ms: int | None = None,
                 max_rate_c_per_year: float = drift_maths.DEFAULT_MAX_RATE_C_PER_YEAR) -> list[dict[str, Any]]:
    """Long-term drift per set point from the as-found history."""
    sps, T, E, U, M = history_arrays(db, device_id)
    if not sps:
        return []
    if next_due_ms is None:
        st = device_calibration(db, device_id) or {}
        next_due_ms = st.get("due_at")
    fit = drift_maths.fit_drift(T, E, U_c=U, mpe_c=M)
    due = np.nan if next_due_ms is None else float(next_due_ms)
    before_due, fast = drift_maths.drift_flags(fit, due, max_rate_c_per_year=max_rate_c_per_year)
    out = []
    for k, sp in enumerate(sps):
        n = int(fit.n[k])
        pred = _num(fit.predicted_oot_ms[k])
        tstat = fit.t_stat[k]
        out.append({"set_point_c": sp, "n": n,
                    "history": [{"ts": int(T[k, j]), "error_c": float(E[k, j])} for j in range(n)],
                    "slope_c_per_year": _num(fit.slope_c_per_year[k]),
                    "slope_se_c_per_year": _num(fit.slope_se_c_per_day[k] * drift_maths.YEAR_DAYS),
                    "t_stat": None if np.isnan(tstat) or np.isinf(tstat) else float(tstat),
                    "U_c": float(U[k]), "mpe_c": float(M[k]),
                    "predicted_out_of_tolerance_ms": None if pred is None else int(pred),
                    "next_due_ms": next_due_ms,
                    "drift": bool(before_due[k] or fast[k]),
                    "reason": "before_due" if before_due[k] else ("fast" if fast[k] else None)})
    return out


def certificate_data(db: Database, session_id: str, device_id: str, issued_at_ms: int | None = None, *,
                     lab: dict[str, str] | None = None) -> CertificateData:
    """What the certificate of one device under test states, from the records as they are now (a draft until
    issued: ``coldtrace.services.certificate_issue`` freezes it with its revision and signatures)."""
    s = session_row(db, session_id)
    dut = db.query_one("SELECT resolution_c FROM calibration_session_duts WHERE session_id = ? AND device_id = ?",
                       (session_id, device_id))
    if dut is None:
        raise NotFound(f"{device_id} is not a device under test of session {session_id}")
    results = session_results(db, session_id, device_id)
    by_idx = {r["point_index"]: r for r in results}
    pts = []
    for i, sp in enumerate(json.loads(s["set_points"])):
        r = by_idx.get(i)
        if r is None:
            pts.append(CertificatePoint(float(sp), 0, None, None, None, None, None, "not_measured"))
        else:
            pts.append(CertificatePoint(float(sp), r["n"], r["ref_mean_c"], r["dut_mean_c"], r["error_c"], r["s_c"],
                                        r["expanded_u_c"], r["decision"]))
    ref = device_calibration(db, s["reference_id"]) or {}
    dev = device_calibration(db, device_id) or {}
    overall = cal.overall_decision([p.decision for p in pts]) if s["state"] == "completed" else s["state"]
    keys = s.keys()
    lab = lab or {}
    performed = db.query_one("SELECT printed_name, signer_username, signed_at, meaning FROM calibration_signatures"
                             " WHERE session_id = ? AND role = 'performed'", (session_id,))
    return CertificateData(
        certificate_ref(session_id, device_id), session_id, device_id, s["kind"], s["rule"], s["mpe_c"],
        issued_at_ms, s["started_at"], s["completed_at"], s["reference_id"], s["u_ref_c"],
        ref.get("certificate_ref"), ref.get("traceability"), dut["resolution_c"], s["u_medium_c"], overall,
        tuple(pts),
        lab_name=lab.get("name"), lab_address=lab.get("address"),
        customer=(s["customer"] if "customer" in keys else None) or lab.get("customer"),
        location=(s["location"] if "location" in keys else None) or lab.get("location"),
        ambient_c=s["ambient_c"] if "ambient_c" in keys else None,
        ambient_rh_pct=s["ambient_rh_pct"] if "ambient_rh_pct" in keys else None,
        dut_make=dev.get("make"), dut_model=dev.get("model"), dut_serial=dev.get("serial_number"),
        reference_lab=ref.get("calibrated_by"), reference_due_ms=ref.get("due_at"),
        reference_make=ref.get("make"), reference_model=ref.get("model"), reference_serial=ref.get("serial_number"),
        next_due_ms=dev.get("due_at") if dev.get("certificate_ref") == certificate_ref(session_id, device_id)
        else None, interval_days=dev.get("interval_days"),
        performed_by=None if performed is None else {
            "printed_name": performed["printed_name"], "username": performed["signer_username"],
            "signed_at": performed["signed_at"], "meaning": performed["meaning"]})

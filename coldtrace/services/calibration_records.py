"""Calibration records: device calibration state, sessions, results, history, drift, certificates.

The read side of calibration (what the API and the certificate show) kept apart from the session engine in
``calibration_service`` so each stays small. Functions take a ``Database`` or a connection (inside a
caller's transaction); the rows come from ``coldtrace.store.calibration``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from coldtrace.adapters.certificate import CertificateData, CertificatePoint
from coldtrace.core import calibration as cal
from coldtrace.core import calibration_drift as drift_maths
from coldtrace.core.errors import Conflict, NotFound
from coldtrace.store import calibration as store
from coldtrace.store.calibration import DEVICE_FIELDS, DeviceCalibration, SessionRow
from coldtrace.store.db import Database

__all__ = ["DEVICE_FIELDS", "certificate_ref", "session_row", "device_calibration", "upsert_device_calibration",
           "session_detail", "session_results", "list_sessions", "devices_calibrated_against", "history_arrays",
           "device_drift", "certificate_data", "set_session_conditions", "delete_session", "import_history",
           "known_devices"]

DbOrConn = Any  # a Database (either dialect), or a connection inside the caller's transaction


def certificate_ref(session_id: str, device_id: str) -> str:
    return f"CT-{session_id}-{device_id}"


def session_row(db: DbOrConn, session_id: str) -> SessionRow:
    """The session's row; NotFound (404) when there is none."""
    return store.get_session(db, session_id)


def device_calibration(db: DbOrConn, device_id: str) -> DeviceCalibration | None:
    return store.device_calibration(db, device_id)


def upsert_device_calibration(c: Any, device_id: str, now: int, **fields: Any) -> None:
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
    store.save_device_calibration(c, device_id, merged, now)


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def session_detail(db: Database, session_id: str) -> dict[str, Any]:
    s: dict[str, Any] = dict(session_row(db, session_id))
    s["set_points"] = json.loads(s["set_points"])
    s["duts"] = store.session_duts(db, session_id)
    s["points"] = store.points(db, session_id)
    s["results"] = session_results(db, session_id)
    return s


def session_results(db: DbOrConn, session_id: str, device_id: str | None = None) -> list[dict[str, Any]]:
    """The results by device and set point, each with its device's ``overall`` decision."""
    rows: list[Any] = store.results(db, session_id, device_id)
    decisions: dict[str, list[str]] = {}
    for r in rows:
        decisions.setdefault(r["device_id"], []).append(r["decision"])
    for r in rows:
        r["overall"] = cal.overall_decision(decisions[r["device_id"]])
    return rows


def list_sessions(db: Database, *, reference_id: str | None = None, device_id: str | None = None,
                  state: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    out = []
    for r in store.list_sessions(db, reference_id=reference_id, device_id=device_id, state=state, limit=limit,
                                 offset=offset):
        d: dict[str, Any] = dict(r)
        d["set_points"] = json.loads(d["set_points"])
        out.append(d)
    return out


def devices_calibrated_against(db: Database, reference_id: str) -> list[dict[str, Any]]:
    """Reverse traceability: every DUT of every completed session that used this reference. When a
    reference's certificate turns out wrong, these are the devices (and their shipments) to re-assess."""
    out = []
    for r in store.sessions_with_reference(db, reference_id):
        res = session_results(db, r["session_id"], r["device_id"])
        out.append({**dict(r), "overall": res[0]["overall"] if res else "no_data",
                    "certificate_ref": certificate_ref(r["session_id"], r["device_id"])})
    return out


def history_arrays(db: DbOrConn, device_id: str
                   ) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As-found history of one device as (set points, T, E, U_last, MPE_last) ready for ``fit_drift``."""
    by_sp: dict[float, list[store.HistoryRow]] = {}
    for r in store.history(db, device_id):
        by_sp.setdefault(float(r["set_point_c"]), []).append(r)
    sps = sorted(by_sp)
    T, E = drift_maths.pad_histories([([r["ts"] for r in by_sp[sp]], [r["error_c"] for r in by_sp[sp]])
                                      for sp in sps])
    U = np.array([by_sp[sp][-1]["expanded_u_c"] for sp in sps], dtype=np.float64)
    M = np.array([by_sp[sp][-1]["mpe_c"] for sp in sps], dtype=np.float64)
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
    dut = store.session_dut(db, session_id, device_id)
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
    performed = store.performed_signature(db, session_id)
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


# ---------------------------------------------------------------- edits of the records (the API's writes)

def set_session_conditions(c: Any, session_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Set some of a session's customer, location, ambient_c, ambient_rh_pct; returns their old values."""
    old = session_row(c, session_id)
    store.update_session_conditions(c, session_id, fields)
    return {k: old.get(k) for k in fields}  # type: ignore[misc]


def delete_session(c: Any, session_id: str) -> None:
    """Delete a session that captured nothing (Conflict when it has: cancel it instead, records are kept)."""
    session_row(c, session_id)
    if store.has_points(c, session_id):
        raise Conflict(f"session {session_id} has captured set points; cancel it instead (records are kept)")
    store.delete_session(c, session_id)


def import_history(c: Any, device_id: str, *, set_point_c: float, ts: int, error_c: float, expanded_u_c: float,
                   mpe_c: float, certificate_ref: str) -> None:
    """A past as-found result from an external certificate into the drift history (replaces the same point)."""
    store.save_history(c, device_id, set_point_c, ts, error_c=error_c, expanded_u_c=expanded_u_c, mpe_c=mpe_c,
                       source=f"import:{certificate_ref}")


def known_devices(db: DbOrConn) -> list[tuple[str, DeviceCalibration | None]]:
    """Every device ColdTrace knows (registered, heard from, or with a calibration record) by id, with its
    calibration state (None: no record)."""
    states = store.device_calibrations(db)
    return [(dev, states.get(dev)) for dev in store.calibration_device_ids(db)]

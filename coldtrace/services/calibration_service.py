"""Calibration sessions followed on live readings (the stateful edge around ``coldtrace.core.calibration``).

A session is advanced from the *stored* readings of its reference and DUTs, never from messages in
flight: ``advance`` looks for the next set point's stable window, runs the live EWMA on the captured pairs,
and evaluates the set point once its capture window is complete. Working from the store makes a session a
pure function of its readings (a restart, a redelivery or late data give the same result) and lets the bench
run in accelerated simulated time. ``tick(now_ms)`` advances every running session, raises
``calibration.due`` and re-judges predicted drift once a day (``calibration.drift_predicted``); the service or
CLI loop calls it next to ``Pipeline.tick``.

Alerts go through ``Pipeline.emit`` in the transaction that records their cause.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coldtrace.core import calibration as cal
from coldtrace.core import calibration_drift as drift_maths
from coldtrace.core.clock import Clock, to_iso
from coldtrace.core.errors import ColdTraceError, Conflict
from coldtrace.core.model import DAY, MINUTE, Alert, stable_id
from coldtrace.ports import ReadingStore
from coldtrace.services.calibration_records import (
    certificate_ref,
    device_calibration,
    history_arrays,
    session_row,
    upsert_device_calibration,
)
from coldtrace.services.device_roles import leave_bench
from coldtrace.services.pipeline import Pipeline
from coldtrace.store import calibration as store
from coldtrace.store.calibration import Dut, PointRow, SessionRow
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_DAYS = 365.0
DEFAULT_RESOLUTION_C = 0.01
CAPTURE_GRACE_MS = 5 * MINUTE  # after capture end + this, missing DUT data stays missing
DRIFT_REJUDGE_MS = DAY  # the clock tick re-judges each device's predicted drift this often
BENCH_TAIL_MS = 60 * MINUTE  # after a session's last capture its devices may stay in the bath this long
DRIFT_PREDICTED = "calibration.drift_predicted"
EXPIRED_STATES = ("expired", "failed")


@dataclass(frozen=True, slots=True)
class SessionSpec:
    reference_id: str
    duts: dict[str, float | None]  # device id -> resolution °C (None: the device's own, else 0.01)
    set_points: tuple[float, ...]
    mpe_c: float
    rule: str = "guarded"
    kind: str = "as_found"
    capture_ms: int = 10 * MINUTE
    tolerance_c: float = 1.0
    u_medium_c: float = 0.0
    u_ref_c: float | None = None  # None: the reference's expanded uncertainty from its calibration state
    start_ms: int | None = None  # None: now
    created_by: str | None = None
    notes: str | None = None
    id: str | None = None


@dataclass(slots=True)
class TickReport:
    alerts: int = 0
    points: int = 0
    completed: list[str] = field(default_factory=list)


class CalibrationService:
    def __init__(self, db: Database, readings: ReadingStore, pipeline: Pipeline, clock: Clock, *,
                 interval_days: float = DEFAULT_INTERVAL_DAYS,
                 max_drift_c_per_year: float = drift_maths.DEFAULT_MAX_RATE_C_PER_YEAR) -> None:
        self.db, self.readings, self.pipeline, self.clock = db, readings, pipeline, clock
        self.interval_days = interval_days
        self.max_drift_c_per_year = max_drift_c_per_year
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- sessions
    def create_session(self, spec: SessionSpec) -> str:
        if spec.rule not in cal.RULES:
            raise ValueError(f"rule must be one of {cal.RULES}")
        if spec.kind not in ("as_found", "as_left"):
            raise ValueError("kind must be as_found or as_left")
        if not spec.set_points or not spec.duts or spec.mpe_c <= 0 or spec.capture_ms < MINUTE:
            raise ValueError("a session needs set points, devices under test, MPE > 0 and a capture >= 1 min")
        if spec.reference_id in spec.duts:
            raise ValueError("the reference cannot also be a device under test")
        now = self.clock.now_ms()
        u_ref = spec.u_ref_c
        if u_ref is None:
            ref = device_calibration(self.db, spec.reference_id)
            u_ref = None if ref is None else ref["expanded_uncertainty_c"]
            if u_ref is None:
                raise ValueError(f"reference {spec.reference_id} has no expanded uncertainty on record;"
                                 " set it (device calibration state) or give u_ref_c")
        sid = spec.id or "cal_" + secrets.token_hex(8)
        start = now if spec.start_ms is None else spec.start_ms
        with self.db.write() as c:
            if store.session_exists(c, sid):
                raise Conflict(f"calibration session {sid} exists")
            duts = []
            for dev, res in spec.duts.items():
                if res is None:
                    st = device_calibration(c, dev)
                    res = (st or {}).get("resolution_c") or DEFAULT_RESOLUTION_C
                duts.append((dev, float(res)))
            store.insert_session(c, {
                "id": sid, "reference_id": spec.reference_id,
                "set_points": json.dumps([float(x) for x in spec.set_points]), "mpe_c": spec.mpe_c,
                "rule": spec.rule, "kind": spec.kind, "capture_ms": spec.capture_ms, "tolerance_c": spec.tolerance_c,
                "u_medium_c": spec.u_medium_c, "u_ref_c": float(u_ref), "cursor_ms": start, "started_at": start,
                "created_at": now, "created_by": spec.created_by, "notes": spec.notes}, duts)
        log.info("calibration session %s: reference %s, %d DUTs, set points %s", sid, spec.reference_id,
                 len(spec.duts), list(spec.set_points))
        return sid

    def cancel_session(self, session_id: str) -> None:
        with self._lock, self.db.write() as c:
            s = session_row(c, session_id)
            if s["state"] != "running":
                raise Conflict(f"session {session_id} is {s['state']}")
            store.finish_session(c, session_id, "cancelled", self.clock.now_ms())
            self._leave_bench(c, s)

    # ---------------------------------------------------------------- following live readings
    def tick(self, now_ms: int | None = None) -> TickReport:
        """Advance every running session as far as the stored readings allow; raise due alerts."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        rep = TickReport()
        for sid in store.running_session_ids(self.db):
            try:
                r = self.advance(sid, now)
            except ColdTraceError as exc:  # one broken session must not stop the others
                log.error("calibration session %s could not advance: %s", sid, exc)
                continue
            rep.alerts += r.alerts
            rep.points += r.points
            rep.completed += r.completed
        rep.alerts += self.raise_due_alerts(now)
        rep.alerts += self.judge_drift(now)
        return rep

    def advance(self, session_id: str, now_ms: int) -> TickReport:
        rep = TickReport()
        with self._lock:
            while True:
                s = session_row(self.db, session_id)
                if s["state"] != "running":
                    return rep
                set_points = json.loads(s["set_points"])
                idx = s["point_index"]
                if idx >= len(set_points):
                    rep.alerts += self._complete(s, now_ms)
                    rep.completed.append(session_id)
                    return rep
                point = store.point(self.db, session_id, idx)
                if point is None:
                    point = self._seek_stable(s, idx, float(set_points[idx]))
                    if point is None:
                        return rep
                n_alerts, done = self._follow_capture(s, point, now_ms)
                rep.alerts += n_alerts
                if not done:
                    return rep
                rep.points += 1

    def _duts(self, session_id: str) -> list[Dut]:
        return store.session_duts(self.db, session_id)

    def _seek_stable(self, s: SessionRow, idx: int, set_point: float) -> PointRow | None:
        crit = cal.StabilityCriteria(set_point_tolerance_c=s["tolerance_c"])
        cursor = s["cursor_ms"]
        rt, rc = self.readings.arrays(s["reference_id"], cursor - crit.window_ms, None)
        w = cal.find_stable(rt, rc, set_point, after_ms=cursor + crit.window_ms, criteria=crit)
        if w is None:
            return None
        capture_end = w.stable_at_ms + s["capture_ms"]
        with self.db.write() as c:
            store.add_point(c, s["id"], idx, set_point, stable_from=w.start_ms, stable_at=w.stable_at_ms,
                            capture_end=capture_end, ref_mean_c=w.mean_c, ref_std_c=w.std_c,
                            ref_slope_c_per_min=w.slope_c_per_min)
            # live EWMA baselines: the DUTs' paired errors over the stable window
            for d in self._duts(s["id"]):
                dt, dc = self.readings.arrays(d["device_id"], w.start_ms, w.stable_at_ms + 1)
                p = cal.pair(dt, dc, rt, rc, start_ms=w.start_ms, end_ms=w.stable_at_ms)
                if len(p) < 2:
                    continue
                chart = cal.ewma_baseline(p.diff, resolution_c=d["resolution_c"])
                store.add_ewma(c, s["id"], d["device_id"], idx, mu0=chart.mu0, sigma=chart.sigma, n0=chart.n0,
                               last_ts=w.stable_at_ms)
        log.info("session %s: set point %g stable at %d (std %.4f, slope %.4f/min)", s["id"], set_point,
                 w.stable_at_ms, w.std_c, w.slope_c_per_min)
        return store.point(self.db, s["id"], idx)

    def _follow_capture(self, s: SessionRow, point: PointRow, now_ms: int) -> tuple[int, bool]:
        """Feed new captured pairs to the live charts; evaluate the set point when its capture is complete."""
        start, end = point["stable_at"], point["capture_end"]
        margin = cal.PAIR_MAX_DISTANCE_MS
        rt, rc = self.readings.arrays(s["reference_id"], start - margin, end + margin + 1)
        duts = self._duts(s["id"])
        series = {d["device_id"]: self.readings.arrays(d["device_id"], start, end + 1) for d in duts}
        ref_done = rt.size > 0 and rt[-1] >= end
        complete = now_ms >= end + CAPTURE_GRACE_MS or (
            ref_done and all(t.size and t[-1] >= end - margin for t, _ in series.values()))
        alerts: list[Alert] = []
        with self.db.write() as c:
            for d in duts:
                dev = d["device_id"]
                p = cal.pair(*series[dev], rt, rc, start_ms=start, end_ms=end)
                alerts += self._live_drift(c, s, point, dev, d["resolution_c"], p)
                if complete:
                    r = cal.evaluate_pairs(p.dut, p.ref, mpe_c=s["mpe_c"], u_ref_expanded_c=s["u_ref_c"],
                                           resolution_c=d["resolution_c"], u_medium_c=s["u_medium_c"],
                                           rule=s["rule"])
                    self._store_result(c, s, point, dev, r, now_ms)
            if complete:
                store.mark_point_evaluated(c, s["id"], point["point_index"])
                store.next_set_point(c, s["id"], end)
            n = self.pipeline.emit(c, alerts, now_ms) if alerts else 0
        if n:
            self.pipeline.alerts_emitted.set()
        return n, complete

    def _live_drift(self, c: Any, s: SessionRow, point: PointRow, dev: str,
                    resolution: float, p: cal.Pairs) -> list[Alert]:
        row = store.ewma(c, s["id"], dev, point["point_index"])
        if row is None:
            return []
        new = p.ts > row["last_ts"]
        if not new.any():
            return []
        chart = cal.EwmaChart(row["mu0"], row["sigma"], n0=row["n0"])
        # U expected at this set point: the reference, the baseline's repeatability, resolution, medium
        u = cal.standard_uncertainty(row["sigma"], max(len(p), 2), u_ref_expanded_c=s["u_ref_c"],
                                     resolution_c=resolution, u_medium_c=s["u_medium_c"])
        U = 2.0 * float(u)
        run = cal.ewma_run(chart, p.diff[new], U_c=U, mpe_c=s["mpe_c"],
                           state=cal.EwmaState(row["z"], row["i"]))
        first = run.first_drift_index()
        drift_at = row["drift_at"]
        out: list[Alert] = []
        if first is not None and drift_at is None:
            drift_at = int(p.ts[new][first])
            reason = "over_mpe" if run.over_mpe[first] else "out_of_limits"
            out.append(Alert(stable_id("cal", "drift", "live", s["id"], dev, point["point_index"]),
                             "calibration.drift", "warning", dev, drift_at, {
                                 "kind": "live", "session_id": s["id"], "reference_id": s["reference_id"],
                                 "set_point_c": point["set_point_c"], "reason": reason,
                                 "ewma_c": round(float(run.z[first]), 4), "lcl_c": round(float(run.lcl[first]), 4),
                                 "ucl_c": round(float(run.ucl[first]), 4), "U_c": round(U, 4),
                                 "mpe_c": s["mpe_c"]}))
        store.update_ewma(c, s["id"], dev, point["point_index"], z=run.state.z, i=run.state.i,
                          last_ts=int(p.ts[new][-1]), drift_at=drift_at)
        return out

    def _store_result(self, c: Any, s: SessionRow, point: PointRow, dev: str,
                      r: cal.PointResult, now: int) -> None:
        nan = lambda v: None if v is None or np.isnan(v) else float(v)  # noqa: E731
        store.save_result(c, {
            "session_id": s["id"], "device_id": dev, "point_index": point["point_index"],
            "set_point_c": point["set_point_c"], "n": r.n, "error_c": nan(r.error_c), "s_c": nan(r.s_c),
            "u_c": nan(r.u_c), "expanded_u_c": nan(r.U_c), "decision": r.decision, "zone": r.zone,
            "ref_mean_c": nan(r.ref_mean_c), "dut_mean_c": nan(r.dut_mean_c), "capture_from": point["stable_at"],
            "capture_to": point["capture_end"], "created_at": now})
        if s["kind"] == "as_found" and r.decision != "no_data":
            store.save_history(c, dev, point["set_point_c"], point["capture_end"], error_c=r.error_c,
                               expanded_u_c=r.U_c, mpe_c=s["mpe_c"], source=s["id"])

    # ---------------------------------------------------------------- completion
    def _complete(self, s: SessionRow, now: int) -> int:
        sid = s["id"]
        completed_at = store.last_capture_end(self.db, sid) or now
        alerts: list[Alert] = []
        with self.db.write() as c:
            for d in self._duts(sid):
                dev = d["device_id"]
                decisions = [r["decision"] for r in store.results(c, sid, dev)]
                overall = cal.overall_decision(decisions)
                state = device_calibration(c, dev) or {}
                interval = state.get("interval_days") or self.interval_days
                due = cal.due_date(completed_at, interval)
                upsert_device_calibration(c, dev, now, last_calibrated_at=completed_at, interval_days=interval,
                                          due_at=due, status="valid" if overall == "pass" else overall,
                                          certificate_ref=certificate_ref(sid, dev), due_alerted=None,
                                          resolution_c=state.get("resolution_c") or d["resolution_c"])
                if overall != "pass":
                    alerts.append(Alert(stable_id("cal", "failed", sid, dev), "calibration.failed",
                                        "alarm" if overall == "fail" else "warning", dev, completed_at,
                                        {"session_id": sid, "decision": overall, "kind": s["kind"],
                                         "reference_id": s["reference_id"],
                                         "certificate_ref": certificate_ref(sid, dev)}))
                if s["kind"] == "as_found":
                    alerts += self._long_term_alerts(c, dev, due, sid, completed_at)
                alerts += self._judge_drift(c, dev, now)  # new history and a new due date
            store.finish_session(c, sid, "completed", completed_at)
            self._leave_bench(c, s, completed_at + BENCH_TAIL_MS)
            n = self.pipeline.emit(c, alerts, now) if alerts else 0
        if n:
            self.pipeline.alerts_emitted.set()
        log.info("calibration session %s completed (%d alerts)", sid, n)
        return n

    @staticmethod
    def _leave_bench(c: Any, s: SessionRow, bench_until_ms: int | None = None) -> None:
        """The session's devices judged as bench devices only because of it are judged by profile again from
        their next reading after ``bench_until_ms`` (device_roles.py); their bench readings never are."""
        duts = [d["device_id"] for d in store.session_duts(c, s["id"])]
        leave_bench(c, [s["reference_id"], *duts], bench_until_ms)

    def _long_term_alerts(self, c: Any, dev: str, next_due: int, sid: str, ts: int) -> list[Alert]:
        sps, T, E, U, M = history_arrays(c, dev)
        if not sps:
            return []
        fit = cal.fit_drift(T, E, U_c=U, mpe_c=M)
        before_due, fast = cal.drift_flags(fit, next_due, max_rate_c_per_year=self.max_drift_c_per_year)
        out = []
        for k, sp in enumerate(sps):
            # before the due date: calibration.drift_predicted says so (judge_drift); here only a slope that is
            # significant and too fast while the line stays inside the tolerance until the due date
            if fast[k] and not before_due[k]:
                pred = fit.predicted_oot_ms[k]
                out.append(Alert(stable_id("cal", "drift", "long", dev, sp, sid), "calibration.drift", "warning",
                                 dev, ts, {"kind": "long_term", "set_point_c": sp, "session_id": sid,
                                           "slope_c_per_year": round(float(fit.slope_c_per_year[k]), 4),
                                           "t_stat": None if np.isnan(fit.t_stat[k]) else float(fit.t_stat[k]),
                                           "predicted_out_of_tolerance_ms": None if np.isnan(pred) else int(pred),
                                           "next_due_ms": next_due, "reason": "fast"}))
        return out

    # ---------------------------------------------------------------- predicted drift
    def judge_drift(self, now_ms: int, device_ids: list[str] | None = None) -> int:
        """Re-judge predicted drift: of ``device_ids`` (history added, due date changed), else of every device
        with a due date not judged for a day. Raises ``calibration.drift_predicted`` (warning) when the
        long-term regression predicts out-of-tolerance before the due date; returns the new alerts."""
        if device_ids is None:
            device_ids = store.devices_to_rejudge(self.db, now_ms - DRIFT_REJUDGE_MS)
        if not device_ids:
            return 0
        with self._lock, self.db.write() as c:
            alerts = [a for dev in device_ids for a in self._judge_drift(c, dev, now_ms)]
            n = self.pipeline.emit(c, alerts, now_ms) if alerts else 0
        if n:
            self.pipeline.alerts_emitted.set()
        return n

    def _judge_drift(self, c: Any, dev: str, now_ms: int) -> list[Alert]:
        st = device_calibration(c, dev)
        if st is None:
            return []
        due = st["due_at"]
        pred = drift_prediction(c, dev, due) if due is not None else None
        store.set_drift_judgement(c, dev, None if pred is None else pred["predicted_out_of_tolerance_ms"], now_ms)
        if pred is None:
            return []
        # one alert per device and due date (calibration cycle): re-judging the same finding raises nothing new
        return [Alert(stable_id("cal", "drift_predicted", dev, due), DRIFT_PREDICTED, "warning", dev, now_ms,
                      {**pred, "due_at_ms": due, "last_calibrated_at": st["last_calibrated_at"]})]

    # ---------------------------------------------------------------- due dates
    def raise_due_alerts(self, now_ms: int) -> int:
        rows = store.due_within(self.db, now_ms, max(drift_maths.DUE_WARNINGS_DAYS) * 86_400_000)
        alerts, marks = [], []
        for r in rows:
            stage = cal.due_stage(r["due_at"], now_ms)
            if stage is None or stage == r["due_alerted"]:
                continue
            sev = {"expired": "alarm", "due_30": "warning"}.get(stage, "info")
            alerts.append(Alert(stable_id("cal", "due", r["device_id"], r["due_at"], stage), "calibration.due", sev,
                                r["device_id"], now_ms, {"stage": stage, "due_at_ms": r["due_at"]}))
            marks.append((stage, r["device_id"]))
        if not alerts:
            return 0
        with self.db.write() as c:
            store.mark_due_alerted(c, marks)
            n = self.pipeline.emit(c, alerts, now_ms)
        if n:
            self.pipeline.alerts_emitted.set()
        return n


def drift_prediction(db: Any, device_id: str, due_ms: int,
                     ) -> dict[str, Any] | None:
    """The earliest set point whose drift line reaches |e| + U >= MPE before ``due_ms``, or None."""
    sps, T, E, U, M = history_arrays(db, device_id)
    if not sps:
        return None
    fit = cal.fit_drift(T, E, U_c=U, mpe_c=M)
    before_due, _ = cal.drift_flags(fit, due_ms)
    hits = [k for k in range(len(sps)) if before_due[k]]
    if not hits:
        return None
    k = min(hits, key=lambda i: fit.predicted_oot_ms[i])
    t = fit.t_stat[k]
    return {"set_point_c": sps[k], "predicted_out_of_tolerance_ms": int(fit.predicted_oot_ms[k]),
            "slope_c_per_year": round(float(fit.slope_c_per_year[k]), 4), "n": int(fit.n[k]),
            "t_stat": None if np.isnan(t) or np.isinf(t) else round(float(t), 3),
            "U_c": float(U[k]), "mpe_c": float(M[k]),
            "set_points_predicted": [sps[i] for i in hits]}


def for_services(services: Any) -> CalibrationService:
    """The process's one CalibrationService, kept in ``Services.extras["calibration"]`` so the clock tick
    (``for_services(services).tick(now)``) and the API share its lock."""
    svc = services.extras.get("calibration")
    if svc is None:
        svc = services.extras.setdefault("calibration", CalibrationService(
            services.db, services.readings, services.pipeline, services.clock))
    return svc


def calibration_status(db: Database, device_id: str, now_ms: int) -> dict[str, Any]:
    """What shipments and reports need: may this logger be used, and from when are its readings
    uncalibrated. ``status``: valid | due_soon (within 30 days) | expired | failed | unknown.

    A last calibration that was not a pass (fail, or indeterminate under ILAC-G8) reports ``failed``: conformity
    was not demonstrated, so the logger is refused like an expired one until an as-left calibration passes.
    ``drift_predicted_ms``: the long-term regression predicts out-of-tolerance at that date, before the due date
    (the device stays usable: ``summary`` reads "valid, drift predicted YYYY-MM-DD").
    """
    return status_of(device_calibration(db, device_id), device_id, now_ms)


def status_of(st: dict[str, Any] | None, device_id: str, now_ms: int) -> dict[str, Any]:
    """``calibration_status`` of a device_calibration row already read (None: no record)."""
    if st is None or st["last_calibrated_at"] is None:
        return {"status": "unknown", "device_id": device_id, "usable": True, "uncalibrated_from": None,
                "summary": "no calibration on record"}
    due = st["due_at"]
    base = {"device_id": device_id, "last_calibrated_at": st["last_calibrated_at"], "due_at": due,
            "certificate_ref": st["certificate_ref"], "calibrated_by": st.get("calibrated_by"),
            "decision": st["status"]}
    if st["status"] != "valid":
        return {**base, "status": "failed", "usable": False, "uncalibrated_from": st["last_calibrated_at"],
                "reason": f"last calibration {st['status']} ({st['certificate_ref']})",
                "summary": f"failed ({st['status']})"}
    drift = st.get("drift_predicted_ms")
    base["drift_predicted_ms"] = drift
    stage = cal.due_stage(due, now_ms)
    if stage == "expired":
        return {**base, "status": "expired", "usable": False, "uncalibrated_from": due,
                "reason": "calibration expired", "summary": "expired"}
    status = "due_soon" if stage == "due_30" else "valid"
    summary = status.replace("_", " ")
    if drift is not None:  # still valid, but the drift line leaves the tolerance before the due date
        summary += f", drift predicted {to_iso(drift)[:10]}"
    return {**base, "status": status, "usable": True, "uncalibrated_from": due, "summary": summary}

"""The session engine on a real SQLite file: a session is a function of its stored readings, whatever the
ticks, restarts and message boundaries; long-term drift from history raises calibration.drift."""

from __future__ import annotations

import json

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import DAY, MINUTE, Batch, Reading
from coldtrace.services.calibration_records import certificate_data, device_drift, session_detail
from coldtrace.services.calibration_service import CalibrationService, SessionSpec, calibration_status
from coldtrace.services.pipeline import Pipeline
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore
from firmware_sim.bench import BenchSpec, bench_series

START = 1_795_687_200_000


@pytest.fixture
def env(tmp_path):
    db = Database(tmp_path / "cal.db", synchronous="OFF")
    store = SqliteReadingStore(db)
    clock = ManualClock(START)
    pipeline = Pipeline(db, store, clock)
    yield db, store, clock, pipeline
    db.close()


def _spec(bench: BenchSpec, sid: str) -> SessionSpec:
    return SessionSpec(bench.reference_id, {lg.device_id: lg.resolution_c for lg in bench.loggers},
                       bench.set_points, 0.5, u_ref_c=bench.reference_U_c, start_ms=START, id=sid)


def _ingest(pipeline: Pipeline, series, lo: int, hi: int) -> None:
    batches = []
    for dev, (ts, temp) in series.items():
        sel = (ts >= lo) & (ts < hi)
        if sel.any():
            batches.append(Batch(dev, tuple(Reading(dev, int(a), float(b)) for a, b in zip(ts[sel], temp[sel],
                                                                                           strict=True))))
    pipeline.ingest_batches(batches)


def _outcome(db, sid):
    s = session_detail(db, sid)
    res = [(r["device_id"], r["set_point_c"], r["n"], round(r["error_c"], 9), round(r["expanded_u_c"], 9),
            r["decision"]) for r in s["results"]]
    alerts = sorted((r[0], r[1], r[2]) for r in db.query(
        "SELECT type, device_id, data FROM alerts WHERE type LIKE 'calibration.%'"))
    return [(p["set_point_c"], p["stable_at"]) for p in s["points"]], res, alerts


def test_ticking_along_with_live_data_and_restarting_gives_the_batch_result(env, tmp_path):
    db, store, clock, pipeline = env
    bench = BenchSpec()
    series = bench_series(bench, START)
    end = START + bench.duration_ms
    # batch: everything stored, one tick
    _ingest(pipeline, series, START, end + 1)
    svc = CalibrationService(db, store, pipeline, clock)
    svc.create_session(_spec(bench, "batch"))
    clock.set(end + MINUTE)
    svc.tick()
    batch = _outcome(db, "batch")

    # live: a fresh database fed 5 minutes at a time, a tick after each, a new service (restart) every hour
    db2 = Database(tmp_path / "live.db", synchronous="OFF")
    try:
        store2, clock2 = SqliteReadingStore(db2), ManualClock(START)
        pipe2 = Pipeline(db2, store2, clock2)
        svc2 = CalibrationService(db2, store2, pipe2, clock2)
        svc2.create_session(_spec(bench, "batch"))
        seen_states = set()
        for lo in range(START, end + 1, 5 * MINUTE):
            _ingest(pipe2, series, lo, lo + 5 * MINUTE)
            clock2.set(lo + 5 * MINUTE)
            if (lo - START) % (60 * MINUTE) == 0:
                svc2 = CalibrationService(db2, store2, pipe2, clock2)
            svc2.tick()
            seen_states.add(session_detail(db2, "batch")["point_index"])
        svc2.tick(end + 10 * MINUTE)
        assert _outcome(db2, "batch")[:2] == batch[:2]
        # the live run alerts on the drifting logger like the batch run (the same alert ids, once each)
        assert {a[1] for a in _outcome(db2, "batch")[2] if a[0] == "calibration.drift"} == {"BENCH-LOG-3"}
        assert seen_states == {0, 1, 2, 3}  # it really progressed set point by set point
    finally:
        db2.close()
    assert [p[0] for p in batch[0]] == [-20.0, 5.0, 25.0]
    # ticking again changes nothing and raises nothing new
    n_alerts = db.query_one("SELECT COUNT(*) FROM alerts")[0]
    svc.tick(end + 2 * DAY)
    assert db.query_one("SELECT COUNT(*) FROM alerts")[0] == n_alerts
    assert _outcome(db, "batch")[:2] == batch[:2]


def test_long_term_drift_from_history_is_raised_when_the_session_completes(env):
    db, store, clock, pipeline = env
    bench = BenchSpec(loggers=BenchSpec().loggers[:1])  # one sound logger, offset +0.08
    dev = bench.loggers[0].device_id
    # two past as-found results at 5 °C a year apart: -0.12 then -0.02 (+0.1 °C/year); today about +0.08
    with db.write() as c:
        for k, e in enumerate((-0.12, -0.02)):
            c.execute("INSERT INTO calibration_history VALUES (?,?,?,?,?,?,?)",
                      (dev, 5.0, START - (2 - k) * 365 * DAY, e, 0.04, 0.5, "import:OLD-CERT"))
    series = bench_series(bench, START)
    _ingest(pipeline, series, START, START + bench.duration_ms + 1)
    svc = CalibrationService(db, store, pipeline, clock, max_drift_c_per_year=0.05)
    svc.create_session(_spec(bench, "s1"))
    clock.set(START + bench.duration_ms + MINUTE)
    svc.tick()
    rows = db.query("SELECT data FROM alerts WHERE type = 'calibration.drift'")
    data = [json.loads(r[0]) for r in rows]
    long_term = [d for d in data if d["kind"] == "long_term"]
    assert [d["set_point_c"] for d in long_term] == [5.0]
    assert long_term[0]["reason"] == "fast" and long_term[0]["slope_c_per_year"] == pytest.approx(0.1, abs=0.02)
    drift = {d["set_point_c"]: d for d in device_drift(db, dev, max_rate_c_per_year=0.05)}
    assert drift[5.0]["n"] == 3 and drift[-20.0]["n"] == 1 and drift[-20.0]["slope_c_per_year"] is None
    # three points on a line of +0.1 °C/year from -0.12: out at |e| + U >= 0.5, about 5 years after the first
    pred = drift[5.0]["predicted_out_of_tolerance_ms"]
    assert START + 2 * 365 * DAY < pred < START + 5 * 365 * DAY
    # the logger passed: valid for a year from the end of the session; the certificate data says so
    st = calibration_status(db, dev, clock.now_ms())
    assert st["status"] == "valid" and st["usable"] is True
    cert = certificate_data(db, "s1", dev, clock.now_ms())
    assert cert.overall == "pass" and len(cert.points) == 3
    assert all(p.error_c == pytest.approx(0.08, abs=0.02) for p in cert.points)


def test_session_validation(env):
    db, store, clock, pipeline = env
    svc = CalibrationService(db, store, pipeline, clock)
    base = SessionSpec("REF", {"D1": 0.01}, (5.0,), 0.5, u_ref_c=0.03)
    for bad in (SessionSpec("REF", {"D1": 0.01}, (5.0,), 0.5),  # no U_ref known for REF
                SessionSpec("REF", {"REF": 0.01}, (5.0,), 0.5, u_ref_c=0.03),
                SessionSpec("REF", {"D1": 0.01}, (), 0.5, u_ref_c=0.03),
                SessionSpec("REF", {"D1": 0.01}, (5.0,), 0.5, rule="lenient", u_ref_c=0.03)):
        with pytest.raises(ValueError):
            svc.create_session(bad)
    sid = svc.create_session(base)
    svc.cancel_session(sid)
    assert session_detail(db, sid)["state"] == "cancelled"
    assert svc.tick(START + DAY).completed == []

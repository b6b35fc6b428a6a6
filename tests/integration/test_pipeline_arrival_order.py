"""Through the real Pipeline on SQLite: whatever the arrival order, batching, restarts and checkpoints, the
stored excursions equal the batch evaluation of the stored readings, and no alert is raised twice."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldtrace.core import alert_stream, excursions
from coldtrace.core.clock import ManualClock
from coldtrace.core.model import BUILTIN_PROFILES, MINUTE
from coldtrace.services.live_evaluation import CHECKPOINT_EVERY_MS
from coldtrace.services.pipeline import Pipeline
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore
from tests.unit.test_excursions_properties import chunks, profiles
from tests.unit.test_excursions_properties import series as any_series

T0 = 1_795_600_000_000
PROFILE = BUILTIN_PROFILES["2-8C"]


def _payload(dev: str, pairs: list[tuple[int, float]]) -> bytes:
    return json.dumps({"v": 1, "device_id": dev, "readings": [{"ts": t, "temp_c": v} for t, v in pairs]}).encode()


def _series(seed: int, n: int) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    out, t, v = [], T0, 5.0
    for _ in range(n):
        t += rng.choice([5, 5, 5, 10, 45]) * MINUTE  # some gaps longer than max_gap
        v = min(30.0, max(-3.0, v + rng.choice([-1.5, -0.5, 0, 0, 0.5, 1.5, 4.0, -4.0])))
        out.append((t, round(v, 2)))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(20, 160), chunk=st.integers(1, 25),
       shuffle=st.booleans(), restarts=st.integers(0, 3))
def test_any_arrival_order_ends_with_the_batch_answer(tmp_path_factory, seed, n, chunk, shuffle, restarts):
    path = tmp_path_factory.mktemp("order") / "ct.db"
    series = _series(seed, n)
    arrival = series[:]
    rng = random.Random(seed + 1)
    if shuffle:
        # mostly in order, with blocks delivered late (a logger's buffer uploaded after live data)
        k = rng.randrange(len(arrival))
        arrival = arrival[k:] + arrival[:k] if rng.random() < 0.5 else rng.sample(arrival, len(arrival))
    clock = ManualClock(series[-1][0] + MINUTE)
    db = Database(path, synchronous="NORMAL")
    pipe = Pipeline(db, SqliteReadingStore(db), clock)
    chunks = [arrival[i:i + chunk] for i in range(0, len(arrival), chunk)]
    restart_at = set(rng.sample(range(len(chunks)), min(restarts, len(chunks))))
    for i, part in enumerate(chunks):
        if i in restart_at:  # a new process: in-memory engines gone, checkpoints in the database
            db.close()
            db = Database(path, synchronous="NORMAL")
            pipe = Pipeline(db, SqliteReadingStore(db), clock)
        pipe.ingest_raw(_payload("D1", part), topic_device_id="D1")
        pipe.ingest_raw(_payload("D1", part[:1]), topic_device_id="D1")  # a redelivery changes nothing
    t, v = excursions.normalise_series([p[0] for p in series], [p[1] for p in series])
    expected = excursions.evaluate("D1", PROFILE, t, v)
    stored = db.query("SELECT * FROM excursions WHERE series_id = 'D1' AND superseded = 0 ORDER BY start_ts, limit_id")
    got = [(r["limit_id"], r["start_ts"], r["end_ts"], r["duration_ms"], r["peak_c"], r["alarm_ts"], r["alarm_kind"])
           for r in stored]
    want = [(e.limit_id, e.start_ts, e.end_ts, e.duration_ms, e.peak_c, e.alarm_ts, e.alarm_kind) for e in expected]
    assert sorted(got) == sorted(want)
    alert_ids = {r[0] for r in db.query("SELECT id FROM alerts")}
    # the alert stream says the same (tests/integration/test_alert_stream.py checks it after every batch)
    replayed = alert_stream.replay((r["type"], json.loads(r["data"])) for r in db.query("SELECT * FROM alerts"))
    for e in expected:
        assert alert_stream.agrees(replayed[e.id], alert_stream.state_of(e))
    outbox = db.query_one("SELECT COUNT(*) FROM outbox")[0]
    assert outbox == len(alert_ids)
    db.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(p=profiles(), s=any_series(max_size=60), rnd=st.randoms(use_true_random=False),
       cuts=st.lists(st.integers(0, 100), max_size=8))
def test_any_profile_any_arrival_order_gives_the_batch_excursions_and_alert_ids(tmp_path_factory, p, s, rnd,
                                                                                 cuts):
    """The one incremental evaluator (LiveEvaluator inside the Pipeline: in-order feeding, late data
    re-evaluated from checkpoints, diffs) on any profile (delays, cumulative budgets, hysteresis, MKT): any
    permutation and batching leaves the batch excursions, and the alert stream says so."""
    ts, vs = s
    order = list(range(len(ts)))
    rnd.shuffle(order)
    path = tmp_path_factory.mktemp("anyprofile") / "ct.db"
    db = Database(path, synchronous="NORMAL")
    try:
        with db.write() as c:
            c.execute("INSERT INTO profiles (id, name, body, updated_at) VALUES (?,?,?,0)",
                      (p.id, p.name, json.dumps(p.to_dict())))
            c.execute("INSERT INTO devices (id, registered_at, profile_id) VALUES ('D1', 0, ?)", (p.id,))
        pipe = Pipeline(db, SqliteReadingStore(db), ManualClock(max(ts) + MINUTE))
        for a, b in chunks(len(order), cuts):
            part = [(ts[i], vs[i]) for i in order[a:b]]
            assert not pipe.ingest_raw(_payload("D1", part), topic_device_id="D1").rejected
        expected = excursions.evaluate("D1", p, *excursions.normalise_series(ts, vs))
        stored = db.query("SELECT * FROM excursions WHERE series_id = 'D1' AND superseded = 0")
        got = sorted((r["limit_id"], r["start_ts"], r["end_ts"], r["duration_ms"], r["peak_c"], r["alarm_ts"],
                      r["alarm_kind"]) for r in stored)
        assert got == sorted((e.limit_id, e.start_ts, e.end_ts, e.duration_ms, e.peak_c, e.alarm_ts,
                              e.alarm_kind) for e in expected)
        # and the alert stream's last word on each excursion is the stored excursion
        replayed = alert_stream.replay((r["type"], json.loads(r["data"])) for r in db.query("SELECT * FROM alerts"))
        for e in expected:
            assert alert_stream.agrees(replayed[e.id], alert_stream.state_of(e))
    finally:
        db.close()


def test_late_data_uses_a_checkpoint_not_the_whole_history(tmp_path):
    db = Database(tmp_path / "ct.db", synchronous="NORMAL")
    clock = ManualClock(T0 + 30 * 24 * 60 * MINUTE)
    pipe = Pipeline(db, SqliteReadingStore(db), clock)
    day = [(T0 + i * 5 * MINUTE, 5.0) for i in range(12 * 24 * 3)]  # three days, in order
    for i in range(0, len(day), 50):
        pipe.ingest_raw(_payload("D2", day[i:i + 50]), topic_device_id="D2")
    cps = db.query("SELECT ts FROM series_checkpoints WHERE series_id = 'D2' ORDER BY ts")
    assert len(cps) >= 10 and all(b[0] - a[0] >= CHECKPOINT_EVERY_MS for a, b in zip(cps, cps[1:], strict=False))
    # a late excursion in the last hours: re-evaluated from a checkpoint before it
    late_t = day[-20][0] + 60_000
    loaded = []
    real_arrays = pipe.readings.arrays

    def spy(device_id, start=None, end=None):
        t, v = real_arrays(device_id, start, end)
        loaded.append(len(t))
        return t, v

    pipe.readings.arrays = spy  # type: ignore[method-assign]
    pipe.ingest_raw(_payload("D2", [(late_t, 27.0)]), topic_device_id="D2")
    assert loaded and loaded[-1] < 120  # readings since the last checkpoint before it, not all 864
    crit = db.query("SELECT * FROM excursions WHERE series_id = 'D2' AND limit_id = 'high-crit'")
    assert len(crit) == 1 and crit[0]["start_ts"] == late_t and crit[0]["alarm_ts"] == late_t
    db.close()


@pytest.mark.parametrize("late_first", [True, False])
def test_a_late_reading_that_splits_an_alarmed_excursion_revises_it(tmp_path, late_first):
    db = Database(tmp_path / "ct.db", synchronous="NORMAL")
    clock = ManualClock(T0 + 24 * 60 * MINUTE)
    pipe = Pipeline(db, SqliteReadingStore(db), clock)
    above = [(T0 + i * 10 * MINUTE, 9.0) for i in range(6)]  # 50 min above 8 °C: high-warn alarms at +20 min
    after = [(T0 + 60 * MINUTE, 5.0)]
    pipe.ingest_raw(_payload("D3", above + after), topic_device_id="D3")
    alarms = db.query("SELECT * FROM alerts WHERE type = 'excursion.alarm'")
    assert {json.loads(a["data"])["limit_id"] for a in alarms} == {"high-warn", "high"}
    # the logger's buffer arrives: at +15 min it was back in range, which splits the episode
    pipe.ingest_raw(_payload("D3", [(T0 + 15 * MINUTE, 4.0)]), topic_device_id="D3")
    revised = db.query("SELECT * FROM alerts WHERE type = 'excursion.revised'")
    assert revised, "QA must hear that an excursion that alarmed changed"
    t, v = excursions.normalise_series([p[0] for p in above + after] + [T0 + 15 * MINUTE],
                                       [p[1] for p in above + after] + [4.0])
    expected = {e.id for e in excursions.evaluate("D3", PROFILE, t, v)}
    current = {r["id"] for r in db.query("SELECT id FROM excursions WHERE superseded = 0")}
    assert current == expected
    db.close()

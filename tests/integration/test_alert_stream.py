"""The alert stream is a faithful log of the stored excursions (issue 13 item 1).

Random series, delivered in random orders and batches through the real Pipeline on SQLite, with redeliveries
and restarts (new Pipeline objects on the same database file): after every batch, replaying the alerts of
each excursion gives the stored excursion (start, end, alarm time and kind, superseded or not; peak,
duration and degree-minutes once closed), revisions are numbered 1..n without gaps, and every alert's type
names the transition it announces. Arrival orders: in order, a late block, fully shuffled, reversed, and
"holes" - warm and cool spells delivered with gaps that three late buffers fill (cool readings inside warm
spells withdraw alarms, warm readings inside cool spells restore them and merge episodes, cool readings
just after those split them again and revive superseded excursions); `--hypothesis-show-statistics` shows
how often each case occurs.
"""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from coldtrace.core import alert_stream
from coldtrace.core.alert_stream import ALARM, CLOSED, OPENED, REVISED
from coldtrace.core.clock import ManualClock
from coldtrace.core.model import MINUTE, Limit, Profile
from coldtrace.services.pipeline import Pipeline
from coldtrace.store.db import Database
from coldtrace.store.excursions import row_to_excursion
from coldtrace.store.sqlite import SqliteReadingStore

T0 = 1_795_600_000_000
DEV = "D1"


# Short delays and small cumulative budgets: late data often withdraws, moves and restores alarms.
TIGHT = Profile("tight", "tight budgets", (
    Limit("high-warn", "above", 8.0, "warning", 10 * MINUTE),
    Limit("high", "above", 8.0, "alarm", 20 * MINUTE, 40 * MINUTE),
    Limit("high-crit", "above", 25.0, "critical", 0),
    Limit("low", "below", 2.0, "alarm", 10 * MINUTE, 30 * MINUTE),
), mkt_max_c=8.0)


def _payload(pairs: list[tuple[int, float]]) -> bytes:
    return json.dumps({"v": 1, "device_id": DEV, "readings": [{"ts": t, "temp_c": v} for t, v in pairs]}).encode()


@st.composite
def deliveries(draw):
    """A series (°C around the 2-8 °C band, sometimes far out) and the batches it arrives in."""
    n = draw(st.integers(6, 70))
    gaps = draw(st.lists(st.sampled_from([5, 5, 5, 10, 15, 45]), min_size=n, max_size=n))
    steps = draw(st.lists(st.sampled_from([-4.0, -1.5, -0.5, 0.0, 0.0, 0.5, 1.5, 3.0, 4.0, 18.0, -18.0]),
                          min_size=n, max_size=n))
    series, t, v = [], T0, 5.0
    for g, d in zip(gaps, steps, strict=True):
        t += g * MINUTE
        v = min(30.0, max(-3.0, v + d))
        series.append((t, v))
    mode = draw(st.sampled_from(["in_order", "late_block", "holes", "holes", "holes", "shuffled", "reversed"]))
    if mode == "late_block":  # a logger's buffer uploaded after its live data
        k = draw(st.integers(0, n - 1))
        phases = [series[k:] + series[:k]]
    elif mode == "holes":  # live data with gaps, filled later by two buffers: cool readings first (they
        # shorten episodes and budgets: alarms withdrawn), warm ones next (alarms restored)
        blocks = draw(st.lists(st.tuples(st.booleans(), st.integers(2, 8)), min_size=5, max_size=12))
        temps = [9.5 if warm else 5.0 for warm, length in blocks for _ in range(length)]
        late = [draw(st.sampled_from([0, 0, 1] if v > 8 else [0, 0, 2])) for v in temps]
        series = [(T0 + (i + 1) * 5 * MINUTE, {0: v, 1: 4.0, 2: 9.5}[k])
                  for i, (v, k) in enumerate(zip(temps, late, strict=True))]
        phases = [[p for p, k in zip(series, late, strict=True) if k == phase] for phase in (0, 1, 2)]
        # a third buffer: cool readings just after some warm fills split what those merged (revivals)
        splits = [draw(st.booleans()) for _ in phases[2]]
        phases.append([(t + 150_000, 4.0) for (t, _), split in zip(phases[2], splits, strict=True) if split])
    elif mode == "shuffled":
        phases = [draw(st.permutations(series))]
    elif mode == "reversed":
        phases = [series[::-1]]
    else:
        phases = [series]
    batches = []
    for arrival in phases:  # each phase in batches of random sizes
        sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=max(1, len(arrival))))
        i = 0
        for s in sizes:
            if i >= len(arrival):
                break
            batches.append(arrival[i:i + s])
            i += s
        if i < len(arrival):
            batches.append(arrival[i:])
    restarts = draw(st.sets(st.integers(0, len(batches) - 1), max_size=3))
    return batches, restarts


def _stored(db: Database) -> dict[str, dict]:
    return {r["id"]: {**alert_stream.state_of(row_to_excursion(r), bool(r["superseded"])),
                      "direction": r["direction"]}
            for r in db.query("SELECT * FROM excursions WHERE series_id = ?", (DEV,))}


def _check_stream(db: Database) -> None:
    rows = db.query("SELECT id, type, severity, ts, data FROM alerts WHERE device_id = ? AND excursion_id IS NOT"
                    " NULL", (DEV,))
    alerts = [(r["type"], json.loads(r["data"]), r) for r in rows]
    stored = _stored(db)
    replayed = alert_stream.replay((t, d) for t, d, _ in alerts)
    assert set(replayed) == set(stored), "every stored excursion is announced, and only those"
    for xid, s in stored.items():
        got = replayed[xid]
        assert alert_stream.agrees(got, s), (xid, got, s)
        if s["end_ts"] is None and not s["superseded"]:  # an open excursion's peak is "as of the last alert"
            assert got["peak_c"] <= s["peak_c"] if s["direction"] == "above" else got["peak_c"] >= s["peak_c"]
    # each excursion's alerts: revisions 1..n, the first one "opened", each type the transition it names
    by_exc: dict[str, list] = {}
    for t, d, r in alerts:
        by_exc.setdefault(d["excursion_id"], []).append((d["revision"], t, d, r))
    for items in by_exc.values():
        items.sort(key=lambda x: x[0])
        assert [x[0] for x in items] == list(range(1, len(items) + 1))
        assert items[0][1] == OPENED
        prev = None
        for _, t, d, r in items:
            s = d["excursion"]
            if t == ALARM:
                assert s["alarm_ts"] is not None and not s["superseded"] and r["ts"] == s["alarm_ts"]
                assert prev is None or prev["alarm_ts"] is None or prev["superseded"]
            elif t == CLOSED:
                assert prev is not None and prev["end_ts"] is None and s["end_ts"] == d["end_ts"]
            elif t == REVISED:
                assert prev is not None and not alert_stream.agrees(prev, s)
            prev = s
    assert db.query_one("SELECT COUNT(*) FROM outbox WHERE alert_id IN (SELECT id FROM alerts WHERE device_id"
                        " = ? AND excursion_id IS NOT NULL)", (DEV,))[0] == len(alerts)  # one event per alert


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(plan=deliveries(), tight=st.booleans())
def test_replaying_the_alerts_gives_the_stored_excursions_after_every_batch(tmp_path_factory, plan, tight):
    batches, restarts = plan
    path = tmp_path_factory.mktemp("stream") / "ct.db"
    clock = ManualClock(max(t for part in batches for t, _ in part) + MINUTE)  # data arrives after it was taken
    db = Database(path, synchronous="NORMAL")
    pipe = Pipeline(db, SqliteReadingStore(db), clock)
    if tight:
        with db.write() as c:
            c.execute("INSERT INTO profiles (id, name, body, updated_at) VALUES (?,?,?,0)",
                      (TIGHT.id, TIGHT.name, json.dumps(TIGHT.to_dict())))
            c.execute("INSERT INTO devices (id, registered_at, profile_id) VALUES (?, 0, ?)", (DEV, TIGHT.id))
    try:
        for i, part in enumerate(batches):
            if i in restarts:  # a new process: in-memory engines gone, announced states in the database
                db.close()
                db = Database(path, synchronous="NORMAL")
                pipe = Pipeline(db, SqliteReadingStore(db), clock)
            clock.advance(MINUTE)
            assert not pipe.ingest_raw(_payload(part), topic_device_id=DEV).rejected
            before = db.query_one("SELECT COUNT(*) FROM alerts")[0]
            pipe.ingest_raw(_payload(part), topic_device_id=DEV)  # a redelivery changes nothing
            assert db.query_one("SELECT COUNT(*) FROM alerts")[0] == before
            _check_stream(db)
        # how often the hard cases occur (pytest --hypothesis-show-statistics)
        datas = [json.loads(r[0]) for r in db.query("SELECT data FROM alerts")]  # JSON read in Python: portable
        for kind, has in (("alarm restored", lambda d: d.get("restored") == 1 and d.get("revived") == 0),
                          ("revived", lambda d: d.get("revived") == 1),
                          ("superseded", lambda d: d.get("superseded") == 1)):
            n = sum(1 for d in datas if has(d))
            event(f"{kind}: {'yes' if n else 'no'}")
    finally:
        db.close()


def _states(db: Database, limit_id: str) -> list[tuple[str, dict]]:
    """(type, data) of the alerts about one limit, by excursion then revision (the JSON read in Python, so that
    the same test runs on PostgreSQL)."""
    rows = [(r["type"], json.loads(r["data"])) for r in db.query("SELECT type, data FROM alerts")]
    mine = [(t, d) for t, d in rows if d.get("limit_id") == limit_id]
    return sorted(mine, key=lambda td: (td[1].get("excursion_id") or "", td[1].get("revision") or 0))


def _tight_pipeline(path) -> tuple[Database, Pipeline]:
    db = Database(path, synchronous="NORMAL")
    pipe = Pipeline(db, SqliteReadingStore(db), ManualClock(T0 + 24 * 60 * MINUTE))
    with db.write() as c:
        c.execute("INSERT INTO profiles (id, name, body, updated_at) VALUES (?,?,?,0)",
                  (TIGHT.id, TIGHT.name, json.dumps(TIGHT.to_dict())))
        c.execute("INSERT INTO devices (id, registered_at, profile_id) VALUES (?, 0, ?)", (DEV, TIGHT.id))
    return db, pipe


def test_an_alarm_withdrawn_and_restored_by_late_data_is_announced_again(tmp_path):
    """``high`` alarms after 20 min above 8 °C or 40 min in total. Episode 1 (30 min) and episode 2 (10 min)
    reach the budget at 70 min (a cumulative alarm); a late logger buffer splits episode 1 (alarm withdrawn),
    a second late buffer adds a warm episode in between (the same alarm, restored: announced again)."""
    db, pipe = _tight_pipeline(tmp_path / "ct.db")
    m = lambda x: T0 + x * MINUTE  # noqa: E731
    pipe.ingest_raw(_payload([(m(0), 9.0), (m(10), 9.0), (m(20), 9.0), (m(30), 5.0), (m(60), 9.0), (m(65), 9.0),
                              (m(70), 5.0)]), topic_device_id=DEV)
    pipe.ingest_raw(_payload([(m(5), 5.0), (m(15), 5.0)]), topic_device_id=DEV)
    pipe.ingest_raw(_payload([(m(40), 9.0), (m(45), 9.0), (m(50), 5.0)]), topic_device_id=DEV)
    ep2 = [(t, d) for t, d in _states(db, "high") if d["start_ts"] == m(60)]
    assert [(t, d["revision"], d["excursion"]["alarm_ts"]) for t, d in ep2] == [
        (OPENED, 1, None), (ALARM, 2, m(70)), (CLOSED, 3, m(70)),
        (REVISED, 4, None),  # withdrawn: the budget was not used up after all
        (ALARM, 5, m(70))]  # restored: the same state as revision 2/3 again, a new alert all the same
    assert ep2[-1][1]["restored"] is True and ep2[1][1]["restored"] is False
    stored = db.query_one("SELECT * FROM excursions WHERE limit_id = 'high' AND start_ts = ?", (m(60),))
    assert stored["alarm_ts"] == m(70) and stored["alarm_kind"] == "cumulative"
    _check_stream(db)
    db.close()


def test_a_late_reading_that_moves_the_end_of_an_excursion_that_never_alarmed_is_a_revision(tmp_path):
    clock = ManualClock(T0 + 24 * 60 * MINUTE)
    db = Database(tmp_path / "ct.db", synchronous="NORMAL")
    pipe = Pipeline(db, SqliteReadingStore(db), clock)
    # 10 min above 8 °C (high-warn needs 15): opened and closed, never alarmed
    pipe.ingest_raw(_payload([(T0, 5.0), (T0 + 5 * MINUTE, 8.6), (T0 + 10 * MINUTE, 8.6),
                              (T0 + 15 * MINUTE, 5.0)]), topic_device_id=DEV)
    pipe.ingest_raw(_payload([(T0 + 12 * MINUTE, 5.0)]), topic_device_id=DEV)  # it ended 3 min earlier
    seen = _states(db, "high-warn")
    assert [t for t, _ in seen] == [OPENED, CLOSED, REVISED]
    assert seen[1][1]["end_ts"] == T0 + 15 * MINUTE and seen[2][1]["excursion"]["end_ts"] == T0 + 12 * MINUTE
    assert seen[2][1]["excursion"]["alarm_ts"] is None
    _check_stream(db)
    db.close()


def test_a_superseded_excursion_that_comes_back_is_announced_as_revived(tmp_path):
    """Two warm spells (5-15 min, and 20-70 min: an alarm at 50 min) with a cool reading between them. A late
    warm reading at 17.5 min starts the second episode earlier: the excursion that began at 20 min is
    superseded. A later cool reading at 18.75 min splits them again: the excursion at 20 min is back, with its
    alarm - announced as a revived alarm (it pages again), and the short one at 17.5 min is revised."""
    db, pipe = _tight_pipeline(tmp_path / "ct.db")
    with db.write() as c:  # the 2-8 °C profile's limits (high alarms after 30 min above 8 °C)
        c.execute("UPDATE devices SET profile_id = '2-8C' WHERE id = ?", (DEV,))
    m = lambda x: T0 + int(x * MINUTE)  # noqa: E731
    pipe.ingest_raw(_payload([(m(0), 5.0), (m(5), 9.5), (m(10), 9.5), (m(15), 5.0)]
                             + [(m(20 + 5 * i), 9.5) for i in range(10)] + [(m(70), 5.0)]), topic_device_id=DEV)
    pipe.ingest_raw(_payload([(m(17.5), 9.5)]), topic_device_id=DEV)
    _check_stream(db)
    pipe.ingest_raw(_payload([(m(18.75), 5.0)]), topic_device_id=DEV)
    _check_stream(db)
    b = [(t, d) for t, d in _states(db, "high") if d["start_ts"] == m(20)]
    assert [(t, d["revision"], d["excursion"]["superseded"], d["excursion"]["alarm_ts"]) for t, d in b] == [
        (OPENED, 1, False, None), (ALARM, 2, False, m(50)), (CLOSED, 3, False, m(50)),
        (REVISED, 4, True, m(50)),  # superseded: the episode seemed to start at 17.5 min
        (ALARM, 5, False, m(50))]  # revived with its alarm: announced, and it pages again
    assert b[-1][1]["revived"] is True and b[-1][1]["restored"] is True
    short = [(t, d) for t, d in _states(db, "high") if d["start_ts"] == m(17.5)]
    assert short[-1][0] == REVISED and short[-1][1]["excursion"]["end_ts"] == m(18.75)
    assert short[-1][1]["excursion"]["alarm_ts"] is None  # its alarm withdrawn
    stored = db.query_one("SELECT * FROM excursions WHERE limit_id = 'high' AND start_ts = ?", (m(20),))
    assert (stored["superseded"], stored["alarm_ts"]) == (0, m(50))
    db.close()
    # the pure transitions: a withdrawn excursion that comes back without an alarm is a revision
    e = replace(row_to_excursion(stored), alarm_ts=None, alarm_kind=None)
    steps = alert_stream.transitions(alert_stream.state_of(e, superseded=True), alert_stream.state_of(e))
    assert [t for t, _ in steps] == [REVISED] and steps[0][1]["superseded"] is False


def test_repeated_states_are_never_collapsed():
    """A -> B -> A -> B: four announcements with four ids (content-derived ids dropped the second B)."""
    a = {"start_ts": 0, "end_ts": 600_000, "peak_c": 9.0, "duration_ms": 600_000, "degree_minutes": 10.0,
         "alarm_ts": 300_000, "alarm_kind": "consecutive", "superseded": False}
    b = {**a, "alarm_ts": 400_000}
    cur, kinds = a, []
    for nxt in (b, a, b):
        steps = alert_stream.transitions(cur, nxt)
        kinds += [t for t, _ in steps]
        cur = steps[-1][1]
    assert kinds == [REVISED, REVISED, REVISED]
    ids = {alert_stream.stream_alert_id("exc_x", r) for r in range(1, 5)}
    assert len(ids) == 4

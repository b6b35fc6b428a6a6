"""Two notifier processes on one database (issue 15 step 3): each delivery attempt is made by exactly one of
them, both share the work, and a notifier SIGKILLed mid-attempt lets its lease expire so the other one makes
the attempt again. A real HTTP receiver verifies every signature."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from coldtrace.core.clock import SystemClock
from coldtrace.core.model import Alert
from coldtrace.services import webhooks as wh
from coldtrace.services.pipeline import Pipeline
from coldtrace.store import webhooks as store
from tests.integration.cluster_support import open_db, reading_store, start_child, stop, wait_for
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

CHILD = "tests.integration.cluster_notifier_child"


def _alert(i: int, ts: int) -> Alert:
    return Alert(id=f"alert_{i:05d}", type="excursion.alarm", severity="alarm", device_id=f"LOG-{i % 7:04d}",
                 ts=ts, data={"limit_id": "high", "peak_c": 9.0})


def _notifier(db_target: str, tmp_path, name: str):
    ready = tmp_path / f"{name}.ready"
    proc = start_child(CHILD, db_target, name, str(ready), log=tmp_path / f"{name}.log")
    wait_for(lambda: ready.exists() or proc.poll() is not None, 30, f"notifier {name} started")
    assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
    return proc


def _attempts(db) -> list[dict]:
    return [dict(r) for r in db.query(
        "SELECT a.delivery_id, d.subscription_id, d.event_id, a.attempt_no, a.sent_by, a.status, a.error"
        " FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id ORDER BY a.id")]


def _delivered(db) -> tuple[int, int]:
    """(deliveries, delivered ones), read at one instant."""
    r = db.query_one("SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END), 0)"
                     " FROM webhook_deliveries")
    return r[0], r[1]


def _pending(db) -> bool:
    return bool(db.query("SELECT 1 FROM webhook_deliveries WHERE state != 'delivered'"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path) -> str:
    """The database the notifiers share: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "ct.db")


def test_two_notifiers_make_each_attempt_once_and_take_over_a_killed_ones_leases(tmp_path, db_target):
    target = db_target
    db = open_db(target)
    clock = SystemClock()
    pipeline = Pipeline(db, reading_store(db), clock)
    secret = wh.generate_secret()
    receivers = [WebhookReceiver([secret]).start() for _ in range(2)]  # one per subscription
    subs = {store.create_subscription(db, url=r.url, secret=secret, now=clock.now_ms(),
                                      description=f"on-call {k}")["id"]: r for k, r in enumerate(receivers)}
    a = b = None
    try:
        a, b = _notifier(target, tmp_path, "notifier-a"), _notifier(target, tmp_path, "notifier-b")

        # 1. both running: 150 alarms, 2 subscriptions, 300 deliveries
        pipeline.emit_now([_alert(i, clock.now_ms()) for i in range(150)])
        wait_for(lambda: _delivered(db) == (300, 300), 60, "300 deliveries delivered")
        attempts = _attempts(db)
        for sid, receiver in subs.items():
            assert not receiver.bad_signatures
            mine = [x for x in attempts if x["subscription_id"] == sid]
            events = {x["event_id"] for x in mine}
            assert len(events) == 150, (sid, Counter(x["subscription_id"] for x in attempts))
            # each event accepted once by this subscription's receiver: no attempt was made by both notifiers
            assert receiver.delivered() == Counter(dict.fromkeys(events, 1))
            # every request the receiver saw is an attempt one notifier recorded (a connection that never got
            # through, under this machine's load, is an attempt too, recorded with its error and retried)
            assert receiver.count() <= len(mine)
        per_delivery: dict[int, list[dict]] = {}
        for x in attempts:
            per_delivery.setdefault(x["delivery_id"], []).append(x)
        for tries in per_delivery.values():  # numbered 1..n, n - 1 failures, then the one success
            assert [x["attempt_no"] for x in tries] == list(range(1, len(tries) + 1))
            assert [x["status"] == 204 for x in tries] == [False] * (len(tries) - 1) + [True]
            assert all(x["error"] for x in tries[:-1])
        by = Counter(x["sent_by"] for x in attempts)
        assert set(by) == {"notifier-a", "notifier-b"}, by  # the work was shared

        # 2. notifier-b is gone; notifier-a is killed while its attempts hang at the receivers
        stop(b)
        for r in receivers:
            r.mode, r.slow_s = "slow", 60.0
        before = [r.count() for r in receivers]
        arrived = [r.arrivals for r in receivers]
        pipeline.emit_now([_alert(1000 + i, clock.now_ms()) for i in range(3)])
        wait_for(lambda: all(r.arrivals - n == 3 for r, n in zip(receivers, arrived, strict=True)), 20,
                 "six attempts in flight")
        leased = db.query("SELECT id, lease_holder, lease_expires_at FROM webhook_deliveries WHERE state = 'pending'")
        assert len(leased) == 6 and {r["lease_holder"] for r in leased} == {"notifier-a"}
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = clock.now_ms()
        for r in receivers:
            r.mode = "ok"
        c = _notifier(target, tmp_path, "notifier-c")
        try:
            wait_for(lambda: not _pending(db), 30, "the killed notifier's deliveries")
        finally:
            stop(c)
        ids = ",".join(str(r["id"]) for r in leased)
        late = db.query(f"SELECT id, subscription_id, event_id, delivered_at, lease_holder FROM webhook_deliveries"
                        f" WHERE id IN ({ids})")
        # not before the leases notifier-a took had expired: nobody sent them twice at once
        assert min(r["delivered_at"] for r in late) >= min(r["lease_expires_at"] for r in leased) >= killed_at
        assert all(r["lease_holder"] is None for r in late)
        for (sid, receiver), n in zip(subs.items(), before, strict=True):
            events = {r["event_id"] for r in late if r["subscription_id"] == sid}
            assert len(events) == 3
            second = receiver.requests[n:]
            # per event: notifier-a's attempt (unanswered, the sender died) and notifier-c's (delivered)
            assert Counter(r.webhook_id for r in second) == Counter(dict.fromkeys(events, 2))
            assert Counter(r.webhook_id for r in second if r.status == 204) == Counter(dict.fromkeys(events, 1))
        # the attempts table holds what was recorded: notifier-a died before recording its attempts
        redo = [(x["delivery_id"], x["attempt_no"], x["sent_by"]) for x in _attempts(db)
                if x["delivery_id"] in {r["id"] for r in late}]
        assert sorted(redo) == sorted((r["id"], 1, "notifier-c") for r in late)
    finally:
        stop(a)
        stop(b)
        for r in receivers:
            r.stop()
        db.close()

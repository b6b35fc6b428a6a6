"""Webhook isolation (issue 13 item 6): a receiver that never answers must not delay anyone else's alarms.

Two real HTTP receivers on loopback and the notifier as `coldtrace run` wires it (real clock, woken by the
pipeline): one receiver hangs on every request until long after the notifier's timeout, the other answers
at once. The dead one's lane fills up and its backlog grows; the healthy one's critical alarms still arrive
within 1 s of being raised, and every request either receiver sees carries a webhook-timestamp taken when
that request was sent, not when some earlier run or claim started.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from coldtrace.core.model import Alert
from coldtrace.services import webhooks as wh
from coldtrace.settings import load_settings
from coldtrace.store import webhooks as store
from coldtrace.wiring import build_services
from collector.notifier import build_notifier
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0
LANE = 2


def _wait(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.005)
    raise AssertionError("condition not reached in time")


def _alarm(i: int, now: int, severity: str = "alarm") -> Alert:
    return Alert(id=f"alert_iso_{severity}_{i:03d}", type="excursion.alarm", severity=severity,
                 device_id="LOG-0001", ts=now, data={"limit_id": "high", "peak_c": 9.5})


def test_a_dead_receiver_never_delays_another_receivers_critical_alarm(tmp_path):
    settings = load_settings(data_dir=tmp_path, tick_interval_s=3600.0,
                             webhooks={"allowed_private_targets": ["127.0.0.1/32"], "timeout_s": TIMEOUT_S,
                                       "lane_concurrency": LANE})
    services = build_services(settings)
    clock = services.clock
    dead_secret, live_secret = wh.generate_secret(), wh.generate_secret()
    dead = WebhookReceiver([dead_secret]).start()
    dead.mode, dead.slow_s = "slow", 120.0  # holds every request until stop(): the client times out first
    live = WebhookReceiver([live_secret]).start()
    store.create_subscription(services.db, url=dead.url, secret=dead_secret, now=clock.now_ms())
    store.create_subscription(services.db, url=live.url, secret=live_secret, now=clock.now_ms())
    worker = build_notifier(services)
    worker.start()
    latencies: list[float] = []
    try:
        # a backlog for both: the dead lane fills (LANE requests hang), the rest of its deliveries wait
        services.pipeline.emit_now([_alarm(i, clock.now_ms()) for i in range(12)])
        _wait(lambda: len(live.delivered()) == 12 and dead.arrivals >= LANE)
        for i in range(6):  # critical alarms raised while the dead lane is full and timing out wave by wave
            alert = _alarm(i, clock.now_ms(), "critical")
            raised = time.monotonic()
            services.pipeline.emit_now([alert])
            event_id = wh.event_id_for(alert.id)
            _wait(lambda: event_id in live.delivered(), timeout=10)  # noqa: B023
            arrived = next(r.arrived for r in live.requests if r.webhook_id == event_id)
            latencies.append(arrived - raised)
            time.sleep(0.4)
        # the dead lane moved on to its next deliveries when the first ones timed out
        _wait(lambda: dead.arrivals >= 2 * LANE, timeout=3 * TIMEOUT_S)
    finally:
        worker.stop()
        dead.stop()
        live.stop()
    _wait(lambda: len(dead.requests) == dead.arrivals, timeout=5)  # stop() released the held requests
    services.close()

    assert max(latencies) < 1.0, latencies  # the bound; typically a few milliseconds
    assert len(live.delivered()) == 18 and live.bad_signatures == []
    # bounded concurrency: never more than LANE requests towards the dead receiver at once
    assert dead.max_in_progress == LANE
    # per-attempt timestamps: each request was signed when it was sent (whole seconds, so up to 1 s behind)
    for r in live.requests + dead.requests:
        assert 0 <= r.arrived_wall - r.timestamp < 1.5, (r.webhook_id, r.arrived_wall, r.timestamp)
    first = min(r.arrived_wall for r in dead.requests)
    later_wave = [r for r in dead.requests if r.arrived_wall >= first + TIMEOUT_S - 0.2]
    assert len(later_wave) >= LANE and all(r.timestamp >= int(first) + 1 for r in later_wave)
    assert all(r.signature_ok for r in dead.requests)  # fresh timestamps verify at arrival


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_attempt_deadline(tmp_path):
    """httpx's timeouts are per read: a receiver that sends its status line and then one header byte every
    0.1 s never trips a 0.5 s timeout. The attempt's overall deadline (2 x timeout) ends it anyway."""
    from coldtrace.core.clock import ManualClock
    from coldtrace.services.delivery import Notifier
    from coldtrace.services.pipeline import Pipeline
    from coldtrace.store.db import Database
    from coldtrace.store.sqlite import SqliteReadingStore

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(300):  # 30 s of one byte per 0.1 s, unless the client hangs up
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(b"z")
                except OSError:
                    return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    clock = ManualClock()
    db = Database(tmp_path / "ct.db")
    pipeline = Pipeline(db, SqliteReadingStore(db), clock)
    notifier = Notifier(db, clock, allowed_private_targets=["127.0.0.1"], timeout_s=0.5)
    try:
        store.create_subscription(db, url=f"http://127.0.0.1:{server.getsockname()[1]}/hook",
                                  secret=wh.generate_secret(), now=clock.now_ms())
        pipeline.emit_now([_alarm(1, clock.now_ms(), "critical")])
        t0 = time.monotonic()
        notifier.run_once()
        elapsed = time.monotonic() - t0
        delivery = store.list_deliveries(db)[0]
        attempts = store.list_attempts(db, delivery["id"])
    finally:
        stop.set()
        notifier.close()
        server.close()
        t.join(5)
        db.close()
    assert elapsed < 5.0  # the deadline is 1 s; the receiver would have kept it 30 s
    assert delivery["state"] == "pending" and delivery["attempts"] == 1  # retried later, like any timeout
    assert attempts[0]["status"] is None and attempts[0]["error"] == "timeout: no complete answer within 1 s"

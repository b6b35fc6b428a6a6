"""The clock tick runs in one collector at a time (issue 15 step 3): two collector services on one database
(SQLite file, or PostgreSQL), real Mosquitto; the holder of the clock-tick lease ticks, the other does not;
when the leader stops renewing (as a killed process would) the other takes over once the lease has expired,
and never while it is valid; a clean stop hands the lease on at once."""

from __future__ import annotations

import threading
import time

import pytest

from coldtrace.store import cluster
from coldtrace.wiring import build_services
from collector.service import LEADER_TTL_TICKS, CollectorService
from tests.integration.cluster_support import wait_for
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration

TICK_S = 0.1


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'shared.db'}"


def _service(tmp_path, name: str, mqtt_url: str, store_url: str, log: list) -> CollectorService:
    settings = make_settings(tmp_path / name, mqtt_url, tick_interval_s=TICK_S, mqtt={"client_id": f"ct-{name}"},
                             store={"url": store_url})
    svc = CollectorService(build_services(settings), with_notifier=True)
    real_tick = svc._tick
    lock = threading.Lock()

    def tick(last):  # note every tick this service runs: (who, clock time in ms, lease term)
        with lock:
            log.append((name, svc.services.clock.now_ms(), svc.leader.term))
        return real_tick(last)

    svc._tick = tick
    svc.start(connect_timeout=10)
    return svc


def _freeze(svc: CollectorService) -> None:
    """What a SIGKILL leaves behind: the tick loop gone, the lease row neither renewed nor released."""
    svc._stop.set()
    svc._tick_thread.join(5)


def test_one_collector_ticks_and_another_takes_over_after_the_lease(tmp_path, mosquitto, store_url):
    log: list[tuple[str, float, int]] = []
    a = _service(tmp_path, "a", mosquitto.url, store_url, log)
    db = a.services.db
    wait_for(lambda: log, 10, "a first tick")
    b = _service(tmp_path, "b", mosquitto.url, store_url, log)
    c = None
    try:
        time.sleep(20 * TICK_S)
        assert {who for who, *_ in log} == {"a"}  # b runs, renews nothing, ticks nothing
        lease = cluster.current(db, cluster.CLOCK_TICK)
        assert lease.holder == a.leader.holder and lease.term == 1
        assert b.ticks_led == 0 and a.ticks_led >= 5

        _freeze(a)
        left = cluster.current(db, cluster.CLOCK_TICK)  # a's last renewal: valid LEADER_TTL_TICKS ticks
        assert left.holder == a.leader.holder
        assert left.expires_at - left.renewed_at == round(LEADER_TTL_TICKS * TICK_S * 1000)
        wait_for(lambda: b.ticks_led > 0, 10, "b takes the clock tick over")
        first_b = min(t for who, t, _ in log if who == "b")
        assert first_b >= left.expires_at  # not before a's lease ran out
        lease = cluster.current(db, cluster.CLOCK_TICK)
        assert lease.holder == b.leader.holder and lease.term == 2
        # one leader at a time: a's ticks, then b's, never interleaved
        order = [who for who, *_ in sorted(log, key=lambda x: x[1])]
        assert order == sorted(order) and order.count("b") == b.ticks_led
        assert {term for who, _, term in log if who == "b"} == {2}

        b.stop()  # a clean stop releases the lease: the next collector leads at its first tick
        assert cluster.current(db, cluster.CLOCK_TICK) is None
        c = _service(tmp_path, "c", mosquitto.url, store_url, log)
        wait_for(lambda: c.ticks_led > 0, 10, "c leads")
        assert cluster.current(db, cluster.CLOCK_TICK).term == 1  # a new row: nothing left to wait out
    finally:
        for svc in (a, b, c):
            if svc is not None:
                svc.stop()
                svc.services.close()

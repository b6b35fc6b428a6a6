"""Data lost upstream is not silent: a real Mosquitto with a tiny per-client queue drops messages while the
collector is away; the collector reads `$SYS/broker/publish/messages/dropped` when it is back and raises one
`broker.messages_dropped` alarm, and the device's seq gap raises `device.data_gap` with the missing range."""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.service import CollectorService
from tests.support.services import Mosquitto
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration

QUEUE = 5


@pytest.fixture
def tiny_queue_broker(tmp_path):
    d = tmp_path / "mosquitto"
    d.mkdir()
    broker = Mosquitto(d, extra_conf=f"max_queued_messages {QUEUE}\nsys_interval 1\n")
    broker.start()
    yield broker
    broker.stop()


def _publish(broker: Mosquitto, device: str, seqs: range, t0: int) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{device}")
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    try:
        infos = [c.publish(f"coldtrace/v1/devices/{device}/readings", json.dumps(
            {"v": 1, "device_id": device, "seq": s, "readings": [{"ts": t0 + s * 60_000, "temp_c": 5.0}]}), qos=1)
            for s in seqs]
        for i in infos:
            i.wait_for_publish(10)
            assert i.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def _alerts(stack, type_: str) -> list[dict]:
    return [dict(r) | {"data": json.loads(r["data"])} for r in stack.services.db.query(
        "SELECT id, type, severity, device_id, state, data FROM alerts WHERE type = ? ORDER BY created_at", (type_,))]


def test_dropped_messages_raise_one_alarm_and_the_gap_is_named(tmp_path, tiny_queue_broker, caplog):
    broker = tiny_queue_broker
    caplog.set_level(logging.INFO, logger="coldtrace.services.data_loss")
    stack = start_stack(tmp_path, broker.url)
    try:
        t0 = stack.services.clock.now_ms() - 3_600_000
        _publish(broker, "LOG-Q", range(1, 3), t0)  # seq 1, 2 arrive while the collector is up
        wait_for(lambda: stack.services.readings.count() == 2, 10, "the first readings")
        assert stack.collector.broker_guard.values.get("$SYS/broker/version", "").startswith("mosquitto")
        wait_for(lambda: stack.collector.broker_guard.sys_state == "watching", 10, "the counter watched")
        assert any(r.levelname == "INFO" and f"{broker.host}:{broker.port}: watching its dropped-messages counter"
                   in r.getMessage() and "mosquitto version" in r.getMessage() for r in caplog.records)
        assert _alerts(stack, "broker.messages_dropped") == []

        stack.collector.stop()  # the collector is down; its persistent session queues at most QUEUE messages
        _publish(broker, "LOG-Q", range(3, 53), t0)  # 50 messages: QUEUE are kept, the rest dropped

        collector = CollectorService(stack.services, with_notifier=False)
        collector.start(connect_timeout=10)
        stack.collector = collector
        wait_for(lambda: stack.services.readings.count() == 2 + QUEUE, 10, "the queued readings")
        wait_for(lambda: _alerts(stack, "broker.messages_dropped"), 10, "the broker.messages_dropped alarm")
        [alarm] = _alerts(stack, "broker.messages_dropped")
        assert alarm["severity"] == "alarm" and alarm["state"] == "open"
        assert alarm["data"]["broker"] == f"{broker.host}:{broker.port}"
        assert alarm["data"]["new_drops"] >= 50 - QUEUE and alarm["data"]["dropped_total"] >= 50 - QUEUE
        assert "max_queued_messages" in alarm["data"]["message"]
        # the counters as the collector saw them, for whoever watches GET /api/v1/metrics (any process)
        wait_for(lambda: stack.get("/api/v1/metrics")["brokers"].get(f"{broker.host}:{broker.port}", {})
                 .get("stored_messages") is not None, 10, "the broker's stored-messages count")
        seen = stack.get("/api/v1/metrics")["brokers"][f"{broker.host}:{broker.port}"]
        assert seen["dropped_total"] == alarm["data"]["dropped_total"] and seen["stored_messages"] >= 0

        # the next message of the device shows the gap: seq 3+QUEUE .. 52 never arrived
        _publish(broker, "LOG-Q", range(53, 54), t0)
        wait_for(lambda: _alerts(stack, "device.data_gap"), 10, "the device.data_gap warning")
        [gap] = _alerts(stack, "device.data_gap")
        assert gap["severity"] == "warning" and gap["device_id"] == "LOG-Q"
        assert gap["data"]["missing_seq"] == {"first": 3 + QUEUE, "last": 52}
        assert gap["data"]["missing_messages"] == 50 - QUEUE
        assert gap["data"]["after_ts"] == t0 + (2 + QUEUE) * 60_000 and gap["data"]["before_ts"] == t0 + 53 * 60_000
        row = stack.services.db.query_one("SELECT seq_gaps, last_seq FROM devices WHERE id = 'LOG-Q'")
        assert tuple(row) == (50 - QUEUE, 53)

        # more drops while the alarm is unacknowledged: logged, not raised again (one alarm per episode)
        collector.stop()
        _publish(broker, "LOG-Q", range(54, 74), t0)
        collector = CollectorService(stack.services, with_notifier=False)
        collector.start(connect_timeout=10)
        stack.collector = collector
        key = f"broker.dropped.{broker.host}:{broker.port}"
        before = alarm["data"]["dropped_total"]
        wait_for(lambda: int(stack.services.db.query_one("SELECT value FROM meta WHERE key = ?", (key,))[0])
                 >= before + 20 - QUEUE, 10, "the counter to be seen growing")
        assert len(_alerts(stack, "broker.messages_dropped")) == 1
        # once acknowledged, new drops raise a new alarm
        from coldtrace.services import alerts as lifecycle

        lifecycle.acknowledge(stack.services.db, alarm["id"], actor="qa-anna", comment="queue raised to 100000",
                              now=stack.services.clock.now_ms())
        collector.stop()
        _publish(broker, "LOG-Q", range(74, 94), t0)
        collector = CollectorService(stack.services, with_notifier=False)
        collector.start(connect_timeout=10)
        stack.collector = collector
        wait_for(lambda: len(_alerts(stack, "broker.messages_dropped")) == 2, 10, "a second alarm after the ack")
    finally:
        stack.close()


def test_a_broker_without_the_counter_is_said_once(tmp_path, caplog):
    """A broker that publishes no $SYS dropped counter (here Mosquitto with $SYS off; EMQX and HiveMQ never
    publish it): after the grace period connected, one WARNING says drops there cannot be seen."""
    d = tmp_path / "mosquitto"
    d.mkdir()
    broker = Mosquitto(d, extra_conf="sys_interval 0\n")
    broker.start()
    caplog.set_level(logging.INFO, logger="coldtrace.services.data_loss")
    stack = start_stack(tmp_path, broker.url)
    try:
        guard = stack.collector.broker_guard
        guard.grace_s = 1.0  # instead of 30 s
        wait_for(lambda: guard.sys_state == "absent", 10, "the collector to give up waiting for $SYS")
        _publish(broker, "LOG-N", range(1, 2), stack.services.clock.now_ms())
        wait_for(lambda: stack.services.readings.count() == 1, 10, "a reading: ingest goes on")
        ticks = stack.collector.ticks_led
        wait_for(lambda: stack.collector.ticks_led >= ticks + 3, 10, "three more clock ticks")  # said once only
        said = [r for r in caplog.records if "published no $SYS/broker/publish/messages/dropped" in r.getMessage()]
        assert len(said) == 1 and said[0].levelname == "WARNING"
        assert f"{broker.host}:{broker.port}" in said[0].getMessage() and "broker.messages_dropped" in \
            said[0].getMessage()
        assert _alerts(stack, "broker.messages_dropped") == []
    finally:
        stack.close()
        broker.stop()

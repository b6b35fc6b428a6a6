"""A burst of large messages (a backlog of 300-reading messages queued at the broker) is committed in batches
bounded by their payload bytes (ingest.batch_max_bytes), not in one long transaction for an alarm to wait
behind, and every message is stored (issue 18)."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from coldtrace.settings import load_settings
from coldtrace.wiring import build_services
from collector.mqtt import MqttCollector
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

MESSAGES, PER = 120, 300
CAP = 64 * 1024


def _collector(services, settings) -> MqttCollector:
    return MqttCollector(services.pipeline, settings.mqtt, batch_max_messages=2000, batch_max_wait_ms=1000,
                         batch_max_bytes=CAP)


def test_a_backlog_of_large_messages_is_committed_in_batches_bounded_by_bytes(tmp_path, mosquitto):
    settings = load_settings(data_dir=tmp_path / "data", log_level="WARNING",
                             mqtt={"url": mosquitto.url, "client_id": "ct-bytes"}, ingest={"worker_process": False})
    services = build_services(settings)
    first = _collector(services, settings)  # the persistent session the backlog is queued for
    first.start(connect_timeout=10)
    assert first.wait_connected(10)
    first.stop()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "bytes-pub")
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    base = int(time.time() * 1000) - 3600_000
    sizes = {}
    infos = []
    for i in range(MESSAGES):
        dev = f"BB-{i % 5}"
        body = json.dumps({"v": 1, "device_id": dev, "seq": i // 5,
                           "readings": [{"ts": base + (i * PER + j) * 10, "temp_c": 5.0 + j % 3} for j in range(PER)]})
        sizes[len(sizes)] = len(body)
        infos.append(pub.publish(f"coldtrace/v1/devices/{dev}/readings", body, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    pub.loop_stop()
    pub.disconnect()
    batches: list[int] = []
    col = _collector(services, settings)
    process = col.process

    def recording(batch):
        batches.append(sum(len(m.payload) for m in batch))
        process(batch)

    col.process = recording  # type: ignore[method-assign]
    try:
        col.start(connect_timeout=10)
        wait_for(lambda: col.processed >= MESSAGES, 60, "the backlog acknowledged")
    finally:
        col.stop()
    try:
        assert services.readings.count() == MESSAGES * PER
        largest = max(sizes.values())
        assert sum(batches) == sum(sizes.values())
        # handed on as soon as it reached the cap: at most the cap plus the message that crossed it
        assert max(batches) < CAP + largest, batches
        assert len(batches) >= sum(sizes.values()) // (CAP + largest)
    finally:
        services.close()

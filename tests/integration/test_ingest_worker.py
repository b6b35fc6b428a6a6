"""The collector's ingest child process: killed mid-stream, it is restarted and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import time

import paho.mqtt.client as mqtt
import pytest

from coldtrace.settings import load_settings
from coldtrace.wiring import build_services
from collector.mqtt import MqttCollector
from tests.support.stack import wait_for
from tests.support.store_reads import store_rows

pytestmark = pytest.mark.integration

N = 6000


def test_killed_ingest_child_is_restarted_and_every_message_is_stored_once(tmp_path, mosquitto):
    settings = load_settings(data_dir=tmp_path / "data", log_level="WARNING",
                             mqtt={"url": mosquitto.url, "client_id": "ct-worker-test"})
    assert settings.ingest.worker_process
    services = build_services(settings)
    col = MqttCollector(services.pipeline, settings.mqtt, worker_settings=settings,
                        batch_max_messages=200, batch_max_wait_ms=20)
    col.start(connect_timeout=10)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "worker-pub")
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    base = int(time.time() * 1000) - 3600_000
    try:
        assert col.wait_connected(10)
        first_child = col.worker._proc.pid
        infos = []
        for i in range(N):
            body = {"v": 1, "device_id": f"W-{i % 7}", "seq": i, "readings": [{"ts": base + i * 100, "temp_c": 5.0}]}
            infos.append(pub.publish(f"coldtrace/v1/devices/W-{i % 7}/readings", json.dumps(body), qos=1))
            if i == N // 3:
                wait_for(lambda: col.processed > 0, 20, "first commits")
                os.kill(first_child, signal.SIGKILL)
        for info in infos:
            info.wait_for_publish(30)
        wait_for(lambda: col.processed >= N, 60, "every message acknowledged")
        assert col.worker.restarts >= 1 and col.worker._proc.pid != first_child
    finally:
        pub.loop_stop()
        pub.disconnect()
        col.stop()
        services.close()
    db_path = tmp_path / "data" / "coldtrace.db"
    ((count,),) = store_rows(db_path, "SELECT COUNT(*) FROM readings")
    ((distinct,),) = store_rows(db_path, "SELECT COUNT(*) FROM (SELECT DISTINCT device_id, ts FROM readings) d")
    assert count == distinct == N

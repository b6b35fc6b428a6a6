"""Collectors share one MQTT subscription (issue 15 step 3): with ``mqtt.shared_group`` two collectors
subscribe to ``$share/<group>/coldtrace/v1/devices/+/readings`` (and status) over MQTT 5, a real Mosquitto 2
gives each message to one of them, and every reading is stored once: no message is lost or handled twice."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.core.clock import SystemClock
from coldtrace.services.pipeline import Pipeline
from coldtrace.settings import MqttSettings
from collector.mqtt import MqttCollector
from tests.integration.cluster_support import open_db, reading_store, wait_for

pytestmark = pytest.mark.integration

DEVICES = 20
MESSAGES = 1000  # 2 readings each


def _publish_all(port: int, t0: int) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, "shared-pub", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        infos = []
        for d in range(DEVICES):
            infos.append(pub.publish(f"coldtrace/v1/devices/LOG-{d:03d}/status", json.dumps({"online": True}), qos=1))
        for i in range(MESSAGES):
            d, k = i % DEVICES, i // DEVICES
            body = {"v": 1, "device_id": f"LOG-{d:03d}", "seq": k,
                    "readings": [{"ts": t0 + (2 * k + j) * 60_000, "temp_c": 5.0 + (k % 7) / 10} for j in (0, 1)]}
            infos.append(pub.publish(f"coldtrace/v1/devices/LOG-{d:03d}/readings", json.dumps(body), qos=1))
        for info in infos:
            info.wait_for_publish(30)
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_two_collectors_in_a_shared_group_store_every_message_once(tmp_path, mosquitto, dialect, request):
    target = request.getfixturevalue("postgres_url") if dialect == "postgresql" else str(tmp_path / "ct.db")
    clock = SystemClock()
    fleet, dbs = [], []
    try:
        for i in (1, 2):  # each with its own connection pool, as two processes would have
            db = open_db(target)
            dbs.append(db)
            settings = MqttSettings(url=mosquitto.url, client_id=f"coldtrace-collector-{i}", shared_group="coldtrace",
                                    watch_broker_sys=False)
            c = MqttCollector(Pipeline(db, reading_store(db), clock), settings)
            assert c._filters()[:2] == ["$share/coldtrace/coldtrace/v1/devices/+/readings",
                                        "$share/coldtrace/coldtrace/v1/devices/+/status"]
            c.start(connect_timeout=10)
            assert c.wait_connected(10)
            fleet.append(c)
        t0 = clock.now_ms() - 3 * MESSAGES * 60_000
        _publish_all(mosquitto.port, t0)
        db = dbs[0]
        wait_for(lambda: sum(c.processed for c in fleet) >= MESSAGES + DEVICES, 60, "every message handled")
        # each message went to exactly one member of the group ...
        assert sum(c.processed for c in fleet) == MESSAGES + DEVICES
        assert all(c.processed > 0 for c in fleet), [c.processed for c in fleet]  # ... and both had work
        # ... and every reading is stored once, on the device and at the time it was sent
        rows = db.query("SELECT device_id, ts, COUNT(*) AS n FROM readings GROUP BY device_id, ts")
        assert len(rows) == 2 * MESSAGES and {r["n"] for r in rows} == {1}
        expected = {(f"LOG-{i % DEVICES:03d}", t0 + (2 * (i // DEVICES) + j) * 60_000)
                    for i in range(MESSAGES) for j in (0, 1)}
        assert {(r["device_id"], r["ts"]) for r in rows} == expected
        assert db.query_one("SELECT COUNT(*) FROM devices WHERE online = 1")[0] == DEVICES  # status messages too
        assert db.query_one("SELECT COUNT(*) FROM quarantine")[0] == 0
    finally:
        for c in fleet:
            c.stop()
        for d in dbs:
            d.close()

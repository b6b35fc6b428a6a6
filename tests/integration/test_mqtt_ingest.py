"""Simulated loggers -> real Mosquitto -> collector -> SQLite -> API; quarantine of bad input over MQTT."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from coldtrace.core.model import HOUR
from firmware_sim.mqtt_loggers import LoggerFleet, build_fleet
from tests.support.services import missing_service
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path, mosquitto):
    s = start_stack(tmp_path, mosquitto.url)
    yield s
    s.close()


def test_failing_cooler_reaches_the_api_as_an_alarm(stack, mosquitto):
    now = stack.services.clock.now_ms()
    fleet = build_fleet(3, "failing-cooler", now, 6 * HOUR, 60_000)
    fleet[1].model.failures.clear()  # one healthy logger beside two failing coolers
    sim = LoggerFleet(mosquitto.url, fleet, history_ms=6 * HOUR, client_id="sim-test", tick_s=0.2)
    sim.start()
    try:
        wait_for(lambda: stack.services.readings.count() >= 3 * 360, what="6 h of readings from 3 loggers")
    finally:
        sim.stop()
    devices = {d["id"]: d for d in stack.get("/api/v1/devices")}
    assert set(devices) == {"LOG-0001", "LOG-0002", "LOG-0003"}
    page = stack.get("/api/v1/devices/LOG-0001/readings", limit=50, **{"from": now - 6 * HOUR})
    assert len(page["items"]) == 50 and page["next_from"]
    assert page["items"][0]["ts_ms"] < page["items"][-1]["ts_ms"]
    alarms = stack.get("/api/v1/alerts", type="excursion.alarm")
    alarmed = {a["device_id"] for a in alarms}
    assert alarmed == {"LOG-0001", "LOG-0003"}, alarms
    high = [a for a in alarms if a["data"]["limit_id"] == "high"]
    assert high and all(a["severity"] == "alarm" for a in high)
    exc = stack.get("/api/v1/excursions", device_id="LOG-0001", limit_id="high", **{"from": now - 7 * HOUR})
    assert exc and exc[0]["peak_c"] > 8.0 and exc[0]["duration_min"] >= 30 and exc[0]["alarm_at"]
    # the alarm's webhook event is in the outbox of the same transaction
    n = stack.services.db.query_one("SELECT COUNT(*) FROM outbox WHERE type = 'excursion.alarm'")[0]
    assert n == len(alarms)


def test_bad_messages_are_quarantined_with_their_reason_and_good_ones_around_them_stored(stack, mosquitto):
    pub = shutil.which("mosquitto_pub")
    if pub is None:
        missing_service("mosquitto_pub (mosquitto-clients)")
    now = stack.services.clock.now_ms()

    def send(device: str, payload: bytes) -> None:
        subprocess.run([pub, "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
                        "-t", f"coldtrace/v1/devices/{device}/readings", "-s"], input=payload, check=True, timeout=10)

    def good(i: int) -> bytes:
        return json.dumps({"v": 1, "device_id": "LOG-0100", "seq": i,
                           "readings": [{"ts": now - 60_000 * (10 - i), "temp_c": 5.0 + i / 10}]}).encode()

    send("LOG-0100", good(1))
    send("LOG-0100", b'{"v":1,"device_id":"LOG-0100","readings":[{"ts":1,')  # malformed
    send("LOG-0100", good(2))
    send("LOG-0100", json.dumps({"v": 1, "device_id": "LOG-0999", "readings": []}).encode())  # wrong device
    send("LOG-0100", good(3))
    send("LOG-0100", f'{{"v":1,"device_id":"LOG-0100","readings":[{{"ts":{now - 1000},"temp_c":NaN}}]}}'.encode())
    send("LOG-0100", good(4))
    send("LOG-0100", json.dumps({"v": 9, "device_id": "LOG-0100", "readings": []}).encode())
    send("LOG-0100", good(5))
    wait_for(lambda: stack.services.readings.count("LOG-0100") == 5
             and len(stack.get("/api/v1/quarantine")) == 4, what="5 readings and 4 quarantined")
    q = stack.get("/api/v1/quarantine")
    assert sorted(x["reason"] for x in q) == ["bad_json", "device_mismatch", "out_of_range", "unknown_version"]
    assert all(x["source"] == "mqtt" and x["detail"] and x["raw_preview"] for x in q)
    nan = next(x for x in q if x["reason"] == "out_of_range")
    assert nan["reading_index"] == 0 and "not finite" in nan["detail"]
    assert stack.get("/api/v1/quarantine/summary") == {"bad_json": 1, "device_mismatch": 1, "out_of_range": 1,
                                                       "unknown_version": 1}
    temps = [r["temp_c"] for r in stack.get("/api/v1/devices/LOG-0100/readings")["items"]]
    assert temps == [5.1, 5.2, 5.3, 5.4, 5.5]


def test_a_redelivered_message_changes_nothing(stack, mosquitto):
    import paho.mqtt.client as mqtt

    now = stack.services.clock.now_ms()
    body = json.dumps({"v": 1, "device_id": "LOG-0200", "seq": 1,
                       "readings": [{"ts": now - 120_000, "temp_c": 4.0}, {"ts": now - 60_000, "temp_c": 4.1}]})
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "dup-pub")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    for _ in range(3):
        c.publish("coldtrace/v1/devices/LOG-0200/readings", body, qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    wait_for(lambda: stack.services.pipeline.counters["readings.duplicates"] >= 4, what="duplicates counted")
    assert stack.services.readings.count("LOG-0200") == 2


def test_bad_topic_device_id_is_quarantined(stack, mosquitto):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "bad-topic-pub")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    c.publish("coldtrace/v1/devices/" + "x" * 70 + "/readings", b"{}", qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    wait_for(lambda: stack.get("/api/v1/quarantine/summary").get("schema") == 1, what="quarantined bad topic")

"""Nothing vanishes (issue 12 item 5): empty packs, packs without a temperature, non-JSON status messages are
quarantined with their own reason; status messages never register devices; device ids are anchored."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from coldtrace.core.model import Batch, Reading
from coldtrace.services.pipeline import RAW_CAP
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def registered_stack(tmp_path, mosquitto):
    s = start_stack(tmp_path, mosquitto.url, ingest={"require_registration": True})
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "vanish-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    yield s, pub
    pub.loop_stop()
    pub.disconnect()
    s.close()


def _register(s, dev: str) -> None:
    r = s.client.post("/api/v1/devices", json={"id": dev}, headers=s.headers)
    assert r.status_code == 201, r.text


def test_messages_that_used_to_vanish_are_quarantined_with_their_own_reason(registered_stack):
    s, pub = registered_stack
    _register(s, "LOG-1")
    now_s = int(time.time())
    sends = [
        ("coldtrace/v1/devices/LOG-1/readings", b"[]", "empty_pack"),
        ("coldtrace/v1/devices/LOG-1/readings",
         json.dumps([{"bn": "LOG-1/", "bt": now_s - 60, "n": "battery", "u": "%", "v": 81}]).encode(),
         "no_temperature"),
        ("coldtrace/v1/devices/LOG-1/readings", json.dumps({"v": 1, "device_id": "LOG-1", "readings": []}).encode(),
         "no_readings"),
        ("coldtrace/v1/devices/LOG-1/status", b"online, battery good", "bad_status"),
        ("coldtrace/v1/devices/LOG-1/status", b"[1, 2]", "bad_status"),
    ]
    for topic, payload, _ in sends:
        pub.publish(topic, payload, qos=1).wait_for_publish(10)
    good = {"v": 1, "device_id": "LOG-1", "readings": [{"ts": (now_s - 30) * 1000, "temp_c": 5.0}]}
    pub.publish("coldtrace/v1/devices/LOG-1/readings", json.dumps(good), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.readings.count("LOG-1") == 1 and len(s.get("/api/v1/quarantine")) == len(sends),
             what="the valid reading stored and every other message quarantined")
    q = s.get("/api/v1/quarantine")
    assert sorted((x["topic"], x["reason"], x["device_id"]) for x in q) == sorted((t, r, "LOG-1") for t, _, r in sends)
    assert all(x["raw_preview"] and x["detail"] for x in q)
    assert s.get("/api/v1/quarantine/summary") == {"empty_pack": 1, "no_temperature": 1, "no_readings": 1,
                                                   "bad_status": 2}


def test_a_status_message_never_registers_a_device(registered_stack):
    s, pub = registered_stack
    now_s = int(time.time())
    for dev in ("INTRUDER", "evil <script>"):
        pub.publish(f"coldtrace/v1/devices/{dev}/status", json.dumps({"online": True}), qos=1).wait_for_publish(10)
    body = {"v": 1, "device_id": "INTRUDER", "readings": [{"ts": (now_s - 30) * 1000, "temp_c": 5.0}]}
    pub.publish("coldtrace/v1/devices/INTRUDER/readings", json.dumps(body), qos=1).wait_for_publish(10)
    wait_for(lambda: len(s.get("/api/v1/quarantine")) == 3, what="three quarantine rows")
    assert s.get("/api/v1/devices") == []
    assert s.services.readings.count("INTRUDER") == 0
    q = {(x["topic"].rsplit("/", 1)[1], x["reason"]) for x in s.get("/api/v1/quarantine")}
    assert q == {("status", "unknown_device"), ("status", "schema"), ("readings", "unknown_device")}
    # once registered, its status is recorded (and still registers nothing else)
    _register(s, "INTRUDER")
    pub.publish("coldtrace/v1/devices/INTRUDER/status", json.dumps({"online": True}), qos=1).wait_for_publish(10)
    wait_for(lambda: s.get("/api/v1/devices/INTRUDER")["online"] is True, what="the status recorded")
    assert [d["id"] for d in s.get("/api/v1/devices")] == ["INTRUDER"]


@pytest.mark.parametrize("bad", ["bad id <x>", "LOG-1\n", "LOG-1 ", " LOG-1", "x" * 65, "", "a/b", "ünï",
                                 ".", ".."])
def test_device_registration_refuses_ids_outside_the_anchored_pattern(registered_stack, bad):
    s, _ = registered_stack
    r = s.client.post("/api/v1/devices", json={"id": bad}, headers=s.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation", r.text
    assert s.get("/api/v1/devices") == []


def test_the_pipeline_refuses_a_bad_device_id_from_any_source(registered_stack):
    s, _ = registered_stack
    now = s.services.clock.now_ms()
    res = s.services.pipeline.ingest_batches([Batch("bad id <x>", (Reading("bad id <x>", now - 1000, 5.0),),
                                                    source="serial")])
    assert res.accepted == 0 and [r.reason for r in res.rejected] == ["schema"]
    assert s.get("/api/v1/quarantine", reason="schema")[0]["source"] == "serial"
    assert s.get("/api/v1/devices") == []


@pytest.mark.parametrize("dot_id", [".", ".."])
def test_a_dot_segment_id_on_a_topic_is_quarantined_not_made_a_device(tmp_path, mosquitto, dot_id):
    """Without require_registration a topic's id makes a device; "." and ".." would make one that no URL reaches
    (/api/v1/devices/.. is /api/v1/ in a browser): quarantined `schema` instead, and the next device is stored."""
    s = start_stack(tmp_path, mosquitto.url)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "dot-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        now_ms = int(time.time()) * 1000
        for dev in (dot_id, "LOG-2"):
            body = {"v": 1, "device_id": dev, "readings": [{"ts": now_ms - 30_000, "temp_c": 5.0}]}
            pub.publish(f"coldtrace/v1/devices/{dev}/readings", json.dumps(body), qos=1).wait_for_publish(10)
        wait_for(lambda: s.services.readings.count("LOG-2") == 1, what="the next device's reading stored")
        wait_for(lambda: len(s.get("/api/v1/quarantine")) == 1, what="the dot-segment message quarantined")
        q = s.get("/api/v1/quarantine")[0]
        assert q["reason"] == "schema" and q["topic"] == f"coldtrace/v1/devices/{dot_id}/readings"
        assert [d["id"] for d in s.get("/api/v1/devices")] == ["LOG-2"]
        assert s.services.readings.count(dot_id) == 0
    finally:
        pub.loop_stop()
        pub.disconnect()
        s.close()


def test_a_message_of_many_rejected_readings_keeps_its_raw_bytes_once(tmp_path, mosquitto):
    """A logger whose clock was never set dumps 5,000 readings at epoch 0: 5,000 `too_old` rows, each naming its
    reading, but the message's raw bytes are kept once (with its first row). Each row held a copy (capped at
    64 KiB): one 200 KB message of 10,000 such readings wrote 800 MB, a full disk from a handful of messages."""
    s = start_stack(tmp_path, mosquitto.url)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "raw-once-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        n = 5000
        body = json.dumps({"v": 1, "device_id": "LOG-Z", "readings": [{"ts": 0, "temp_c": 4.0}] * n},
                          separators=(",", ":")).encode()
        pub.publish("coldtrace/v1/devices/LOG-Z/readings", body, qos=1).wait_for_publish(10)
        wait_for(lambda: s.get("/api/v1/quarantine/summary").get("too_old") == n, what="every reading quarantined")
        total, with_raw, indexes = s.services.db.query_one(
            "SELECT SUM(LENGTH(raw)), COUNT(raw), COUNT(DISTINCT reading_index) FROM quarantine"
            " WHERE reason = 'too_old'")
        assert (total, with_raw, indexes) == (min(len(body), RAW_CAP), 1, n)
        first = s.get("/api/v1/quarantine", reason="too_old", limit=1000, offset=n - 1000)
        assert any(x["reading_index"] == 0 and x["raw_preview"].startswith('{"v":1,"device_id":"LOG-Z"')
                   for x in first)
    finally:
        pub.loop_stop()
        pub.disconnect()
        s.close()

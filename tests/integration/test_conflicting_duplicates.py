"""Conflicts are facts (issue 12 item 4): a second reading for a stored (device, ts) with another value is
quarantined `conflicting_duplicate` with both values, counted, raises a `device.data_conflict` warning and
flags the device until QA resolves it (audited); an identical redelivery stays a silent duplicate."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from coldtrace.core.clock import to_iso
from coldtrace.services import auth
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path, mosquitto):
    s = start_stack(tmp_path, mosquitto.url)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "conflict-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    yield s, pub
    pub.loop_stop()
    pub.disconnect()
    s.close()


def _msg(dev: str, ts: int, temp: float, seq: int) -> str:
    return json.dumps({"v": 1, "device_id": dev, "seq": seq, "readings": [{"ts": ts, "temp_c": temp}]})


def test_a_conflicting_reading_is_quarantined_alerted_flagged_and_resolved_by_qa(stack):
    s, pub = stack
    ts = (int(time.time()) - 600) * 1000
    topic = "coldtrace/v1/devices/LOG-C/readings"
    pub.publish(topic, _msg("LOG-C", ts, 5.0, 1), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.readings.count("LOG-C") == 1, what="the first reading stored")
    pub.publish(topic, _msg("LOG-C", ts, 5.0, 1), qos=1).wait_for_publish(10)  # identical redelivery
    pub.publish(topic, _msg("LOG-C", ts, 11.5, 2), qos=1).wait_for_publish(10)  # same time, another value
    pub.publish(topic, _msg("LOG-C", ts + 60_000, 5.1, 3), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.readings.count("LOG-C") == 2, what="the next reading stored")
    wait_for(lambda: s.services.pipeline.counters["readings.duplicates"] == 1, what="one silent duplicate")

    q = s.get("/api/v1/quarantine")
    assert len(q) == 1, q  # the identical redelivery left no trace
    c = q[0]
    assert (c["reason"], c["device_id"], c["source"], c["topic"]) == ("conflicting_duplicate", "LOG-C", "mqtt", topic)
    assert (c["stored_temp_c"], c["stored_seq"], c["received_temp_c"], c["received_seq"]) == (5.0, 1, 11.5, 2)
    assert c["stored_source"] == "mqtt"  # both values, and where each came from (the received one: c["source"])
    assert c["reading_ts"] and c["resolved_at"] is None and "11.5" in c["raw_preview"]
    assert "stored 5" in c["detail"] and "received 11.5" in c["detail"]
    assert s.services.pipeline.counters["readings.conflicts"] == 1
    assert [r.temp_c for r in s.services.readings.query("LOG-C")] == [5.0, 5.1]  # the first value is kept
    alerts = s.get("/api/v1/alerts", type="device.data_conflict")
    assert len(alerts) == 1 and alerts[0]["severity"] == "warning" and alerts[0]["device_id"] == "LOG-C"
    assert alerts[0]["data"]["stored_temp_c"] == 5.0 and alerts[0]["data"]["received_temp_c"] == 11.5
    assert (alerts[0]["data"]["stored_source"], alerts[0]["data"]["source"]) == ("mqtt", "mqtt")
    dev = s.get("/api/v1/devices/LOG-C")
    assert dev["conflicting_data"] is True and dev["open_conflicts"] == 1
    assert [x["id"] for x in s.get("/api/v1/quarantine", open="true")] == [c["id"]]
    # the release helper's contract: open conflicts of a device in a window
    n = s.services.db.query_one(
        "SELECT COUNT(*) FROM quarantine WHERE reason = 'conflicting_duplicate' AND resolved_at IS NULL"
        " AND device_id = ? AND reading_ts >= ? AND reading_ts < ?", ("LOG-C", ts - 1, ts + 1))[0]
    assert n == 1

    # redelivered, the same conflicting message does not open a second conflict
    pub.publish(topic, _msg("LOG-C", ts, 11.5, 2), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.pipeline.counters["readings.duplicates"] == 2, what="the redelivery counted")
    assert len(s.get("/api/v1/quarantine")) == 1

    # a viewer may not resolve; QA may, once, and it is audited
    viewer = auth.create_token(s.services.db, role="viewer", name="v")
    qa = auth.create_token(s.services.db, role="qa", name="qa-anna")
    body = {"decision": "stored_value_correct", "comment": "logger re-sent a corrupted frame; 5.0 confirmed"}
    url = f"/api/v1/quarantine/{c['id']}/resolve"
    assert s.client.post(url, json=body, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    r = s.client.post(url, json=body, headers={"Authorization": f"Bearer {qa}"})
    assert r.status_code == 200, r.text
    assert r.json()["resolved_by"] == "token:qa-anna" and r.json()["resolution"].startswith("stored_value_correct")
    again = s.client.post(url, json=body, headers={"Authorization": f"Bearer {qa}"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_resolved"
    dev = s.get("/api/v1/devices/LOG-C")
    assert dev["conflicting_data"] is False and dev["open_conflicts"] == 0
    audit = s.services.db.query("SELECT actor, action, entity_id FROM audit_log WHERE action ="
                                " 'quarantine.resolve_conflict'")
    assert [tuple(a) for a in audit] == [("token:qa-anna", "quarantine.resolve_conflict", str(c["id"]))]


def test_only_conflicts_can_be_resolved(stack):
    s, pub = stack
    pub.publish("coldtrace/v1/devices/LOG-D/readings", b"{nope", qos=1).wait_for_publish(10)
    wait_for(lambda: len(s.get("/api/v1/quarantine")) == 1, what="the bad message quarantined")
    qid = s.get("/api/v1/quarantine")[0]["id"]
    r = s.client.post(f"/api/v1/quarantine/{qid}/resolve", json={"decision": "other", "comment": "n/a"},
                      headers=s.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_a_conflict"
    r = s.client.post("/api/v1/quarantine/999999/resolve", json={"decision": "other", "comment": "n/a"},
                      headers=s.headers)
    assert r.status_code == 404


def test_over_http_a_conflict_answers_409_and_an_identical_resend_202(stack):
    s, _ = stack
    token = auth.create_device_token(s.services.db, ["LOG-H"])
    h = {"Authorization": f"Bearer {token}"}
    ts = (int(time.time()) - 300) * 1000
    body = {"v": 1, "device_id": "LOG-H", "readings": [{"ts": ts, "temp_c": 4.0}]}
    assert s.client.post("/api/v1/ingest", json=body, headers=h).json()["accepted"] == 1
    r = s.client.post("/api/v1/ingest", json=body, headers=h)
    assert r.status_code == 202 and r.json()["duplicates"] == 1
    body["readings"][0]["temp_c"] = 9.0
    r = s.client.post("/api/v1/ingest", json=body, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflicting_duplicate", r.text
    q = s.get("/api/v1/quarantine", reason="conflicting_duplicate")
    assert [(x["source"], x["stored_temp_c"], x["received_temp_c"]) for x in q] == [("http", 4.0, 9.0)]
    assert q[0]["stored_source"] == "http"


def test_a_conflict_names_the_source_of_each_value(stack):
    """Stored over MQTT, contradicted over HTTP: the quarantine row says mqtt for the stored value and http for
    the received one; once the device has delivered over both, the stored value's source is 'http or mqtt'."""
    s, pub = stack
    token = auth.create_device_token(s.services.db, ["LOG-S"])
    h = {"Authorization": f"Bearer {token}"}
    ts = (int(time.time()) - 900) * 1000
    pub.publish("coldtrace/v1/devices/LOG-S/readings", _msg("LOG-S", ts, 5.0, 1), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.readings.count("LOG-S") == 1, what="the MQTT reading stored")
    r = s.client.post("/api/v1/ingest", headers=h, json={"v": 1, "device_id": "LOG-S", "seq": 2,
                                                          "readings": [{"ts": ts, "temp_c": 7.5}]})
    assert r.status_code == 409, r.text
    (q,) = s.get("/api/v1/quarantine", device_id="LOG-S")
    assert (q["stored_source"], q["stored_temp_c"], q["source"], q["received_temp_c"]) == ("mqtt", 5.0, "http", 7.5)
    assert "from mqtt" in q["detail"] and "from http" in q["detail"]
    # the device now sends over HTTP too: a later conflict cannot tell which of the two stored its value
    r = s.client.post("/api/v1/ingest", headers=h, json={"v": 1, "device_id": "LOG-S", "seq": 3,
                                                          "readings": [{"ts": ts + 60_000, "temp_c": 5.1}]})
    assert r.status_code == 202 and r.json()["accepted"] == 1
    pub.publish("coldtrace/v1/devices/LOG-S/readings", _msg("LOG-S", ts, 6.0, 4), qos=1).wait_for_publish(10)
    wait_for(lambda: len(s.get("/api/v1/quarantine", device_id="LOG-S")) == 2, what="the second conflict")
    newest = s.get("/api/v1/quarantine", device_id="LOG-S")[0]
    assert (newest["stored_source"], newest["source"], newest["received_temp_c"]) == ("http or mqtt", "mqtt", 6.0)


def test_a_message_contradicting_many_readings_raises_one_alarm_not_a_flood(stack):
    """A logger that re-sends a day with other values contradicts every stored reading: each one is its own
    quarantine row (QA resolves them), but the alarm an operator must acknowledge is one per device and message
    (ISA-18.2: an alarm flood hides the alarms that matter), naming how many and the time range."""
    s, pub = stack
    n = 200
    t0 = (int(time.time()) - 86_400) * 1000
    topic = "coldtrace/v1/devices/LOG-F/readings"

    def day(temp: float, seq: int) -> str:
        return json.dumps({"v": 1, "device_id": "LOG-F", "seq": seq,
                           "readings": [{"ts": t0 + i * 60_000, "temp_c": temp} for i in range(n)]})

    pub.publish(topic, day(5.0, 1), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.readings.count("LOG-F") == n, what="the day stored")
    pub.publish(topic, day(6.5, 2), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.pipeline.counters["readings.conflicts"] == n, what="every reading a conflict")
    assert len(s.get("/api/v1/quarantine", reason="conflicting_duplicate", limit=1000)) == n
    assert s.get("/api/v1/devices/LOG-F")["open_conflicts"] == n
    alerts = s.get("/api/v1/alerts", type="device.data_conflict")
    assert len(alerts) == 1, [a["data"].get("reading_ts") for a in alerts]
    d = alerts[0]["data"]
    assert d["conflicts"] == n and (d["stored_temp_c"], d["received_temp_c"]) == (5.0, 6.5)
    assert (d["first_reading_ts"], d["last_reading_ts"]) == (to_iso(t0), to_iso(t0 + (n - 1) * 60_000))
    # the same message redelivered opens nothing new
    pub.publish(topic, day(6.5, 2), qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.pipeline.counters["readings.duplicates"] >= n, what="the redelivery counted")
    assert len(s.get("/api/v1/alerts", type="device.data_conflict")) == 1


def test_a_message_of_many_conflicts_keeps_its_raw_bytes_once(stack):
    """Each conflicting reading is its own row, but the message's raw bytes are kept once (with its first
    conflict): a copy per row was 64 KiB x 10,000 rows for one re-sent message."""
    s, pub = stack
    n = 300
    t0 = (int(time.time()) - 7200) * 1000
    msgs = [json.dumps({"v": 1, "device_id": "LOG-R", "seq": seq,
                        "readings": [{"ts": t0 + i * 1000, "temp_c": temp} for i in range(n)]}) for seq, temp in
            ((1, 5.0), (2, 7.0))]
    pub.publish("coldtrace/v1/devices/LOG-R/readings", msgs[0], qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.readings.count("LOG-R") == n, what="the first message stored")
    pub.publish("coldtrace/v1/devices/LOG-R/readings", msgs[1], qos=1).wait_for_publish(10)
    wait_for(lambda: s.services.pipeline.counters["readings.conflicts"] == n, what="every reading a conflict")
    total, with_raw, rows = s.services.db.query_one(
        "SELECT SUM(LENGTH(raw)), COUNT(raw), COUNT(*) FROM quarantine WHERE reason = 'conflicting_duplicate'")
    assert (total, with_raw, rows) == (len(msgs[1]), 1, n)
    q = s.get("/api/v1/quarantine", reason="conflicting_duplicate", limit=1000)
    assert all(x["stored_temp_c"] == 5.0 and x["received_temp_c"] == 7.0 and x["reading_ts"] for x in q)

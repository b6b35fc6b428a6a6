"""Fuzz (issue 12 item 6): random and adversarial payloads through the real collector (real Mosquitto, the
ingest worker child ON) and through HTTP ingest. For every message: it is stored or quarantined, the collector
is alive (its child never restarted), and a valid message of another device sent after it is stored within
seconds. Status messages and hostile device ids in the topic are fuzzed too: a status is kept or quarantined,
and no device is ever created under an id outside the anchored pattern."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldtrace.services import auth
from tests.support.services import Mosquitto
from tests.support.stack import make_settings, wait_for

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
HTTP_DEVICES = [f"FZH-{i}" for i in range(400)]

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400, -(10**400), 1e308, -1e400, "", "1970-01-01T00:00:00Z",
                     "2026-13-45T99:00:00Z", 0, -1, 1.5]))
values = st.recursive(leaf, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch,
                                                                                    max_size=4), max_leaves=16)
recent_ts = st.integers(min_value=NOW_MS - 30 * 86_400_000, max_value=NOW_MS)


def _dumps(doc) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def native(dev: str):
    reading = st.fixed_dictionaries({"ts": st.one_of(recent_ts, leaf), "temp_c": st.one_of(
        st.floats(min_value=-60, max_value=60), leaf)})
    return st.fixed_dictionaries(
        {"v": st.one_of(st.just(1), leaf), "device_id": st.one_of(st.just(dev), leaf),
         "readings": st.one_of(st.lists(reading, max_size=6), values)},
        optional={"seq": leaf, "battery_pct": leaf, "sent_at": leaf, "extra": values}).map(_dumps)


def senml(dev: str):
    record = st.fixed_dictionaries({}, optional={
        "bn": st.one_of(st.just(f"{dev}/"), st.just(f"urn:dev:id:{dev}:"), leaf), "bt": st.one_of(
            st.integers(min_value=NOW_MS // 1000 - 86_400, max_value=NOW_MS // 1000), leaf),
        "n": st.sampled_from(["temp", "temperature", "battery", "", "x"]), "u": st.sampled_from(["Cel", "K", "%", 1]),
        "v": st.one_of(st.floats(min_value=-60, max_value=400), leaf), "t": st.one_of(st.integers(-600, 0), leaf),
        "bver": st.one_of(st.just(10), leaf)})
    return st.lists(record, max_size=5).map(_dumps)


def payloads(dev: str):
    return st.one_of(
        native(dev), senml(dev), values.map(_dumps), st.binary(max_size=120),
        st.integers(min_value=900, max_value=3000).map(lambda d: b"[" * d + b"]" * d),
        st.integers(min_value=900, max_value=3000).map(lambda d: b'{"v":1,"x":' + b"[" * d + b"]" * d + b"}"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from api.app import create_app
    from coldtrace.wiring import build_services
    from collector.service import CollectorService

    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "mosquitto").mkdir()
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    s = make_settings(tmp, broker.url, ingest={"worker_process": True}, log_level="ERROR")
    services = build_services(s)
    collector = CollectorService(services, with_notifier=False)
    collector.start(connect_timeout=10)
    assert collector.mqtt.wait_connected(10)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "fuzz-pub")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    client = TestClient(create_app(s, services=services))
    token = auth.create_device_token(services.db, HTTP_DEVICES + ["FZH-CANARY"])
    state = {"n": 0, "db": s.db_path}
    yield services, collector, pub, client, {"Authorization": f"Bearer {token}"}, state
    client.close()
    pub.loop_stop()
    pub.disconnect()
    collector.stop()
    services.close()
    broker.stop()


def _counts(db_path, where: str, args: tuple) -> tuple[int, int]:
    with sqlite3.connect(db_path, timeout=30) as c:
        q = c.execute(f"SELECT COUNT(*) FROM quarantine WHERE {where}", args).fetchone()[0]
        r = c.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    return q, r


def _stored(db_path, dev: str, ts: int) -> bool:
    with sqlite3.connect(db_path, timeout=30) as c:
        return c.execute("SELECT 1 FROM readings WHERE device_id = ? AND ts = ?", (dev, ts)).fetchone() is not None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_mqtt_payload_is_stored_or_quarantined_and_ingestion_goes_on(world, data):
    services, collector, pub, _, _, state = world
    state["n"] += 1
    n = state["n"]
    dev = f"FZM-{n}"
    payload = data.draw(payloads(dev))
    topic = f"coldtrace/v1/devices/{dev}/readings"
    pub.publish(topic, payload, qos=1).wait_for_publish(10)
    canary_ts = NOW_MS - 3_600_000 + n * 1000
    canary = {"v": 1, "device_id": "FZM-CANARY", "readings": [{"ts": canary_ts, "temp_c": 5.0}]}
    pub.publish("coldtrace/v1/devices/FZM-CANARY/readings", json.dumps(canary), qos=1).wait_for_publish(10)
    wait_for(lambda: _stored(state["db"], "FZM-CANARY", canary_ts), 15, "the canary after the fuzz message")
    quarantined, _ = _counts(state["db"], "topic = ?", (topic,))
    with sqlite3.connect(state["db"], timeout=30) as c:
        own = c.execute("SELECT COUNT(*) FROM readings WHERE device_id = ?", (dev,)).fetchone()[0]
    assert quarantined > 0 or own > 0, payload[:300]  # stored or quarantined: never vanished
    worker = collector.mqtt.worker
    assert worker.restarts == 0 and worker._proc.is_alive()


# a topic level a broker passes on (no wildcard, no level separator; Mosquitto disconnects a client whose topic
# holds a control character or a non-character, so those never reach ColdTrace): valid ids and hostile ones
topic_level = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="+#/", blacklist_categories=("Cc", "Cs", "Cn")), min_size=1,
            max_size=70),
    st.sampled_from(["evil <script>", "LOG-1 ", " LOG-1", "x" * 65, "ünï", "..", "$SYS", "a" * 64]))


def _status_kept(db_path, dev: str) -> bool:
    with sqlite3.connect(db_path, timeout=30) as c:
        return c.execute("SELECT 1 FROM devices WHERE id = ? AND status_json IS NOT NULL", (dev,)).fetchone() \
            is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_status_message_and_any_topic_level_is_recorded_or_quarantined(world, data):
    """Status messages (random payloads) and hostile device ids in the topic: a status is kept on its device
    or quarantined (``bad_status``, ``schema`` for an id outside the anchored pattern); a reading under a bad
    id is quarantined; the collector goes on."""
    services, collector, pub, _, _, state = world
    state["n"] += 1
    n = state["n"]
    kind = data.draw(st.sampled_from(["status", "readings"]))
    level = data.draw(st.one_of(st.just(f"FZS-{n}"), topic_level))
    payload = data.draw(st.one_of(values.map(_dumps), st.binary(max_size=80), native(level), st.sampled_from(
        [b"online", b'{"online": true}', b'{"online": "yes"}', b"[true]"])))
    topic = f"coldtrace/v1/devices/{level}/{kind}"
    pub.publish(topic, payload, qos=1).wait_for_publish(10)
    canary_ts = NOW_MS - 10_800_000 + n * 1000
    canary = {"v": 1, "device_id": "FZS-CANARY", "readings": [{"ts": canary_ts, "temp_c": 5.0}]}
    pub.publish("coldtrace/v1/devices/FZS-CANARY/readings", json.dumps(canary), qos=1).wait_for_publish(10)
    wait_for(lambda: _stored(state["db"], "FZS-CANARY", canary_ts), 15, "the canary after the fuzz message")
    quarantined, _ = _counts(state["db"], "topic = ?", (topic,))
    if quarantined == 0:  # not quarantined: then kept, on a device whose id matches the anchored pattern
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", level), (topic, payload[:200])
        if kind == "status":
            assert _status_kept(state["db"], level), (topic, payload[:200])
        else:
            with sqlite3.connect(state["db"], timeout=30) as c:
                own = c.execute("SELECT COUNT(*) FROM readings WHERE device_id = ?", (level,)).fetchone()[0]
            assert own > 0, (topic, payload[:200])
    else:
        with sqlite3.connect(state["db"], timeout=30) as c:
            reasons = {r for (r,) in c.execute("SELECT reason FROM quarantine WHERE topic = ?", (topic,))}
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", level):
            assert reasons == {"schema"}, (topic, reasons)
    with sqlite3.connect(state["db"], timeout=30) as c:  # no device was ever created under a bad id
        ids = [d for (d,) in c.execute("SELECT id FROM devices")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", d) for d in ids), [d for d in ids if not d.isascii()][:5]
    worker = collector.mqtt.worker
    assert worker.restarts == 0 and worker._proc.is_alive()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_http_payload_gets_a_json_answer_below_500_and_is_stored_or_quarantined(world, data):
    services, _, _, client, headers, state = world
    state["n"] += 1
    n = state["n"]
    dev = HTTP_DEVICES[n % len(HTTP_DEVICES)]
    payload = data.draw(payloads(dev))
    ctype = data.draw(st.sampled_from(["application/json", "application/senml+json"]))
    q_before, r_before = _counts(state["db"], "source = 'http'", ())
    r = client.post("/api/v1/ingest", content=payload, headers={**headers, "Content-Type": ctype})
    assert r.status_code < 500, (r.status_code, r.text, payload[:300])
    body = r.json()
    q_after, r_after = _counts(state["db"], "source = 'http'", ())
    if r.status_code == 202:
        assert body["accepted"] + body["duplicates"] + len(body["rejected"]) > 0
        assert r_after > r_before or q_after > q_before or body["duplicates"] > 0
    elif r.status_code == 403:  # a device the token does not hold: refused before anything is stored
        assert body["error"]["code"] == "device_not_allowed" and q_after == q_before and r_after == r_before
    else:
        assert 400 <= r.status_code < 500 and body["error"]["code"] and q_after > q_before, body
    canary_ts = NOW_MS - 7_200_000 + n * 1000
    ok = client.post("/api/v1/ingest", headers=headers, json={"v": 1, "device_id": "FZH-CANARY", "readings": [
        {"ts": canary_ts, "temp_c": 5.0}]})
    assert ok.status_code == 202 and ok.json()["accepted"] == 1
    assert not math.isnan(services.readings.query("FZH-CANARY", canary_ts, canary_ts + 1)[0].temp_c)

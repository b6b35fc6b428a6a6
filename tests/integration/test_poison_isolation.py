"""Poison isolation (issue 12 item 1): no message can stop, slow or reorder the ingestion of the others.

Each payload that used to kill the ingest worker child (and so, restarted with the same unacknowledged
batch, stop MQTT ingestion for every device) is published to a real Mosquitto with the worker process ON,
followed by valid messages from other devices: every poison ends quarantined with its reason, every valid
message is stored, and the child is never restarted. Over HTTP the same payloads answer a 4xx JSON error with
a stable code and are quarantined.
"""

from __future__ import annotations

import json
import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.errors import PayloadError, StoreError
from coldtrace.core.model import Reading
from coldtrace.services import auth
from coldtrace.services.pipeline import Pipeline, RawMessage, is_transient
from coldtrace.settings import load_settings
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore
from coldtrace.wiring import build_services
from collector.mqtt import MqttCollector
from tests.support.stack import start_stack, wait_for
from tests.support.store_reads import store_rows

pytestmark = pytest.mark.integration

NOW_S = int(time.time())


def _native(dev: str, **over) -> bytes:
    body = {"v": 1, "device_id": dev, "readings": [{"ts": (NOW_S - 60) * 1000, "temp_c": 5.0}]}
    body.update(over)
    return json.dumps(body).encode()


# (name, device in the topic, payload, the reason it must be quarantined with)
POISON = [
    ("seq >= 2^63", "P-SEQ", _native("P-SEQ", seq=2**63), "out_of_range"),
    ("seq past 64 bits", "P-SEQ2", _native("P-SEQ2", seq=10**30), "out_of_range"),
    ("JSON nested 1500 deep", "P-DEEP", b'{"v":1,"device_id":"P-DEEP","x":' + b"[" * 1500 + b"]" * 1500 + b"}",
     "schema"),
    ("SenML bt NaN", "P-NAN", b'[{"bn":"P-NAN/","bt":NaN,"n":"temp","u":"Cel","v":5}]', "out_of_range"),
    ("SenML bt -1e400", "P-INF", b'[{"bn":"P-INF/","bt":-1e400,"n":"temp","u":"Cel","v":5}]', "out_of_range"),
    ("SenML 400-digit v in K", "P-KEL",
     b'[{"bn":"P-KEL/","bt":%d,"n":"temp","u":"K","v":%s}]' % (NOW_S - 60, b"9" * 400), "out_of_range"),
    ("400-digit temp_c", "P-BIG", _native("P-BIG", readings=[{"ts": (NOW_S - 60) * 1000, "temp_c": 10**400}]),
     "out_of_range"),
    ("400-digit ts", "P-TS", _native("P-TS", readings=[{"ts": 10**400, "temp_c": 5.0}]), "future_timestamp"),
    ('"v": true', "P-VER", _native("P-VER", v=True), "unknown_version"),
    ("epoch 0", "P-EPOCH", _native("P-EPOCH", readings=[{"ts": 0, "temp_c": 5.0}]), "too_old"),
]


def _reasons(db_path) -> dict[str, list[str]]:
    rows = store_rows(db_path, "SELECT device_id, reason FROM quarantine", missing_ok=True)
    out: dict[str, list[str]] = {}
    for dev, reason in rows:
        out.setdefault(dev, []).append(reason)
    return out


def test_poison_messages_are_quarantined_and_the_worker_child_never_restarts(tmp_path, mosquitto):
    settings = load_settings(data_dir=tmp_path / "data", log_level="ERROR",
                             mqtt={"url": mosquitto.url, "client_id": "ct-poison"})
    assert settings.ingest.worker_process, "the test is about the worker child: it must be on"
    services = build_services(settings)
    col = MqttCollector(services.pipeline, settings.mqtt, worker_settings=settings, batch_max_messages=50,
                        batch_max_wait_ms=20)
    col.start(connect_timeout=10)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "poison-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    db_path = tmp_path / "data" / "coldtrace.db"
    try:
        assert col.wait_connected(10)
        child = col.worker._proc.pid
        infos = []
        for i, (_, dev, payload, _) in enumerate(POISON):
            infos.append(pub.publish(f"coldtrace/v1/devices/{dev}/readings", payload, qos=1))
            for k in range(3):  # valid messages of other devices right behind the poison
                good = f"GOOD-{k}"
                body = {"v": 1, "device_id": good, "seq": i,
                        "readings": [{"ts": (NOW_S - 3600 + i) * 1000, "temp_c": 4.0 + k}]}
                infos.append(pub.publish(f"coldtrace/v1/devices/{good}/readings", json.dumps(body), qos=1))
        for info in infos:
            info.wait_for_publish(10)

        def stored_goods() -> int:
            rows = store_rows(db_path, "SELECT COUNT(*) FROM readings WHERE device_id LIKE 'GOOD-%'", missing_ok=True)
            return rows[0][0] if rows else 0

        wait_for(lambda: stored_goods() == 3 * len(POISON) and sum(map(len, _reasons(db_path).values()))
                 >= len(POISON), 30, "every valid message stored and every poison quarantined")
        wait_for(lambda: col.processed == len(infos), 10, "every message acknowledged")
        assert col.worker.restarts == 0 and col.worker._proc.pid == child and col.worker._proc.is_alive()
    finally:
        pub.loop_stop()
        pub.disconnect()
        col.stop()
        services.close()
    reasons = _reasons(db_path)
    for name, dev, _, reason in POISON:
        assert reasons.get(dev) == [reason], (name, reasons.get(dev))
    ((poisoned,),) = store_rows(db_path, "SELECT COUNT(*) FROM readings WHERE device_id LIKE 'P-%'")
    assert poisoned == 0


def test_the_embedded_broker_path_of_coldtrace_run_isolates_the_same_poison(tmp_path):
    """`coldtrace run`'s default: the embedded broker commits each PUBLISH to its inbox and the drainer feeds
    the pipeline. The same poison, each followed by valid messages of other devices: every valid message is
    stored, every poison quarantined with its reason, and the drainer empties the inbox (never stuck on a row)."""
    from coldtrace.adapters.embedded_broker import DurableInbox, EmbeddedBroker, InboxDrainer
    from collector.ingest import ingest_messages
    from tests.support.embedded_kill import free_port

    settings = load_settings(data_dir=tmp_path / "data", log_level="ERROR", mqtt={"url": None})
    services = build_services(settings)
    inbox = DurableInbox(tmp_path / "data" / "embedded-inbox.db")
    broker = EmbeddedBroker("127.0.0.1", free_port(), inbox=inbox)
    broker.start()
    drainer = InboxDrainer(inbox.path, lambda items: ingest_messages(services.pipeline, items), inbox.arrived)
    drainer.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "poison-embedded")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    db_path = tmp_path / "data" / "coldtrace.db"
    try:
        infos = []
        for i, (_, dev, payload, _) in enumerate(POISON):
            infos.append(pub.publish(f"coldtrace/v1/devices/{dev}/readings", payload, qos=1))
            body = {"v": 1, "device_id": "GOOD-E", "seq": i,
                    "readings": [{"ts": (NOW_S - 3600 + i) * 1000, "temp_c": 4.5}]}
            infos.append(pub.publish("coldtrace/v1/devices/GOOD-E/readings", json.dumps(body), qos=1))
        for info in infos:
            info.wait_for_publish(10)
        wait_for(lambda: services.readings.count("GOOD-E") == len(POISON)
                 and sum(map(len, _reasons(db_path).values())) >= len(POISON), 30,
                 "every valid message stored and every poison quarantined")
        wait_for(lambda: drainer.processed == len(infos), 10, "the inbox drained")
    finally:
        pub.loop_stop()
        pub.disconnect()
        drainer.stop()
        broker.stop()
        services.close()
    reasons = _reasons(db_path)
    for name, dev, _, reason in POISON:
        assert reasons.get(dev) == [reason], (name, reasons.get(dev))
    with sqlite3.connect(tmp_path / "data" / "embedded-inbox.db") as c:
        assert c.execute("SELECT COUNT(*) FROM inbox").fetchone()[0] == 0  # nothing left behind, nothing stuck


def test_a_collector_restart_does_not_meet_the_poison_again(tmp_path, mosquitto):
    """The poison was acknowledged with its quarantine: a new collector on the same session gets nothing again."""
    settings = load_settings(data_dir=tmp_path / "data", log_level="ERROR",
                             mqtt={"url": mosquitto.url, "client_id": "ct-poison-2"})
    services = build_services(settings)
    db_path = tmp_path / "data" / "coldtrace.db"
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "poison-pub-2")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        for round_ in range(2):
            col = MqttCollector(services.pipeline, settings.mqtt, worker_settings=settings, batch_max_wait_ms=20)
            col.start(connect_timeout=10)
            assert col.wait_connected(10)
            if round_ == 0:
                pub.publish("coldtrace/v1/devices/P-SEQ/readings", POISON[0][2], qos=1).wait_for_publish(10)
            body = {"v": 1, "device_id": "GOOD-R", "readings": [{"ts": (NOW_S - 100 + round_) * 1000,
                                                                 "temp_c": 5.0}]}
            pub.publish("coldtrace/v1/devices/GOOD-R/readings", json.dumps(body), qos=1).wait_for_publish(10)
            wait_for(lambda r=round_: services.readings.count("GOOD-R") == r + 1, 20, "the valid reading stored")
            wait_for(lambda c=col: c.processed >= 1, 10, "acknowledged")
            col.stop()
            assert col.worker.restarts == 0
    finally:
        pub.loop_stop()
        pub.disconnect()
        services.close()
    assert _reasons(db_path) == {"P-SEQ": ["out_of_range"]}


class _FailingStore(SqliteReadingStore):
    """The real SQLite store, except that one device's readings make it raise (a bug only that data hits)."""

    def write(self, readings):
        if any(r.device_id == "BUG" for r in readings):
            raise ValueError("a defect only this device's data triggers")
        return super().write(readings)


def test_a_batch_that_fails_is_split_and_only_the_guilty_message_is_quarantined(tmp_path):
    db = Database(tmp_path / "ct.db")
    clock = ManualClock()
    pipeline = Pipeline(db, _FailingStore(db), clock)
    now = clock.now_ms()

    def msg(dev: str, temp: float) -> RawMessage:
        body = {"v": 1, "device_id": dev, "readings": [{"ts": now - 1000, "temp_c": temp}]}
        return RawMessage(json.dumps(body).encode(), "mqtt", dev, None, f"coldtrace/v1/devices/{dev}/readings")

    try:
        result = pipeline.ingest_raw_many([msg("A", 4.0), msg("BUG", 5.0), msg("B", 6.0)])
        assert result.accepted == 2 and result.poisoned
        assert [(r.reason, r.detail.split(" ")[0]) for r in result.rejected] == [("internal_error", "ValueError")]
        assert pipeline.readings.query("A") == [Reading("A", now - 1000, 4.0)]
        assert pipeline.readings.query("B") == [Reading("B", now - 1000, 6.0)]
        rows = db.query("SELECT device_id, reason, detail, raw FROM quarantine")
        assert [(r[0], r[1]) for r in rows] == [("BUG", "internal_error")]
        assert "ValueError" in rows[0][2] and json.loads(rows[0][3])["device_id"] == "BUG"
    finally:
        db.close()


class _NulRefusingStore(SqliteReadingStore):
    """The real SQLite store, refusing one device's data as PostgreSQL refuses a NUL in text (PayloadError)."""

    def write(self, readings):
        if any(r.device_id == "NUL" for r in readings):
            raise PayloadError("nul_character", "a text value holds a NUL (0x00) character, which cannot be stored")
        return super().write(readings)


def test_a_value_the_store_refuses_is_the_messages_fault_quarantined_never_retried(tmp_path):
    """A PayloadError from the store (PostgreSQL refusing a NUL) is no store outage: were it retried like one,
    the collector would meet it again forever and nothing behind it would be stored."""
    assert is_transient(StoreError("disk full")) and is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(PayloadError("nul_character", "NUL"))
    db = Database(tmp_path / "ct.db")
    clock = ManualClock()
    pipeline = Pipeline(db, _NulRefusingStore(db), clock)
    now = clock.now_ms()

    def msg(dev: str) -> RawMessage:
        body = {"v": 1, "device_id": dev, "readings": [{"ts": now - 1000, "temp_c": 5.0}]}
        return RawMessage(json.dumps(body).encode(), "mqtt", dev, None, f"coldtrace/v1/devices/{dev}/readings")

    try:
        result = pipeline.ingest_raw_many([msg("A"), msg("NUL"), msg("B")])  # raises nothing
        assert result.accepted == 2 and result.poisoned and [r.reason for r in result.rejected] == ["schema"]
        rows = db.query("SELECT device_id, reason, detail FROM quarantine")
        assert [(r[0], r[1]) for r in rows] == [("NUL", "schema")] and "PayloadError" in rows[0][2]
        assert [pipeline.readings.count(d) for d in ("A", "NUL", "B")] == [1, 0, 1]
    finally:
        db.close()


@pytest.fixture
def http(tmp_path):
    s = start_stack(tmp_path)
    devices = [dev for _, dev, _, _ in POISON]
    token = auth.create_device_token(s.services.db, devices + ["GOOD-H"])
    yield s, {"Authorization": f"Bearer {token}"}
    s.close()


@pytest.mark.parametrize("name,dev,payload,reason", POISON, ids=[p[0] for p in POISON])
def test_http_answers_poison_with_a_4xx_code_and_quarantines_it(http, name, dev, payload, reason):
    s, h = http
    ctype = "application/senml+json" if payload.startswith(b"[") else "application/json"
    r = s.client.post("/api/v1/ingest", content=payload, headers={**h, "Content-Type": ctype})
    assert 400 <= r.status_code < 500 and r.json()["error"]["code"] == reason, (r.status_code, r.text)
    q = s.get("/api/v1/quarantine")
    assert [x["reason"] for x in q] == [reason] and q[0]["source"] == "http" and q[0]["raw_preview"]
    # attributed to the device it claims, unless the claim itself cannot be read (1500 levels deep)
    assert q[0]["device_id"] == (None if "deep" in name else dev)
    good = {"v": 1, "device_id": "GOOD-H", "readings": [{"ts": (NOW_S - 5) * 1000, "temp_c": 5.0}]}
    r = s.client.post("/api/v1/ingest", json=good, headers=h)
    assert r.status_code == 202 and r.json()["accepted"] == 1


def test_a_batch_the_child_dies_on_twice_is_split_and_a_message_it_dies_on_twice_is_quarantined(tmp_path):
    """The last line against a restart loop: a child that dies (a crash in C, the OOM killer) with the same
    batch in hand twice gets its messages one by one; one message in hand at two deaths is quarantined."""
    from collector.ingest_worker import WorkerIngest, _Entry

    settings = load_settings(data_dir=tmp_path / "data", log_level="ERROR")
    poisoned: list[tuple[str, str]] = []
    w = WorkerIngest(settings, on_done=lambda batch, alerts: None,
                     on_poison=lambda item, detail: poisoned.append((item[0], detail)))
    items = [(f"coldtrace/v1/devices/D{i}/readings", b"{}") for i in range(3)]
    w._unanswered.append(_Entry(["m0", "m1", "m2"], items))
    w._unanswered.append(_Entry(["m3"], [("coldtrace/v1/devices/D3/readings", b"{}")]))
    assert w._isolate_head() == [] and len(w._unanswered) == 2  # first death: resent as it was
    assert w._isolate_head() == []  # second death on it: split into single messages, in order
    assert [e.batch for e in w._unanswered] == [["m0"], ["m1"], ["m2"], ["m3"]]
    done = w._isolate_head()  # a death with m0 alone in hand (it already counts one): quarantined
    assert [e.batch for e in done] == [["m0"]] and [e.batch for e in w._unanswered] == [["m1"], ["m2"], ["m3"]]
    assert poisoned and poisoned[0][0] == items[0][0] and "died twice" in poisoned[0][1]

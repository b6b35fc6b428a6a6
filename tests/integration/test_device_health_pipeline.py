"""Issue 3 through the real Pipeline on a SQLite file: deadman offline by the clock, online when data returns,
buffered data filling the gap evaluated like any late data; battery and sensor faults from ingest."""

from __future__ import annotations

import json

import pytest

from coldtrace.core.excursions import evaluate
from coldtrace.core.model import BUILTIN_PROFILES, MINUTE
from coldtrace.services.pipeline import Pipeline
from coldtrace.store.db import Database

pytestmark = pytest.mark.integration


@pytest.fixture
def env(pipeline_env):
    return pipeline_env


def send(pipeline: Pipeline, readings: list[tuple[int, float]], battery: float | None = None, dev="LOG-1"):
    body = {"v": 1, "device_id": dev, "readings": [{"ts": t, "temp_c": v} for t, v in readings]}
    if battery is not None:
        body["battery_pct"] = battery
    return pipeline.ingest_raw(json.dumps(body).encode(), topic_device_id=dev)


def alerts(db: Database, type_: str) -> list:
    return db.query("SELECT * FROM alerts WHERE type = ? ORDER BY ts", (type_,))


def test_offline_after_31_minutes_online_when_data_returns_and_buffered_data_is_evaluated(env):
    clock, db, pipeline = env
    t0 = clock.now_ms()
    assert not send(pipeline, [(t0, 5.0)]).rejected
    assert pipeline.tick() == 0

    clock.advance(31 * MINUTE)  # no data for 31 min (> 30 min offline_after of the 2-8 °C profile)
    assert pipeline.tick() == 1
    clock.advance(5 * MINUTE)
    assert pipeline.tick() == 0  # raised once per outage
    (off,) = alerts(db, "device.offline")
    assert off["ts"] == t0 + 30 * MINUTE and off["device_id"] == "LOG-1"
    assert db.query_one("SELECT online FROM devices WHERE id = 'LOG-1'")[0] == 0
    assert db.query_one("SELECT count(*) FROM outbox WHERE alert_id = ?", (off["id"],))[0] == 1

    # the logger is back (t0 + 36 min) and sends its live reading first ...
    send(pipeline, [(t0 + 36 * MINUTE, 5.0)])
    (on,) = alerts(db, "device.online")
    assert on["ts"] == t0 + 36 * MINUTE
    assert db.query_one("SELECT online FROM devices WHERE id = 'LOG-1'")[0] == 1
    assert db.query("SELECT * FROM excursions") == []

    # ... then its buffer: 5.0 at +5, 9.5 from +10 to +35 min. By hand (high-warn 8.0, 15 min delay):
    # episode starts at +10, covered 15 min at the reading of +25 -> alarm there; ends at +36 (5.0) after
    # 26 covered minutes; "high" (30 min delay, 4 h budget) opens too but never alarms.
    buffered = [(t0 + 5 * MINUTE, 5.0)] + [(t0 + k * MINUTE, 9.5) for k in range(10, 40, 5)]
    send(pipeline, buffered)
    rows = {r["limit_id"]: r for r in db.query("SELECT * FROM excursions WHERE superseded = 0")}
    assert set(rows) == {"high-warn", "high"}
    hw = rows["high-warn"]
    assert (hw["start_ts"], hw["end_ts"], hw["alarm_ts"], hw["duration_ms"]) == (
        t0 + 10 * MINUTE, t0 + 36 * MINUTE, t0 + 25 * MINUTE, 26 * MINUTE)
    assert rows["high"]["alarm_ts"] is None
    (alarm,) = alerts(db, "excursion.alarm")
    assert (alarm["severity"], alarm["ts"]) == ("warning", t0 + 25 * MINUTE)
    # the stored excursions are the batch evaluation of the stored readings
    t, v = pipeline.readings.arrays("LOG-1")
    batch = evaluate("LOG-1", BUILTIN_PROFILES["2-8C"], t, v)
    assert {(e.limit_id, e.start_ts, e.end_ts, e.alarm_ts) for e in batch} == {
        (r["limit_id"], r["start_ts"], r["end_ts"], r["alarm_ts"]) for r in rows.values()}
    assert len(alerts(db, "device.offline")) == 1 and len(alerts(db, "device.online")) == 1


def test_battery_low_and_sensor_faults_from_ingest_are_persisted(env):
    clock, db, pipeline = env
    t0 = clock.now_ms()
    send(pipeline, [(t0, 5.0)], battery=40)
    send(pipeline, [(t0 + MINUTE, 5.0)], battery=19)
    send(pipeline, [(t0 + 2 * MINUTE, 5.1)], battery=18)
    assert len(alerts(db, "device.battery_low")) == 1
    send(pipeline, [(t0 + 3 * MINUTE, 30.0)])  # 24.9 °C in one minute: an impossible jump
    r = send(pipeline, [(t0 + 4 * MINUTE, -300.0), (t0 + 5 * MINUTE, -300.0), (t0 + 6 * MINUTE, 500.0)])
    assert [x.reason for x in r.rejected] == ["out_of_range"] * 3
    kinds = sorted(json.loads(a["data"])["kind"] for a in alerts(db, "device.sensor_fault"))
    assert kinds == ["jump", "out_of_range"]
    state = json.loads(db.query_one("SELECT state FROM device_health WHERE device_id = 'LOG-1'")[0])
    assert state["battery_low"] is True and state["reject_run"] == 3

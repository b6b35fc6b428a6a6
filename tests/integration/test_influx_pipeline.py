"""Simulated loggers -> real Mosquitto -> collector -> real influxd, the API answering from influxd; and an
influxd outage of 30 s in the middle of a stream that loses nothing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from coldtrace.core.model import HOUR, MINUTE
from coldtrace.store.influx import InfluxReadingStore
from firmware_sim.mqtt_loggers import LoggerFleet, build_fleet
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration


def influx_settings(url: str, database: str, **extra) -> dict:
    return {"store": {"backend": "influx", "influx": {"url": url, "database": database, **extra}}}


def test_simulator_to_influxd_and_the_api_answers_from_influxd(tmp_path, mosquitto, influxd_server, influx_db):
    stack = start_stack(tmp_path, mosquitto.url, **influx_settings(influxd_server.url, influx_db))
    assert isinstance(stack.services.readings, InfluxReadingStore)
    now = stack.services.clock.now_ms()
    fleet = build_fleet(3, "failing-cooler", now, 6 * HOUR, MINUTE)
    fleet[1].model.failures.clear()
    sim = LoggerFleet(mosquitto.url, fleet, history_ms=6 * HOUR, client_id="sim-influx", tick_s=0.2)
    sim.start()
    try:
        wait_for(lambda: stack.services.readings.count() >= 3 * 360, what="6 h of readings from 3 loggers")
    finally:
        sim.stop()
    try:
        # the readings are in influxd (asked directly, not through our adapter) and not in SQLite
        raw = influxd_server.query('SELECT count(temp_c) FROM reading GROUP BY device_id', db=influx_db)
        per_device = {s["tags"]["device_id"]: s["values"][0][1] for s in raw["results"][0]["series"]}
        assert set(per_device) == {"LOG-0001", "LOG-0002", "LOG-0003"} and min(per_device.values()) >= 360
        assert stack.services.db.query_one("SELECT COUNT(*) FROM readings")[0] == 0

        page = stack.get("/api/v1/devices/LOG-0001/readings", limit=100, **{"from": now - 6 * HOUR})
        direct = influxd_server.query(
            f"SELECT temp_c FROM reading WHERE device_id = 'LOG-0001' AND time >= {now - 6 * HOUR}ms"
            " ORDER BY time LIMIT 100", db=influx_db)["results"][0]["series"][0]["values"]
        assert [(i["ts_ms"], i["temp_c"]) for i in page["items"]] == [(t, v) for t, v in direct]
        chart = stack.get("/api/v1/devices/LOG-0001/chart", points=36,
                          **{"from": now - 7 * HOUR, "to": now + HOUR})
        assert sum(b["count"] for b in chart["buckets"]) == per_device["LOG-0001"]
        assert max(b["max_c"] for b in chart["buckets"]) > 8.0  # the failing cooler, seen through influxd
        # the engines ran on readings stored in influxd: the failing coolers alarmed, the healthy one did not
        alarmed = {a["device_id"] for a in stack.get("/api/v1/alerts", type="excursion.alarm")}
        assert alarmed == {"LOG-0001", "LOG-0003"}
    finally:
        stack.close()


@pytest.mark.slow
def test_influxd_down_for_30_s_during_a_stream_loses_nothing(tmp_path, mosquitto, influxd):
    # a short retry budget so the outage outlasts it: writes fail with StoreError, the collector does not
    # acknowledge and retries the same messages until influxd is back
    stack = start_stack(tmp_path, mosquitto.url, **influx_settings(influxd.url, "ct", retry_budget_s=3.0))
    now = stack.services.clock.now_ms()
    fleet = build_fleet(3, "normal", now, 10 * MINUTE, 1000)
    sim = LoggerFleet(mosquitto.url, fleet, history_ms=10 * MINUTE, client_id="sim-outage", tick_s=0.5)
    sim.start()
    try:
        wait_for(lambda: stack.services.readings.count() >= 3 * 600, what="the buffered 10 min")
        influxd.stop()
        before = sim.published_readings
        time.sleep(30)  # the loggers keep publishing every second while influxd is down
        assert sim.published_readings > before + 3 * 20
        influxd.start()
        time.sleep(3)
    finally:
        sim.stop()
    try:
        published = sim.published_readings
        wait_for(lambda: stack.services.readings.count() == published, timeout=60,
                 what=f"all {published} published readings in influxd")
        store = stack.services.readings
        for lg in fleet:
            ts, _ = store.arrays(lg.device_id)
            assert len(ts) > 600 + 30 and bool(np.all(np.diff(ts) == 1000)), f"gap in {lg.device_id}"
    finally:
        stack.close()

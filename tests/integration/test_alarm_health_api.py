"""GET /api/v1/alarm-health on alarms raised through the real pipeline on a ManualClock: the rate per 10 min,
a flood, a chattering source, a standing excursion alarm, the most frequent sources; viewer role."""

from __future__ import annotations

import json

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import HOUR, MINUTE, Alert
from coldtrace.services import auth
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration

T0 = 1_795_687_200_000  # on the 10-minute grid


def fault(dev: str, k: int, now: int) -> Alert:
    return Alert(f"alert-{dev}-{k}", "device.sensor_fault", "alarm", dev, now, {"kind": "jump", "n": k})


def test_alarm_health_over_a_day_of_real_alarms(tmp_path):
    clock = ManualClock(T0 - 30 * HOUR)
    stack = start_stack(tmp_path, clock=clock)
    try:
        p = stack.services.pipeline
        # a fridge that has stood at ~9.5 °C for 30 h: one excursion, still open: standing alarms (high-warn
        # warning after 15 min, high alarm after 30 min; its MKT alarm came 24 h in, only 6 h ago); the
        # "excursion.opened" alerts are information, not alarms
        readings = [{"ts": T0 - 30 * HOUR + k * 5 * MINUTE, "temp_c": 9.4 + 0.1 * (k % 3)} for k in range(12 * 30)]
        clock.set(T0)
        p.ingest_raw(json.dumps({"v": 1, "device_id": "FRIDGE-1", "readings": readings}).encode(),
                     topic_device_id="FRIDGE-1")
        # a burst: 12 sensor faults of LOG-2 within 5 minutes, 3 of them in 40 s (a flood and chattering)
        for k in range(12):
            clock.set(T0 + HOUR + k * 25_000)
            p.emit_now([fault("LOG-2", k, clock.now_ms())])
        # one lone alarm 3 hours later, and an information alert that is not an alarm
        clock.set(T0 + 4 * HOUR)
        p.emit_now([Alert("alert-lone", "device.battery_low", "warning", "LOG-3", clock.now_ms(), {}),
                    Alert("alert-info", "device.online", "info", "LOG-3", clock.now_ms(), {})])
        clock.set(T0 + 6 * HOUR)

        rep = stack.get("/api/v1/alarm-health", **{"from": T0 - 10 * MINUTE, "to": T0 + 6 * HOUR})
        assert rep["alarms"] == 3 + 12 + 1
        assert rep["by_severity"] == {"warning": 2, "alarm": 14, "critical": 0}
        buckets = rep["rate"]["buckets"]
        assert len(buckets) == 37 and sum(b["alarms"] for b in buckets) == 16
        assert rep["rate"]["max_per_10_min"] == 12  # the burst fits one 10-minute interval (60..64.6 min)
        assert rep["rate"]["mean_per_10_min"] == pytest.approx(16 / 37, abs=1e-3)

        (flood,) = rep["floods"]["items"]
        assert (flood["alarms"], flood["peak"]) == (12, 12)
        assert (flood["start"], flood["end"]) == (T0 + HOUR, T0 + HOUR + 11 * 25_000)
        assert rep["floods"]["time_in_flood_pct"] == pytest.approx(100 * 275_000 / (6 * HOUR + 10 * MINUTE), abs=1e-3)

        (chat,) = rep["chattering"]["items"]
        assert chat["source"] == "LOG-2 · device.sensor_fault · jump"
        assert (chat["activations"], chat["most_in_1_min"], chat["episodes"]) == (12, 3, 1)

        standing = rep["standing"]["items"]
        assert {(s["device_id"], s["type"], s["severity"]) for s in standing} == {
            ("FRIDGE-1", "excursion.alarm", "warning"), ("FRIDGE-1", "excursion.alarm", "alarm")}
        assert all(s["active_ms"] > 24 * HOUR for s in standing)

        top = rep["top"]
        assert top[0]["source"] == "LOG-2 · device.sensor_fault · jump" and top[0]["alarms"] == 12
        assert top[0]["share_pct"] == pytest.approx(75.0)
        assert {t["source"] for t in top[1:]} == {
            "FRIDGE-1 · excursion.alarm · high-warn", "FRIDGE-1 · excursion.alarm · high",
            "FRIDGE-1 · excursion.alarm · mkt", "LOG-3 · device.battery_low"}

        # the fridge is back in range: its excursion ends, the alarm no longer stands
        p.ingest_raw(json.dumps({"v": 1, "device_id": "FRIDGE-1", "readings": [
            {"ts": T0 + 5 * HOUR, "temp_c": 5.0}]}).encode(), topic_device_id="FRIDGE-1")
        assert stack.get("/api/v1/alarm-health")["standing"]["items"] == []

        viewer = auth.create_token(stack.services.db, role="viewer", name="v", actor="tests")
        r = stack.client.get("/api/v1/alarm-health", headers={"Authorization": f"Bearer {viewer}"})
        assert r.status_code == 200 and r.json()["alarms"] == 16  # the last 7 days by default
        assert stack.client.get("/api/v1/alarm-health").status_code == 401
        bad = stack.client.get("/api/v1/alarm-health", params={"from": T0, "to": T0 - 1}, headers=stack.headers)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_range"
    finally:
        stack.close()

"""Predicted drift is an alert (issue 13 item 4): when the long-term regression of a device's as-found history
predicts out-of-tolerance before its due date, calibration.drift_predicted (warning) is raised once per
calibration cycle, re-judged by the clock once a day and at once when history is added; the lists say
"valid, drift predicted <date>"."""

from __future__ import annotations

import json

import pytest

from coldtrace.core.clock import ManualClock, to_iso
from coldtrace.core.model import DAY, MINUTE
from coldtrace.services.calibration_service import for_services
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration

API = "/api/v1/calibration"


def drift_alerts(stack) -> list[dict]:
    return stack.get("/api/v1/alerts", type="calibration.drift_predicted")


def test_drift_predicted_by_the_daily_tick_and_by_new_history_with_the_lists_saying_so(tmp_path):
    clock = ManualClock()
    stack = start_stack(tmp_path, None, clock=clock)
    try:
        now, h, db = clock.now_ms(), stack.headers, stack.services.db
        svc = for_services(stack.services)
        r = stack.client.put(f"{API}/devices/LOG-5", headers=h, json={"last_calibrated_at": now - 30 * DAY,
                                                                       "interval_days": 365})
        assert r.status_code == 200 and r.json()["status"]["summary"] == "valid"
        due = now + 335 * DAY
        # as-found history written by another process (an older import): +0.2 °C per year at 5 °C, U 0.04,
        # MPE 0.5: |e| + U reaches 0.5 at e = 0.46, i.e. 2.3 years after the first result = 0.3 years from now,
        # well before the due date in 335 days
        with db.write() as c:
            for k, e in enumerate((0.0, 0.2)):
                c.execute("INSERT INTO calibration_history VALUES (?,?,?,?,?,?,?)",
                          ("LOG-5", 5.0, now - (2 - k) * 365 * DAY, e, 0.04, 0.5, "import:OLD"))
        svc.tick(now + MINUTE)
        assert drift_alerts(stack) == []  # judged less than a day ago (when the due date was set)
        clock.set(now + DAY + MINUTE)
        svc.tick()  # the daily re-judgement finds it
        (a,) = drift_alerts(stack)
        expected = now - 2 * 365 * DAY + 0.46 / 0.2 * 365 * DAY
        assert a["severity"] == "warning" and a["device_id"] == "LOG-5"
        assert a["data"]["set_point_c"] == 5.0 and a["data"]["due_at_ms"] == due
        assert a["data"]["predicted_out_of_tolerance_ms"] == pytest.approx(expected, abs=DAY)
        assert a["data"]["predicted_out_of_tolerance_ms"] < due
        assert db.query_one("SELECT COUNT(*) FROM outbox WHERE type = 'calibration.drift_predicted'")[0] == 1

        # re-judged the next days: the same finding for the same cycle is not raised again
        for days in (2, 3):
            clock.set(now + days * DAY + MINUTE)
            svc.tick()
        assert len(drift_alerts(stack)) == 1
        judged = db.query_one("SELECT drift_judged_at FROM device_calibration WHERE device_id = 'LOG-5'")[0]
        assert judged == now + 3 * DAY + MINUTE

        # the lists: "valid, drift predicted <date>"
        date = to_iso(a["data"]["predicted_out_of_tolerance_ms"])[:10]
        st = stack.get(f"{API}/devices/LOG-5")["status"]
        assert st["status"] == "valid" and st["usable"] is True
        assert st["summary"] == f"valid, drift predicted {date}"
        listed = {d["device_id"]: d for d in stack.get(f"{API}/devices")}
        assert listed["LOG-5"]["summary"] == f"valid, drift predicted {date}"
        assert [d["device_id"] for d in stack.get(f"{API}/devices", drift_predicted=True)] == ["LOG-5"]

        # new history flattens the line: judged at once, the prediction is withdrawn (the alert stays a fact)
        r = stack.client.post(f"{API}/devices/LOG-5/history", headers=h, json={
            "set_point_c": 5.0, "ts": now - 10 * DAY, "error_c": 0.0, "expanded_u_c": 0.04, "mpe_c": 0.5,
            "certificate_ref": "LAB-2026-311"})
        assert r.status_code == 201
        assert stack.get(f"{API}/devices/LOG-5")["status"]["summary"] == "valid"
        assert stack.get(f"{API}/devices", drift_predicted=True) == []
        assert len(drift_alerts(stack)) == 1

        # and history that predicts drift again raises it at once (same cycle: same alert id, so nothing new;
        # a new calibration cycle is a new alert)
        stack.client.put(f"{API}/devices/LOG-6", headers=h, json={"last_calibrated_at": now, "interval_days": 365})
        for k, e in enumerate((0.1, -0.3)):
            r = stack.client.post(f"{API}/devices/LOG-6/history", headers=h, json={
                "set_point_c": -20.0, "ts": now - (1 - k) * 200 * DAY, "error_c": e, "expanded_u_c": 0.05,
                "mpe_c": 0.5, "certificate_ref": f"LAB-{k}"})
            assert r.status_code == 201
        (b,) = [x for x in drift_alerts(stack) if x["device_id"] == "LOG-6"]
        assert b["data"]["set_point_c"] == -20.0 and b["data"]["slope_c_per_year"] < 0
        assert json.loads(db.query_one("SELECT data FROM alerts WHERE id = ?", (b["id"],))[0])["n"] == 2
    finally:
        stack.close()

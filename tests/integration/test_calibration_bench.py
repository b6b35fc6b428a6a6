"""Bench scenario end to end: simulated bath + reference + three loggers -> real Mosquitto -> collector ->
SQLite -> calibration session -> results, alerts, certificate PDF, device state; due dates and the 409."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from api.routers.calibration import calibration_service
from coldtrace.adapters.certificate import fmt
from coldtrace.core.clock import ManualClock
from coldtrace.core.model import DAY
from firmware_sim.bench import BenchSpec, run_bench
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration

API = "/api/v1/calibration"
TRACE = "UKAS lab 0001, certificate 0001/2026/17, traceable to ITS-90 via NPL"


@pytest.fixture
def stack(tmp_path, mosquitto):
    s = start_stack(tmp_path, mosquitto.url)
    yield s
    s.close()


def _post(stack, path, body, status=201):
    r = stack.client.post(path, json=body, headers=stack.headers)
    assert r.status_code == status, r.text
    return r.json()


def test_bench_session_over_mqtt_passes_two_loggers_fails_the_drifting_one(stack, mosquitto):
    spec = BenchSpec()
    now = stack.services.clock.now_ms()
    r = stack.client.put(f"{API}/devices/{spec.reference_id}", headers=stack.headers, json={
        "expanded_uncertainty_c": spec.reference_U_c, "certificate_ref": "UKAS 0001/2026/17",
        "traceability": TRACE, "last_calibrated_at": now - 30 * DAY, "interval_days": 365})
    assert r.status_code == 200, r.text

    run = run_bench(mosquitto.url, spec=spec, client_id="bench-test")  # 2.5 h of bench, timestamps end now
    total = sum(run.readings.values())
    wait_for(lambda: stack.services.readings.count() >= total, timeout=60, what=f"{total} bench readings stored")

    body = run.session_request(mpe_c=0.5)
    del body["u_ref_c"]  # taken from the reference's calibration state
    session = _post(stack, f"{API}/sessions", body)
    assert session["u_ref_c"] == spec.reference_U_c and session["state"] == "running"
    # the collector's clock tick follows the session on the stored readings
    wait_for(lambda: stack.get(f"{API}/sessions/{session['id']}")["state"] == "completed", timeout=30,
             what="the session to complete on the collector's tick")
    s = stack.get(f"{API}/sessions/{session['id']}")

    # three stable windows, one per set point, in bench order, each inside its own hold period
    assert s["state"] == "completed"
    assert [p["set_point_c"] for p in s["points"]] == [-20.0, 5.0, 25.0]
    for k, p in enumerate(s["points"]):
        assert run.start_ms + k * spec.hold_ms < p["stable_at"] < run.start_ms + (k + 1) * spec.hold_ms
        assert p["ref_std_c"] <= 0.05 and p["ref_slope_c_per_min"] <= 0.02
        assert abs(p["ref_mean_c"] - p["set_point_c"]) < 0.1
        assert p["capture_end"] - p["stable_at"] == 10 * 60_000

    results = {(x["device_id"], x["set_point_c"]): x for x in s["results"]}
    assert len(results) == 9
    overall = {dev: results[(dev, -20.0)]["overall"] for dev in ("BENCH-LOG-1", "BENCH-LOG-2", "BENCH-LOG-3")}
    assert overall == {"BENCH-LOG-1": "pass", "BENCH-LOG-2": "pass", "BENCH-LOG-3": "fail"}
    for lg in spec.loggers[:2]:  # the sound loggers: error = their offset, U dominated by U_ref/2
        for sp in spec.set_points:
            x = results[(lg.device_id, sp)]
            assert x["n"] >= 18 and abs(x["error_c"] - lg.offset_c) < 0.02
            assert 0.03 < x["expanded_u_c"] < 0.04 and x["decision"] == "pass"
    bad = [results[("BENCH-LOG-3", sp)] for sp in spec.set_points]
    assert bad[0]["error_c"] < bad[1]["error_c"] < bad[2]["error_c"]  # it drifts during the session
    assert bad[2]["decision"] == "fail" and bad[2]["error_c"] > 0.5 + bad[2]["expanded_u_c"]

    # alerts: live drift on the drifting logger only; calibration.failed for it; their webhook events
    drift = stack.get("/api/v1/alerts", type="calibration.drift")
    assert {a["device_id"] for a in drift} == {"BENCH-LOG-3"}
    assert all(a["data"]["kind"] == "live" for a in drift)
    failed = stack.get("/api/v1/alerts", type="calibration.failed")
    assert [(a["device_id"], a["data"]["decision"]) for a in failed] == [("BENCH-LOG-3", "fail")]
    n = stack.services.db.query_one("SELECT COUNT(*) FROM outbox WHERE type LIKE 'calibration.%'")[0]
    assert n == len(drift) + len(failed)

    # the certificate carries the numbers of the table
    pdf = stack.client.get(f"{API}/sessions/{session['id']}/certificates/BENCH-LOG-3.pdf", headers=stack.headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    with io.BytesIO(pdf.content) as f:
        text = "\n".join(page.extract_text() for page in PdfReader(f).pages)
    for x in bad:
        assert fmt(x["error_c"], sign=True) in text and fmt(x["expanded_u_c"]) in text
    for needle in ("BENCH-LOG-3", "BENCH-REF-1", "UKAS 0001/2026/17", "ITS-90", "FAIL", "PASS", "guarded"):
        assert needle in text, needle

    # device state, reverse traceability, and the shipments' 409 for the failed logger
    good = stack.get(f"{API}/devices/BENCH-LOG-1")
    assert good["status"]["status"] == "valid" and good["status"]["usable"] is True
    assert good["state"]["due_at"] == good["state"]["last_calibrated_at"] + 365 * DAY
    assert stack.get(f"{API}/devices/BENCH-LOG-3")["status"]["status"] == "failed"
    traced = stack.get(f"{API}/references/BENCH-REF-1/devices")
    assert sorted((t["device_id"], t["overall"]) for t in traced) == [
        ("BENCH-LOG-1", "pass"), ("BENCH-LOG-2", "pass"), ("BENCH-LOG-3", "fail")]
    sh = _post(stack, "/api/v1/shipments", {"reference": "SH-CAL-1", "origin": "A", "destination": "B",
                                             "product": "P", "lot": "L1"})
    _post(stack, f"/api/v1/shipments/{sh['id']}/loggers", {"device_id": "BENCH-LOG-1"})
    r = stack.client.post(f"/api/v1/shipments/{sh['id']}/loggers", json={"device_id": "BENCH-LOG-3"},
                          headers=stack.headers)
    assert r.status_code == 409 and "calibration" in r.json()["error"]["message"]


def test_due_alerts_at_90_and_30_days_then_expiry_refuses_the_logger(tmp_path):
    clock = ManualClock()
    stack = start_stack(tmp_path, None, clock=clock)
    try:
        now = clock.now_ms()
        r = stack.client.put(f"{API}/devices/LOG-7", headers=stack.headers,
                             json={"last_calibrated_at": now - 200 * DAY, "interval_days": 365})
        assert r.json()["status"]["status"] == "valid"
        svc = calibration_service(stack.services)
        assert svc.tick(now).alerts == 0  # 165 days left
        stages = []
        for days_left in (89, 88, 29, 0):
            clock.set(now - 200 * DAY + 365 * DAY - days_left * DAY)
            svc.tick(clock.now_ms())
            stages.append([a["data"]["stage"] for a in stack.get("/api/v1/alerts", type="calibration.due")])
        assert [sorted(s) for s in stages] == [["due_90"], ["due_90"], ["due_30", "due_90"],
                                               ["due_30", "due_90", "expired"]]
        st = stack.get(f"{API}/devices/LOG-7")["status"]
        assert st["status"] == "expired" and st["usable"] is False
        assert st["uncalibrated_from"] == now + 165 * DAY
        sh = _post(stack, "/api/v1/shipments", {"reference": "SH-CAL-2", "origin": "A", "destination": "B",
                                                 "product": "P", "lot": "L1"})
        r = stack.client.post(f"/api/v1/shipments/{sh['id']}/loggers", json={"device_id": "LOG-7"},
                              headers=stack.headers)
        assert r.status_code == 409 and "expired" in r.json()["error"]["message"]
    finally:
        stack.close()


def test_api_history_drift_session_lifecycle_and_errors(tmp_path):
    clock = ManualClock()
    stack = start_stack(tmp_path, None, clock=clock)
    try:
        now, h = clock.now_ms(), stack.headers
        # external as-found history: +0.1 °C per year at 5 °C (hand-worked: 0.0, 0.1, 0.2 at years 0, 1, 2)
        for k, e in enumerate((0.0, 0.1, 0.2)):
            _post(stack, f"{API}/devices/LOG-9/history", {"set_point_c": 5.0, "ts": now - (2 - k) * 365 * DAY,
                                                          "error_c": e, "expanded_u_c": 0.1, "mpe_c": 0.5,
                                                          "certificate_ref": f"EXT-{k}"})
        stack.client.put(f"{API}/devices/LOG-9", headers=h, json={"last_calibrated_at": now, "interval_days": 365})
        d = stack.get(f"{API}/devices/LOG-9/drift")["set_points"][0]
        assert d["n"] == 3 and d["slope_c_per_year"] == pytest.approx(0.1 * 365.25 / 365)  # years of 365.25 d
        # |0.2 + 0.1 y| + 0.1 >= 0.5 at y = 2 years from now: after the next due date (1 year): no drift yet
        assert d["predicted_out_of_tolerance_ms"] == pytest.approx(now + 2 * 365 * DAY, abs=1)
        assert d["drift"] is False

        for bad in ({"reference_id": "R1", "duts": [{"device_id": "D1"}], "set_points": [5], "mpe_c": 0.5},
                    {"reference_id": "R1", "duts": [{"device_id": "D1"}], "set_points": [5], "mpe_c": 0.5,
                     "u_ref_c": 0.03, "start": "yesterday"}):
            r = stack.client.post(f"{API}/sessions", json=bad, headers=h)
            assert r.status_code == 400, r.text
        r = stack.client.post(f"{API}/sessions", headers=h, json={"reference_id": "R1", "duts": [],
                                                                  "set_points": [5], "mpe_c": 0.5})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation"
        s = _post(stack, f"{API}/sessions", {"reference_id": "R1", "duts": [{"device_id": "D1"}],
                                             "set_points": [5], "mpe_c": 0.5, "u_ref_c": 0.03})
        assert [x["id"] for x in stack.get(f"{API}/sessions", device_id="D1")] == [s["id"]]
        assert _post(stack, f"{API}/sessions/{s['id']}/evaluate", {}, status=200)["points"] == []
        assert stack.client.delete(f"{API}/sessions/{s['id']}", headers=h).status_code == 204
        r = stack.client.get(f"{API}/sessions/{s['id']}", headers=h)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        s = _post(stack, f"{API}/sessions", {"reference_id": "R1", "duts": [{"device_id": "D1"}],
                                             "set_points": [5], "mpe_c": 0.5, "u_ref_c": 0.03})
        assert _post(stack, f"{API}/sessions/{s['id']}/cancel", {}, status=200)["state"] == "cancelled"
        assert stack.client.post(f"{API}/sessions/{s['id']}/cancel", headers=h).status_code == 409
        r = stack.client.get(f"{API}/sessions/{s['id']}/certificates/NOPE.pdf", headers=h)
        assert r.status_code == 404
        assert stack.client.get(f"{API}/sessions", headers={}).status_code == 401
        actions = [r[0] for r in stack.services.db.query("SELECT action FROM audit_log WHERE action LIKE"
                                                         " 'calibration.%' ORDER BY id")]
        assert actions.count("calibration.history.import") == 3 and "calibration.session.cancel" in actions
    finally:
        stack.close()

"""Profiles, device profile assignment, device summary and excursion numbers over HTTP (TestClient)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from coldtrace.core.clock import ManualClock
from coldtrace.core.model import MINUTE
from coldtrace.services import auth
from coldtrace.settings import load_settings
from coldtrace.wiring import build_services

pytestmark = pytest.mark.integration


@pytest.fixture
def api(tmp_path):
    clock = ManualClock()
    settings = load_settings(data_dir=tmp_path / "data")
    services = build_services(settings, clock=clock)
    tokens = {
        "admin": auth.create_token(services.db, role="admin", name="admin-t", now_ms=clock.now_ms()),
        "viewer": auth.create_token(services.db, role="viewer", name="viewer-t", now_ms=clock.now_ms()),
    }
    client = TestClient(create_app(settings, services=services))
    yield clock, services, client, {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}
    client.close()
    services.close()


def send(services, dev: str, readings: list[tuple[int, float]]) -> None:
    body = {"v": 1, "device_id": dev, "readings": [{"ts": t, "temp_c": v} for t, v in readings]}
    assert not services.pipeline.ingest_raw(json.dumps(body).encode(), topic_device_id=dev).rejected


def test_profiles_listed_created_changed_with_history_and_builtins_protected(api):
    clock, services, client, h = api
    ids = [p["id"] for p in client.get("/api/v1/profiles", headers=h["viewer"]).json()]
    assert {"2-8C", "15-25C", "-25-15C", "le-60C", "le-150C"} <= set(ids)
    body = {"id": "vaccine-x", "name": "Vaccine X 2-8", "mkt_max_c": 8.0, "limits": [
        {"id": "high", "direction": "above", "threshold_c": 8.0, "delay_ms": 10 * MINUTE},
        {"id": "low", "direction": "below", "threshold_c": 2.0, "severity": "critical"}]}
    assert client.post("/api/v1/profiles", headers=h["viewer"], json=body).status_code == 403
    r = client.post("/api/v1/profiles", headers=h["admin"], json=body)
    assert r.status_code == 201, r.text
    assert r.json()["updated_by"] == "token:admin-t" and len(r.json()["limits"]) == 2
    clock.advance(MINUTE)
    body["limits"][0]["delay_ms"] = 5 * MINUTE
    assert client.post("/api/v1/profiles", headers=h["admin"], json=body).status_code == 201
    detail = client.get("/api/v1/profiles/vaccine-x", headers=h["viewer"]).json()
    assert [c["body"]["limits"][0]["delay_ms"] for c in detail["history"]] == [10 * MINUTE, 5 * MINUTE]
    assert detail["history"][1]["changed_at"] == detail["history"][0]["changed_at"] + MINUTE
    r = client.post("/api/v1/profiles", headers=h["admin"], json={**body, "id": "2-8C"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "builtin_profile"
    bad = {**body, "id": "y", "limits": [{"id": "mkt", "direction": "above", "threshold_c": 8.0}]}
    assert client.post("/api/v1/profiles", headers=h["admin"], json=bad).json()["error"]["code"] == "reserved_limit"


def test_assigning_a_profile_is_recorded_and_changes_the_evaluation(api):
    clock, services, client, h = api
    t0 = clock.now_ms() - 60 * MINUTE
    # 9.0 for 12 min: below the 15 min delay of high-warn (2-8C): no alarm under the default profile
    send(services, "LOG-7", [(t0, 5.0), (t0 + 6 * MINUTE, 9.0), (t0 + 12 * MINUTE, 9.0), (t0 + 18 * MINUTE, 5.0)])
    assert services.db.query("SELECT * FROM alerts WHERE type = 'excursion.alarm'") == []
    strict = {"id": "strict", "name": "strict", "limits": [
        {"id": "high", "direction": "above", "threshold_c": 8.0, "delay_ms": 5 * MINUTE}]}
    assert client.post("/api/v1/profiles", headers=h["admin"], json=strict).status_code == 201
    r = client.put("/api/v1/devices/LOG-7/profile", headers=h["admin"], json={"profile_id": "strict"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["profile_id"] == "strict" and got["assignments"][0]["assigned_by"] == "token:admin-t"
    assert got["assignments"][0]["previous_profile_id"] is None
    assert client.put("/api/v1/devices/LOG-7/profile", headers=h["admin"],
                      json={"profile_id": "nope"}).status_code == 404
    # the next reading re-evaluates the stored series under the new profile: alarm at +12 min (6 covered)
    send(services, "LOG-7", [(t0 + 24 * MINUTE, 5.0)])
    excs = client.get("/api/v1/excursions", headers=h["viewer"], params={"device_id": "LOG-7"}).json()
    strict_exc = [e for e in excs if e["limit_id"] == "high"]
    assert len(strict_exc) == 1
    e = strict_exc[0]
    for key in ("start", "end", "duration_min", "peak_c", "degree_minutes", "alarm_at", "limit_id"):
        assert key in e
    # by hand: 9.0 from +6 to +18 min: 12 covered minutes x 1.0 °C beyond 8.0 = 12 degree-minutes
    assert (e["duration_min"], e["peak_c"], e["degree_minutes"]) == (12.0, 9.0, 12.0)
    assert e["alarm_at"] is not None


def test_device_summary_over_a_range(api):
    clock, services, client, h = api
    t0 = clock.now_ms() - 400 * MINUTE
    # same series as tests/unit/test_stats.py: 110 covered min, gaps 30->60 and 120->300, mean 5.7273
    series = [(0, 5.0), (60, 9.0), (90, 5.0), (300, 1.0), (310, 5.0)]
    send(services, "LOG-9", [(t0 + a * MINUTE, v) for a, v in series])
    r = client.get("/api/v1/devices/LOG-9/summary", headers=h["viewer"],
                   params={"from": t0, "to": t0 + 320 * MINUTE})
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["count"], s["min_c"], s["max_c"], s["covered_min"], s["gap_min"]) == (5, 1.0, 9.0, 110.0, 210.0)
    assert s["mean_c"] == pytest.approx(5.7273, abs=1e-4) and s["in_range_min"] == 70.0
    assert s["beyond_min"]["high"] == 30.0 and s["mkt_c"] > s["mean_c"]
    assert [g["duration_min"] for g in s["gaps"]] == [30.0, 180.0]
    assert client.get("/api/v1/devices/NOPE/summary", headers=h["viewer"]).status_code == 404

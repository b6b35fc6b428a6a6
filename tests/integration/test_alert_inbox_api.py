"""The alert inbox over HTTP (TestClient on the real app): assignment to an unknown user is refused with 422
``unknown_user``; the inbox view lists by ISA-18.2 state; shelving needs a person, a reason and a duration;
an alarm whose excursion still lasts cannot be resolved (409 ``condition_active``)."""

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
    auth.create_user(services.db, "quinn", "Quinn QA", "correct horse battery", "qa", now_ms=clock.now_ms())
    tokens = {
        "qa": auth.create_token(services.db, user="quinn", name="quinn-t", now_ms=clock.now_ms()),
        "service": auth.create_token(services.db, role="qa", name="line-3-hmi", now_ms=clock.now_ms()),
    }
    client = TestClient(create_app(settings, services=services))
    yield clock, services, client, tokens
    client.close()
    services.close()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ingest(services, device: str, start: int, temps: list[float]) -> None:
    rs = [{"ts": start + i * 5 * MINUTE, "temp_c": t} for i, t in enumerate(temps)]
    r = services.pipeline.ingest_raw(json.dumps({"v": 1, "device_id": device, "readings": rs}).encode(),
                                     topic_device_id=device)
    assert not r.rejected


def _alarm(services, device: str, severity: str) -> str:
    return services.db.query_one("SELECT id FROM alerts WHERE device_id = ? AND type = 'excursion.alarm'"
                                 " AND severity = ?", (device, severity))[0]


def test_assigning_an_alert_to_a_user_who_does_not_exist_is_refused_with_422(api):
    clock, services, client, tokens = api
    _ingest(services, "LOG-1", clock.now_ms() - 60 * MINUTE, [5.0] + [9.5] * 9)
    aid = _alarm(services, "LOG-1", "alarm")
    r = client.post(f"/api/v1/alerts/{aid}/assign", headers=_h(tokens["qa"]), json={"assignee": "quinnn"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "unknown_user" and "quinnn" in r.json()["error"]["message"]
    assert client.get(f"/api/v1/alerts/{aid}/handling", headers=_h(tokens["qa"])).json()["assignee"] is None
    assert not services.db.query("SELECT 1 FROM alert_events WHERE alert_id = ?", (aid,))  # nothing recorded
    r = client.post(f"/api/v1/alerts/{aid}/assign", headers=_h(tokens["qa"]), json={"assignee": "Quinn"})
    assert r.status_code == 200 and r.json()["assignee"] == "quinn"  # the user's own spelling
    r = client.post(f"/api/v1/alerts/{aid}/assign", headers=_h(tokens["qa"]), json={"assignee": None})
    assert r.status_code == 200 and r.json()["assignee"] is None  # unassigning needs no user


def test_the_inbox_view_lists_by_isa_state_and_shelving_and_resolving_follow_the_rules(api):
    clock, services, client, tokens = api
    t0 = clock.now_ms() - 2 * 60 * MINUTE
    _ingest(services, "LOG-A", t0, [5.0, 26.4, 26.4, 26.4])  # critical, going on
    _ingest(services, "LOG-B", t0, [5.0] + [9.5] * 9 + [5.0])  # alarm, over
    _ingest(services, "LOG-C", t0, [5.0] + [9.5] * 9)  # alarm, going on
    crit = _alarm(services, "LOG-A", "critical")
    qa = _h(tokens["qa"])
    r = client.post(f"/api/v1/alerts/{crit}/resolve", headers=qa, json={"comment": "fine"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "condition_active"
    # acknowledging and closing an alarm is what a person does (ISA-18.2): a program's service token may not,
    # even with the QA role (a script acknowledging every alarm would defeat the alarm system)
    svc = _h(tokens["service"])
    for action, body in (("acknowledge", {"comment": "auto"}), ("resolve", {"comment": "auto"})):
        r = client.post(f"/api/v1/alerts/{crit}/{action}", headers=svc, json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "person_required", (action, r.text)
    assert client.get(f"/api/v1/alerts/{crit}/handling", headers=qa).json()["state"] == "open"
    assert client.post(f"/api/v1/alerts/{crit}/acknowledge", headers=qa, json={"comment": "on it"}).status_code == 200
    inbox = client.get("/api/v1/alerts", headers=qa, params={"view": "inbox", "min_severity": "alarm"}).json()
    assert [(a["device_id"], a["severity"], a["isa_state"]) for a in inbox] == [
        ("LOG-C", "alarm", "unack_active"), ("LOG-A", "critical", "ack_active"), ("LOG-B", "alarm", "unack_cleared")]
    assert inbox[1]["state"] == "acknowledged" and inbox[1]["condition"] == "active"
    # shelving: a person with a reason and a bounded duration; a service token may not
    c_alarm = inbox[0]["id"]
    body = {"reason": "sensor being replaced", "minutes": 90}
    r = client.post(f"/api/v1/alerts/{c_alarm}/shelve", headers=_h(tokens["service"]), json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "person_required"
    r = client.post(f"/api/v1/alerts/{c_alarm}/shelve", headers=qa, json={**body, "minutes": 25 * 60})
    assert r.status_code == 422
    r = client.post(f"/api/v1/alerts/{c_alarm}/shelve", headers=qa, json=body)
    assert r.status_code == 200 and r.json()["isa_state"] == "shelved" and r.json()["shelved_by"] == "quinn"
    ids = [a["id"] for a in client.get("/api/v1/alerts", headers=qa, params={"view": "inbox"}).json()]
    assert c_alarm not in ids
    assert [a["id"] for a in client.get("/api/v1/alerts", headers=qa, params={"view": "shelved"}).json()] == [c_alarm]
    clock.advance(91 * MINUTE)  # the shelving has expired: back in the inbox, even before the tick
    ids = [a["id"] for a in client.get("/api/v1/alerts", headers=qa, params={"view": "inbox"}).json()]
    assert c_alarm in ids


def test_limits_sharing_a_threshold_are_one_inbox_entry_with_staged_severities(api):
    """high-warn (warning after 15 min) and high (alarm after 30 min) at 8 °C: one door left open is one
    episode, one entry; acknowledging its alarm acknowledges its warning too."""
    clock, services, client, tokens = api
    qa = _h(tokens["qa"])
    now = clock.now_ms()
    _ingest(services, "LOG-D", now - 60 * MINUTE, [5.0] + [9.5] * 12)  # 55 min above 8 °C: both stages
    _ingest(services, "LOG-E", now - 25 * MINUTE, [5.0] + [9.0] * 5)  # 20 min: warning only (so far)
    flat = client.get("/api/v1/alerts", headers=qa, params={"view": "inbox"}).json()
    assert len([a for a in flat if a["device_id"] == "LOG-D"]) == 4  # opened x2, warning, alarm
    grouped = client.get("/api/v1/alerts", headers=qa, params={"view": "inbox", "group": "episode"}).json()
    d = [a for a in grouped if a["device_id"] == "LOG-D"]
    e = [a for a in grouped if a["device_id"] == "LOG-E"]
    assert len(d) == 1 and len(e) == 1
    assert (d[0]["type"], d[0]["severity"]) == ("excursion.alarm", "alarm")  # the highest stage reached
    ep = d[0]["episode"]
    assert [(s["limit_id"], s["severity"]) for s in ep["stages"]] == [("high-warn", "warning"), ("high", "alarm")]
    assert all(s["alarm_ts"] is not None for s in ep["stages"])
    assert (ep["current_stage"], ep["top_stage"], ep["threshold_c"]) == ("alarm", "alarm", 8.0)
    assert (e[0]["severity"], e[0]["episode"]["current_stage"], e[0]["episode"]["top_stage"]) == (
        "warning", "warning", "alarm")
    assert e[0]["episode"]["stages"][1]["alarm_ts"] is None  # the alarm stage not reached yet
    r = client.post(f"/api/v1/alerts/{d[0]['id']}/acknowledge", headers=qa, json={"comment": "door closed"})
    assert r.status_code == 200
    warning = next(s for s in ep["stages"] if s["severity"] == "warning")["alert_id"]
    w = client.get(f"/api/v1/alerts/{warning}/handling", headers=qa).json()
    assert (w["state"], w["acknowledged_by"], w["ack_comment"]) == ("acknowledged", "quinn", "door closed")
    hist = client.get(f"/api/v1/alerts/{warning}/history", headers=qa).json()
    assert hist[-1]["action"] == "acknowledged" and hist[-1]["data"]["with_alert"] == d[0]["id"]
    grouped = client.get("/api/v1/alerts", headers=qa, params={"view": "inbox", "group": "episode"}).json()
    d = [a for a in grouped if a["device_id"] == "LOG-D"]
    assert len(d) == 1 and d[0]["isa_state"] == "ack_active" and d[0]["severity"] == "alarm"

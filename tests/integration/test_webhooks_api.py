"""The webhook and alert-handling API over HTTP (TestClient), with a real receiver on loopback."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from coldtrace.core.clock import ManualClock
from coldtrace.core.model import Alert
from coldtrace.services import auth
from coldtrace.settings import load_settings
from coldtrace.wiring import build_services
from collector.notifier import Notifier
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def api(tmp_path):
    clock = ManualClock()
    settings = load_settings(data_dir=tmp_path / "data")
    services = build_services(settings, clock=clock)
    auth.create_user(services.db, "quinn", "Quinn QA", "correct horse battery", "qa", now_ms=clock.now_ms())
    tokens = {
        "admin": auth.create_token(services.db, role="admin", name="admin-t", now_ms=clock.now_ms()),
        "qa": auth.create_token(services.db, user="quinn", name="quinn-t", now_ms=clock.now_ms()),
        "viewer": auth.create_token(services.db, role="viewer", name="viewer-t", now_ms=clock.now_ms()),
    }
    client = TestClient(create_app(settings, services=services))
    receiver = WebhookReceiver(now_s=lambda: clock.now_ms() // 1000).start()
    notifier = Notifier(services.db, clock, allowed_private_targets=["127.0.0.1"], timeout_s=2)
    yield clock, services, client, tokens, receiver, notifier
    notifier.close()
    receiver.stop()
    client.close()
    services.close()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_subscription_lifecycle_secret_once_ping_rotate_deliveries_redeliver(api):
    clock, services, client, tokens, receiver, notifier = api
    admin = _h(tokens["admin"])
    assert client.get("/api/v1/webhooks/subscriptions", headers=_h(tokens["qa"])).status_code == 403
    bad = client.post("/api/v1/webhooks/subscriptions", headers=admin, json={"url": receiver.url})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unsafe_target"  # loopback refused
    r = client.post("/api/v1/webhooks/subscriptions", headers=admin, json={"url": "ftp://example.com/x"})
    assert r.status_code == 400
    r = client.post("/api/v1/webhooks/subscriptions", headers=admin,
                    json={"url": receiver.url, "event_types": ["nonsense.type"]})
    assert r.status_code == 422

    services.settings.webhooks.allowed_private_targets = ["127.0.0.1/32"]  # an on-site receiver
    r = client.post("/api/v1/webhooks/subscriptions", headers=admin,
                    json={"url": receiver.url, "event_types": ["excursion.*"], "description": "ops"})
    assert r.status_code == 201, r.text
    sub = r.json()
    secret = sub["secret"]
    assert secret.startswith("whsec_")
    receiver.secrets = [secret]
    listed = client.get("/api/v1/webhooks/subscriptions", headers=admin).json()
    one = client.get(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=admin).json()
    assert secret not in json.dumps(listed) and secret not in json.dumps(one)  # never shown again
    assert one["event_types"] == ["excursion.*"]

    ping = client.post(f"/api/v1/webhooks/subscriptions/{sub['id']}/ping", headers=admin).json()
    assert ping["outcome"] == "delivered" and ping["status"] == 204
    assert receiver.bad_signatures == [] and len(receiver.requests) == 1

    rot = client.post(f"/api/v1/webhooks/subscriptions/{sub['id']}/rotate", headers=admin,
                      json={"overlap_hours": 1}).json()
    assert rot["secret"] != secret and rot["rotation_expires_at"] == clock.now_ms() + 3_600_000
    receiver.secrets = [secret, rot["secret"]]  # both signatures present during the overlap
    services.pipeline.emit_now([Alert("alert_api_1", "excursion.alarm", "alarm", "LOG-7", clock.now_ms())])
    notifier.run_once()
    assert receiver.bad_signatures == [] and len(receiver.delivered()) == 2

    deliveries = client.get("/api/v1/webhooks/deliveries", headers=admin,
                            params={"subscription_id": sub["id"], "state": "delivered"}).json()
    d = next(x for x in deliveries if x["event_type"] == "excursion.alarm")
    detail = client.get(f"/api/v1/webhooks/deliveries/{d['id']}", headers=admin).json()
    assert detail["attempts_list"][0]["status"] == 204 and detail["attempts_list"][0]["latency_ms"] >= 0
    r = client.post(f"/api/v1/webhooks/deliveries/{d['id']}/redeliver", headers=admin)
    assert r.status_code == 202 and r.json()["state"] == "pending"
    notifier.run_once()
    assert receiver.delivered()[d["event_id"]] == 2  # the same webhook-id again, on request
    attempts = client.get(f"/api/v1/webhooks/deliveries/{d['id']}/attempts", headers=admin).json()
    assert [a["attempt_no"] for a in attempts] == [1, 2]

    r = client.patch(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=admin, json={"enabled": False})
    assert r.json()["enabled"] is False
    assert client.delete(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=admin).status_code == 204
    r = client.get(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    audit = [r[0] for r in services.db.query("SELECT action FROM audit_log WHERE entity = 'webhook_subscription'"
                                             " ORDER BY id")]
    assert audit == ["webhook.create", "webhook.rotate_secret", "webhook.redeliver", "webhook.update",
                     "webhook.delete"]
    assert secret not in json.dumps([dict(r) for r in services.db.query("SELECT * FROM audit_log")])


def test_alert_handling_over_the_api(api):
    clock, services, client, tokens, receiver, notifier = api
    services.pipeline.emit_now([Alert("alert_api_2", "excursion.alarm", "critical", "LOG-8", clock.now_ms())])
    base = "/api/v1/alerts/alert_api_2"
    assert client.post(f"{base}/acknowledge", headers=_h(tokens["viewer"])).status_code == 403
    r = client.post(f"{base}/assign", headers=_h(tokens["qa"]), json={"assignee": "quinn"})
    assert r.status_code == 200 and r.json()["assignee"] == "quinn"
    clock.advance(60_000)
    r = client.post(f"{base}/acknowledge", headers=_h(tokens["qa"]), json={"comment": "on it"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert (a["state"], a["acknowledged_by"], a["ack_comment"]) == ("acknowledged", "quinn", "on it")
    assert a["acknowledged_at"] == "2026-11-26T10:01:00.000Z"
    r = client.post(f"{base}/acknowledge", headers=_h(tokens["qa"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert client.post(f"{base}/comments", headers=_h(tokens["qa"]), json={"text": "door seal"}).status_code == 201
    assert client.post(f"{base}/resolve", headers=_h(tokens["qa"]), json={}).status_code == 422
    r = client.post(f"{base}/resolve", headers=_h(tokens["qa"]), json={"comment": "within stability budget"})
    assert r.json()["state"] == "resolved" and r.json()["resolved_by"] == "quinn"
    hist = client.get(f"{base}/history", headers=_h(tokens["viewer"])).json()
    assert [(e["action"], e["actor"]) for e in hist] == [("raised", "system"), ("assigned", "quinn"),
                                                         ("acknowledged", "quinn"), ("commented", "quinn"),
                                                         ("resolved", "quinn")]
    assert client.get("/api/v1/alerts/alert_api_2", headers=_h(tokens["viewer"])).json()["state"] == "resolved"
    assert client.get("/api/v1/alerts/nope/history", headers=_h(tokens["viewer"])).status_code == 404

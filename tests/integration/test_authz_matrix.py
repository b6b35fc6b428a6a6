"""Every endpoint of the app's OpenAPI against no token, a wrong role, a device token and another device's token.

The endpoint list is read from the running app, so a route added later without a role check fails here.
"""

from __future__ import annotations

import json
import re

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import MINUTE
from coldtrace.services import auth
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration

PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/login")}
ANY_PRINCIPAL = {("GET", "/api/v1/auth/session"), ("POST", "/api/v1/auth/logout")}
DEVICE_ONLY = {("POST", "/api/v1/ingest")}
VIEWER_WRITES = {("POST", "/api/v1/auth/tokens"), ("DELETE", "/api/v1/auth/tokens/{token_id}")}  # own tokens
QA_READS = ("/api/v1/audit",)
ADMIN_ONLY = ("/api/v1/users", "/api/v1/auth/device-tokens", "/api/v1/webhooks")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("authz"), None, clock=ManualClock(), with_collector=False)
    db = s.services.db
    tokens = {"admin": s.token}
    for role in ("viewer", "qa"):
        uid = auth.create_user(db, f"{role}-user", f"{role.title()} User", f"{role}-password-123", role)
        tokens[role] = auth.create_token(db, user=uid, name=role)
    tokens["device"] = auth.create_device_token(db, ["LOG-A"])
    tokens["other_device"] = auth.create_device_token(db, ["LOG-B"])
    spec = s.client.get("/api/v1/openapi.json").json()
    endpoints = [(m.upper(), path) for path, ops in spec["paths"].items() for m in ops]
    yield s, tokens, endpoints
    s.close()


def call(s, method: str, path: str, token: str | None):
    url = re.sub(r"\{[^}]+\}", "probe", path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return s.client.request(method, url, headers=headers, json=None if method == "GET" else {})


def _error_code(r) -> str:
    return r.json()["error"]["code"]


def test_the_matrix_covers_the_api(world):
    _, _, endpoints = world
    assert len(endpoints) >= 30
    assert {("POST", "/api/v1/ingest"), ("GET", "/api/v1/audit/verify"),
            ("POST", "/api/v1/shipments/{shipment_id}/decisions")} <= set(endpoints)


def test_no_token_is_401_everywhere_but_public(world):
    s, _, endpoints = world
    for method, path in endpoints:
        if (method, path) in PUBLIC:
            continue
        r = call(s, method, path, None)
        assert r.status_code == 401, (method, path, r.status_code)
        assert _error_code(r) in ("unauthenticated",), (method, path)
        assert r.headers.get("www-authenticate") == "Bearer"


def test_bad_tokens_are_401(world):
    s, tokens, _ = world
    for bad in ("ct_" + "x" * 43, "ctd_nothing", "Bearer", tokens["admin"] + "x"):
        assert call(s, "GET", "/api/v1/shipments", bad).status_code == 401
    r = s.client.get("/api/v1/shipments", headers={"Authorization": f"Basic {tokens['admin']}"})
    assert r.status_code == 401


def test_device_tokens_reach_only_ingest(world):
    s, tokens, endpoints = world
    for method, path in endpoints:
        if (method, path) in PUBLIC | ANY_PRINCIPAL | DEVICE_ONLY:
            continue
        r = call(s, method, path, tokens["device"])
        assert r.status_code == 403, (method, path, r.status_code)


def test_people_cannot_ingest(world):
    s, tokens, _ = world
    for role in ("viewer", "qa", "admin"):
        r = call(s, "POST", "/api/v1/ingest", tokens[role])
        assert r.status_code == 403 and _error_code(r) == "forbidden"


def test_viewer_cannot_write_nor_read_the_audit_trail(world):
    s, tokens, endpoints = world
    for method, path in endpoints:
        if (method, path) in PUBLIC | ANY_PRINCIPAL | VIEWER_WRITES:
            continue
        needs_more = method != "GET" or path.startswith(QA_READS + ADMIN_ONLY)
        if needs_more:
            r = call(s, method, path, tokens["viewer"])
            assert r.status_code == 403, (method, path, r.status_code)
            assert _error_code(r) == "forbidden"


def test_qa_cannot_do_admin_work(world):
    s, tokens, endpoints = world
    admin_only = [(m, p) for m, p in endpoints if p.startswith(ADMIN_ONLY)]
    assert admin_only
    for method, path in admin_only:
        r = call(s, method, path, tokens["qa"])
        assert r.status_code == 403, (method, path, r.status_code)


def test_another_devices_token_cannot_send_for_it(world):
    s, tokens, _ = world
    now = s.services.clock.now_ms()
    body = json.dumps({"v": 1, "device_id": "LOG-A", "readings": [{"ts": now - MINUTE, "temp_c": 5.0}]})
    r = s.client.post("/api/v1/ingest", content=body, headers={"Authorization": f"Bearer {tokens['other_device']}",
                                                               "Content-Type": "application/json"})
    assert r.status_code == 403 and _error_code(r) == "device_not_allowed"
    assert s.services.readings.count("LOG-A") == 0
    r = s.client.post("/api/v1/ingest", content=body, headers={"Authorization": f"Bearer {tokens['device']}",
                                                               "Content-Type": "application/json"})
    assert r.status_code == 202 and r.json()["accepted"] == 1


def test_ingest_errors_are_json(world):
    s, tokens, _ = world
    h = {"Authorization": f"Bearer {tokens['device']}", "Content-Type": "application/json"}
    big = s.client.post("/api/v1/ingest", content=b" " * (256 * 1024 + 1), headers=h)
    assert big.status_code == 413 and _error_code(big) == "too_large"
    bad = s.client.post("/api/v1/ingest", content=b"{not json", headers=h)
    assert bad.status_code == 400 and _error_code(bad) == "bad_json"
    # nothing is silently dropped: the unreadable message is in quarantine under the token's device
    q = s.services.db.query_one("SELECT device_id, source FROM quarantine WHERE reason = 'bad_json'")
    assert (q["device_id"], q["source"]) == ("LOG-A", "http")


def test_object_level_token_rules(world):
    s, tokens, _ = world
    admin_token_id = s.services.db.query_one("SELECT id FROM api_tokens WHERE name = 'tests'")["id"]
    viewer_h = {"Authorization": f"Bearer {tokens['viewer']}"}
    listed = s.client.get("/api/v1/auth/tokens", headers=viewer_h).json()
    assert [t["name"] for t in listed] == ["viewer"]  # only their own
    assert s.client.delete(f"/api/v1/auth/tokens/{admin_token_id}", headers=viewer_h).status_code == 404
    r = s.client.post("/api/v1/auth/tokens", headers=viewer_h, json={"name": "up", "role": "admin"})
    assert r.status_code == 400  # never above one's own role
    r = s.client.post("/api/v1/auth/tokens", headers=viewer_h, json={"name": "svc", "service": True})
    assert r.status_code == 403
    own = s.client.post("/api/v1/auth/tokens", headers=viewer_h, json={"name": "mine"}).json()
    assert own["role"] == "viewer" and own["token"].startswith("ct_")
    assert s.client.delete(f"/api/v1/auth/tokens/{own['id']}", headers=viewer_h).status_code == 204
    assert call(s, "GET", "/api/v1/shipments", own["token"]).status_code == 401  # revoked


def test_a_service_token_cannot_sign(world):
    s, tokens, _ = world
    svc_qa = auth.create_token(s.services.db, role="qa", name="svc-qa")
    r = s.client.post("/api/v1/shipments", headers={"Authorization": f"Bearer {svc_qa}"}, json={
        "reference": "SVC-1", "origin": "A", "destination": "B", "product": "P", "lot": "L"})
    assert r.status_code == 201
    sid = r.json()["id"]
    r = s.client.post(f"/api/v1/shipments/{sid}/decisions", headers={"Authorization": f"Bearer {svc_qa}"},
                      json={"meaning": "released", "reason": "ok", "password": "anything"})
    assert r.status_code == 403  # only a person signs, with their own password


def test_expired_token_is_refused(world):
    s, _, _ = world
    now = s.services.clock.now_ms()
    t = auth.create_token(s.services.db, role="viewer", name="short", expires=now + MINUTE, now_ms=now)
    assert call(s, "GET", "/api/v1/shipments", t).status_code == 200
    s.services.clock.advance(MINUTE)
    assert call(s, "GET", "/api/v1/shipments", t).status_code == 401

"""Token lifetimes capped by role (a viewer cannot give itself 9999-12-31), tokens never above the caller's
current role, X-Forwarded-* believed only from `api.trusted_proxies`, and the session cookie's Secure flag
behind a TLS proxy on another host (`api.cookie_secure`, set by docker-compose.yml)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import DAY
from coldtrace.services import auth
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration

PASSWORD = "cold-chain-2026!"


@pytest.fixture
def stack(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    yield s
    s.close()


def _personal_token(stack, username: str, role: str, token_role: str | None = None) -> dict[str, str]:
    db, now = stack.services.db, stack.services.clock.now_ms()
    uid = auth.create_user(db, username, username.title(), PASSWORD, role, now_ms=now)
    tok = auth.create_token(db, user=uid, role=token_role, name=f"{username}-cli", now_ms=now)
    return {"Authorization": f"Bearer {tok}"}


def test_a_viewer_cannot_give_its_token_a_far_expiry(stack):
    h = _personal_token(stack, "vic", "viewer")
    r = stack.client.post("/api/v1/auth/tokens", headers=h, json={"name": "forever", "expires": "9999-12-31T00:00:00Z"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "token_expiry_too_long"
    assert "90 days" in r.json()["error"]["message"]


@pytest.mark.parametrize(("role", "days"), [("viewer", 90), ("qa", 30), ("admin", 7)])
def test_each_role_has_its_maximum_which_is_also_the_default(stack, role, days):
    h = _personal_token(stack, f"user.{role}", role)
    now = stack.services.clock.now_ms()
    limit = now + days * DAY
    over = stack.client.post("/api/v1/auth/tokens", headers=h, json={"name": "over", "expires": limit + 1})
    assert over.status_code == 422 and over.json()["error"]["code"] == "token_expiry_too_long"
    at = stack.client.post("/api/v1/auth/tokens", headers=h, json={"name": "at", "expires": limit})
    assert at.status_code == 201 and at.json()["role"] == role
    default = stack.client.post("/api/v1/auth/tokens", headers=h, json={"name": "default"})
    assert default.status_code == 201
    row = stack.services.db.query_one("SELECT expires_at FROM api_tokens WHERE name = 'default'")
    assert row[0] == limit


def test_an_admins_service_token_is_capped_by_its_role_too(stack):
    r = stack.client.post("/api/v1/auth/tokens", headers=stack.headers,
                          json={"name": "grafana", "service": True, "role": "viewer",
                                "expires": "9999-12-31T00:00:00Z"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "token_expiry_too_long"


def test_a_personal_token_made_before_the_caps_stops_at_its_roles_maximum(stack):
    db, clock = stack.services.db, stack.services.clock
    uid = auth.create_user(db, "old.viewer", "Old Viewer", PASSWORD, "viewer", now_ms=clock.now_ms())
    far = 253_402_214_400_000  # 9999-12-31, as the API allowed before
    tok = auth.create_token(db, user=uid, name="legacy", expires=far, now_ms=clock.now_ms())
    h = {"Authorization": f"Bearer {tok}"}
    clock.advance(89 * DAY)
    assert stack.client.get("/api/v1/auth/session", headers=h).status_code == 200
    clock.advance(DAY)
    r = stack.client.get("/api/v1/auth/session", headers=h)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


def test_a_reduced_token_of_an_admin_cannot_mint_a_stronger_one(stack):
    h = _personal_token(stack, "ada", "admin", token_role="viewer")
    default = stack.client.post("/api/v1/auth/tokens", headers=h, json={"name": "child"})
    assert default.status_code == 201 and default.json()["role"] == "viewer"
    up = stack.client.post("/api/v1/auth/tokens", headers=h, json={"name": "up", "role": "admin"})
    assert up.status_code == 400 and up.json()["error"]["code"] == "bad_token_request"


def _client(stack_like, peer: str) -> TestClient:
    from api.app import create_app

    return TestClient(create_app(stack_like.services.settings, services=stack_like.services), client=(peer, 40000))


def _login(client: TestClient, **headers):
    return client.post("/api/v1/auth/login", json={"username": "qa.anna", "password": PASSWORD}, headers=headers)


@pytest.fixture
def behind_proxy(tmp_path):
    """The compose layout: the TLS proxy is another host (172.18.0.5) on the Docker network."""
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False,
                    api={"trusted_proxies": "172.16.0.0/12"})
    auth.create_user(s.services.db, "qa.anna", "Anna Berg", PASSWORD, "qa", now_ms=s.services.clock.now_ms())
    yield s
    s.close()


def test_a_trusted_proxy_on_another_host_gives_the_scheme_and_the_client_address(behind_proxy):
    with _client(behind_proxy, "172.18.0.5") as proxy:
        r = _login(proxy, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 200, r.text
    assert "secure" in r.headers["set-cookie"].lower().split("; ")
    row = behind_proxy.services.db.query_one("SELECT new_value FROM audit_log WHERE action = 'auth.login'")
    assert '"client":"198.51.100.7"' in row[0]


def test_forwarded_headers_of_a_peer_outside_the_trusted_proxies_are_ignored(behind_proxy):
    with _client(behind_proxy, "192.0.2.10") as direct:
        r = _login(direct, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 200
    assert "secure" not in r.headers["set-cookie"].lower().split("; ")
    row = behind_proxy.services.db.query_one("SELECT new_value FROM audit_log WHERE action = 'auth.login'")
    assert '"client":"192.0.2.10"' in row[0]


def test_cookie_secure_setting_marks_the_cookie_secure_over_plain_http(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False, api={"cookie_secure": True})
    try:
        auth.create_user(s.services.db, "qa.anna", "Anna Berg", PASSWORD, "qa", now_ms=s.services.clock.now_ms())
        r = _login(s.client)
        assert r.status_code == 200
        assert "secure" in r.headers["set-cookie"].lower().split("; ")
    finally:
        s.close()


def test_docker_compose_marks_the_cookie_secure():
    import yaml

    from tests.integration.test_compose import compose, secrets

    res = compose("config", env=secrets())
    assert res.returncode == 0, res.stderr
    env = yaml.safe_load(res.stdout)["services"]["api"]["environment"]
    assert str(env["COLDTRACE_API__COOKIE_SECURE"]).lower() == "true"
    assert env["COLDTRACE_API__TRUSTED_PROXIES"]

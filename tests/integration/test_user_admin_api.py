"""Editing people over the API as an administrator does it: `PATCH /api/v1/users/{username}` (full name, role,
active) and `POST /api/v1/users/{username}/password`, through real cookie sessions and bearer tokens of the
running app. Checks who may do it, the last-admin rule, the audit rows, and that a disabled or demoted
person's existing sessions and tokens follow at once."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient

from coldtrace.core.clock import ManualClock
from coldtrace.services import auth
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration
API = "/api/v1"
ROOT = ("root", "Rosa Oliveira", "root-password-2026")
QA = ("qa.anna", "Anna Berg", "qa-password-2026")
VIEWER = ("view.tom", "Tom Weber", "viewer-password-2026")


@pytest.fixture
def world(tmp_path):
    stack = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    db = stack.services.db
    for user, role in ((ROOT, "admin"), (QA, "qa"), (VIEWER, "viewer")):
        auth.create_user(db, user[0], user[1], user[2], role, actor="tests")
    clients: list[TestClient] = []

    def browser(user) -> tuple[TestClient, dict[str, str]]:
        """A separate cookie jar signed in as ``user``; returns it and the CSRF header for its writes."""
        c = TestClient(stack.client.app)
        clients.append(c)
        r = c.post(f"{API}/auth/login", json={"username": user[0], "password": user[2]})
        assert r.status_code == 200, r.text
        return c, {"X-CSRF-Token": r.json()["csrf_token"]}

    yield stack, browser
    for c in clients:
        c.close()
    stack.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _audit(stack, action: str) -> list[dict]:
    rows = stack.services.db.query("SELECT actor, entity_id, old_value, new_value FROM audit_log WHERE action = ?"
                                   " ORDER BY id", (action,))
    return [{"actor": r["actor"], "entity_id": r["entity_id"], "old": json.loads(r["old_value"] or "null"),
             "new": json.loads(r["new_value"] or "null")} for r in rows]


def _user(stack, username: str) -> dict:
    return auth.find_user(stack.services.db, username)


def test_only_an_admin_edits_people(world):
    stack, browser = world
    db = stack.services.db
    for user in (QA, VIEWER):
        token = auth.create_token(db, user=user[0], name="probe")
        for method, path, body in (("PATCH", f"{API}/users/{QA[0]}", {"role": "admin"}),
                                   ("POST", f"{API}/users/{QA[0]}/password", {"password": "taken-over-2026"})):
            r = stack.client.request(method, path, headers=_bearer(token), json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), (user[0], path)
        c, csrf = browser(user)  # the same through the QA pages' cookie session
        r = c.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"role": "admin"})
        assert r.status_code == 403
    assert _user(stack, QA[0])["role"] == "qa"
    assert _audit(stack, "user.update") == [] and _audit(stack, "user.password") == []
    assert auth.authenticate_password(db, QA[0], QA[2]) is not None  # password untouched


def test_an_admin_changes_name_and_role_and_the_audit_trail_says_who(world):
    stack, browser = world
    c, csrf = browser(ROOT)
    r = c.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"full_name": "  Dr Anna Berg ", "role": "admin"})
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("username", "full_name", "role", "active")} == {
        "username": QA[0], "full_name": "Dr Anna Berg", "role": "admin", "active": True}
    uid = _user(stack, QA[0])["id"]
    assert _audit(stack, "user.update") == [{"actor": ROOT[0], "entity_id": uid,
                                             "old": {"full_name": "Anna Berg", "role": "qa"},
                                             "new": {"full_name": "Dr Anna Berg", "role": "admin"}}]
    # nothing changes: no audit row; unknown fields, unknown roles, empty names and unknown users are refused
    assert c.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"role": "admin"}).status_code == 200
    assert len(_audit(stack, "user.update")) == 1
    for body in ({"username": "someone-else"}, {"role": "superuser"}, {"full_name": ""}, {"full_name": "A\x00B"},
                 {"full_name": "Anna\nBerg"}):
        r = c.patch(f"{API}/users/{QA[0]}", headers=csrf, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation"), body
    r = c.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"full_name": "   "})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_user")
    r = c.patch(f"{API}/users/nobody", headers=csrf, json={"role": "qa"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_user")
    # a cookie write without the CSRF header is refused
    assert c.patch(f"{API}/users/{QA[0]}", json={"role": "viewer"}).status_code == 403
    assert _user(stack, QA[0])["role"] == "admin"


def test_the_last_active_admin_can_be_neither_demoted_nor_disabled(world):
    stack, browser = world
    c, csrf = browser(ROOT)
    for body in ({"role": "qa"}, {"active": False}, {"role": "viewer", "active": False}):
        r = c.patch(f"{API}/users/{ROOT[0]}", headers=csrf, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "last_admin"), body
        assert "last active admin" in r.json()["error"]["message"]
    assert {k: _user(stack, ROOT[0])[k] for k in ("role", "active")} == {"role": "admin", "active": 1}
    assert _audit(stack, "user.update") == [] and _audit(stack, "user.disable") == []
    # a disabled admin does not count: enabling them is what makes the demotion possible
    auth.create_user(stack.services.db, "admin.two", "Second Admin", "second-admin-2026", "admin", actor="tests")
    assert c.patch(f"{API}/users/admin.two", headers=csrf, json={"active": False}).status_code == 200
    r = c.patch(f"{API}/users/{ROOT[0]}", headers=csrf, json={"role": "qa"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "last_admin")
    assert c.patch(f"{API}/users/admin.two", headers=csrf, json={"active": True}).status_code == 200
    r = c.patch(f"{API}/users/{ROOT[0]}", headers=csrf, json={"role": "qa"})  # root steps down
    assert r.status_code == 200 and r.json()["role"] == "qa"
    # ... and their session is a qa session from the next request on: admin.two is now the last admin
    assert c.get(f"{API}/users").status_code == 403
    c2, csrf2 = browser(("admin.two", "", "second-admin-2026"))
    r = c2.patch(f"{API}/users/admin.two", headers=csrf2, json={"active": False})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "last_admin")
    assert [a["new"] for a in _audit(stack, "user.disable")] == [{"active": False}]
    assert [a["new"] for a in _audit(stack, "user.enable")] == [{"active": True}]


def test_a_disabled_person_loses_sessions_and_tokens_until_enabled(world):
    stack, browser = world
    db = stack.services.db
    qa, _ = browser(QA)
    token = auth.create_token(db, user=QA[0], name="LIMS export")
    assert qa.get(f"{API}/auth/session").json()["name"] == QA[0]
    assert stack.client.get(f"{API}/shipments", headers=_bearer(token)).status_code == 200
    admin, csrf = browser(ROOT)

    r = admin.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    assert qa.get(f"{API}/auth/session").status_code == 401  # the open session ended
    assert stack.client.get(f"{API}/shipments", headers=_bearer(token)).status_code == 401
    r = stack.client.post(f"{API}/auth/login", json={"username": QA[0], "password": QA[2]})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "login_failed")
    uid = _user(stack, QA[0])["id"]
    assert _audit(stack, "user.disable") == [{"actor": ROOT[0], "entity_id": uid, "old": {"active": True},
                                              "new": {"active": False}}]
    revoked = db.query_one("SELECT COUNT(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL", (uid,))[0]
    assert revoked == 0

    assert admin.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"active": True}).status_code == 200
    # the token works again (it was stopped, not revoked); the ended session stays ended; signing in works
    assert stack.client.get(f"{API}/shipments", headers=_bearer(token)).status_code == 200
    assert qa.get(f"{API}/auth/session").status_code == 401
    assert stack.client.post(f"{API}/auth/login", json={"username": QA[0], "password": QA[2]}).status_code == 200
    assert [a["actor"] for a in _audit(stack, "user.enable")] == [ROOT[0]]


def test_a_role_change_applies_to_the_persons_open_session_and_tokens(world):
    stack, browser = world
    qa, _ = browser(QA)
    token = auth.create_token(stack.services.db, user=QA[0], name="audit reader")
    assert qa.get(f"{API}/audit").status_code == 200  # the audit trail needs qa
    assert stack.client.get(f"{API}/audit", headers=_bearer(token)).status_code == 200
    admin, csrf = browser(ROOT)

    assert admin.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"role": "viewer"}).status_code == 200
    assert qa.get(f"{API}/auth/session").json()["role"] == "viewer"
    assert qa.get(f"{API}/audit").status_code == 403
    assert stack.client.get(f"{API}/audit", headers=_bearer(token)).status_code == 403
    assert qa.get(f"{API}/shipments").status_code == 200  # still signed in, as a viewer

    assert admin.patch(f"{API}/users/{QA[0]}", headers=csrf, json={"role": "qa"}).status_code == 200
    assert qa.get(f"{API}/audit").status_code == 200
    assert stack.client.get(f"{API}/audit", headers=_bearer(token)).status_code == 200


def test_an_admin_sets_a_password_which_ends_the_persons_sessions(world):
    stack, browser = world
    qa, _ = browser(QA)
    admin, csrf = browser(ROOT)
    r = admin.post(f"{API}/users/{QA[0]}/password", headers=csrf, json={"password": "short"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation")
    r = admin.post(f"{API}/users/nobody/password", headers=csrf, json={"password": "long-enough-2026"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_user")

    r = admin.post(f"{API}/users/{QA[0]}/password", headers=csrf, json={"password": "reset-by-admin-2026"})
    assert r.status_code == 204, r.text
    assert qa.get(f"{API}/auth/session").status_code == 401
    assert stack.client.post(f"{API}/auth/login", json={"username": QA[0], "password": QA[2]}).status_code == 401
    assert stack.client.post(f"{API}/auth/login",
                             json={"username": QA[0], "password": "reset-by-admin-2026"}).status_code == 200
    rows = _audit(stack, "user.password")
    assert [(a["actor"], a["entity_id"], a["new"]) for a in rows] == [
        (ROOT[0], _user(stack, QA[0])["id"], {"password": "changed"})]
    assert "reset-by-admin" not in json.dumps(rows)


def test_two_admins_disabling_each_other_at_once_leave_one_admin(world):
    """Two requests at once: each admin disables the other. The last-admin check and the change are one write
    transaction, so exactly one succeeds and an active admin remains (no lost update)."""
    stack, _ = world
    db = stack.services.db
    second = ("root2", "Ravi Iyer", "root2-password-2026")
    auth.create_user(db, second[0], second[1], second[2], "admin", actor="tests")
    tokens = {u[0]: auth.create_token(db, user=u[0], name="race") for u in (ROOT, second)}
    barrier = threading.Barrier(2)
    answers: dict[str, int] = {}

    def disable(actor: str, target: str) -> None:
        with TestClient(stack.client.app) as c:
            barrier.wait()
            answers[actor] = c.patch(f"{API}/users/{target}", headers=_bearer(tokens[actor]),
                                     json={"active": False}).status_code

    threads = [threading.Thread(target=disable, args=(ROOT[0], second[0])),
               threading.Thread(target=disable, args=(second[0], ROOT[0]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers.values()) in ([200, 401], [200, 403], [200, 409]), answers
    admins = db.query("SELECT username FROM users WHERE role = 'admin' AND active = 1")
    assert len(admins) == 1

"""Access control rules: hashed secrets, roles never above the user's, lockout, session timeouts, exposure."""

from __future__ import annotations

import types

import pytest

from coldtrace.core.errors import ConfigError, Conflict
from coldtrace.core.model import MINUTE
from coldtrace.services import auth
from coldtrace.store.db import Database

NOW = 1_795_687_200_000


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "t.db")
    yield d
    d.close()


def test_secrets_are_stored_only_as_hashes(db):
    uid = auth.create_user(db, "alice", "Alice A", "a-long-password", "qa", now_ms=NOW)
    tok = auth.create_token(db, user=uid, name="t", now_ms=NOW)
    dtok = auth.create_device_token(db, ["LOG-1"], now_ms=NOW)
    dump = "\n".join(str(tuple(r)) for t in ("users", "api_tokens", "device_tokens")
                     for r in db.query(f"SELECT * FROM {t}"))
    assert "a-long-password" not in dump and tok not in dump and dtok not in dump
    assert db.query_one("SELECT password_hash FROM users")[0].startswith("$argon2id$")
    assert tok.startswith("ct_") and dtok.startswith("ctd_") and len(tok) > 40


def test_token_role_never_above_the_users_and_follows_a_demotion(db):
    uid = auth.create_user(db, "vic", "Vic V", "a-long-password", "viewer", now_ms=NOW)
    with pytest.raises(ValueError):
        auth.create_token(db, user=uid, role="admin", name="up", now_ms=NOW)
    admin_id = auth.create_user(db, "ada", "Ada A", "a-long-password", "admin", now_ms=NOW)
    tok = auth.create_token(db, user=admin_id, name="t", now_ms=NOW)
    assert auth.authenticate_bearer(db, tok, NOW).role == "admin"
    with db.write() as c:
        c.execute("UPDATE users SET role = 'viewer' WHERE id = ?", (admin_id,))
    assert auth.authenticate_bearer(db, tok, NOW).role == "viewer"


def test_device_token_principal_is_bound_to_its_devices(db):
    tok = auth.create_device_token(db, ["LOG-2", "LOG-1"], now_ms=NOW)
    p = auth.authenticate_bearer(db, tok, NOW)
    assert p.kind == "device" and p.role == "device" and p.device_ids == {"LOG-1", "LOG-2"}
    assert p.may_write_device("LOG-1") and not p.may_write_device("LOG-3")
    assert not p.has_role("viewer")
    with pytest.raises(ValueError):
        auth.create_device_token(db, ["bad/id"], now_ms=NOW)


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(db):
    auth.create_user(db, "bob", "Bob B", "right-password", "qa", now_ms=NOW)
    for _ in range(5):
        assert auth.authenticate_password(db, "bob", "wrong", now_ms=NOW) is None
    assert auth.authenticate_password(db, "bob", "right-password", now_ms=NOW + 14 * MINUTE) is None
    assert auth.authenticate_password(db, "bob", "right-password", now_ms=NOW + 15 * MINUTE) is not None
    assert auth.authenticate_password(db, "nobody", "x", now_ms=NOW) is None


def test_usernames_are_unique_ignoring_case_and_passwords_have_a_minimum(db):
    auth.create_user(db, "carol", "Carol C", "a-long-password", "viewer", now_ms=NOW)
    with pytest.raises(Conflict):
        auth.create_user(db, "CAROL", "Other", "a-long-password", "viewer", now_ms=NOW)
    with pytest.raises(ValueError):
        auth.create_user(db, "dan", "Dan D", "short", "viewer", now_ms=NOW)


def test_sessions_end_when_idle_at_their_limit_and_on_logout(db):
    uid = auth.create_user(db, "eve", "Eve E", "a-long-password", "qa", now_ms=NOW)
    s = auth.create_session(db, uid, NOW)
    assert auth.authenticate_session(db, s.token, NOW + 29 * MINUTE).principal.name == "eve"
    assert auth.authenticate_session(db, s.token, NOW + 58 * MINUTE) is not None  # activity slid the idle window
    assert auth.authenticate_session(db, s.token, NOW + 90 * MINUTE) is None  # idle > 30 min
    s2 = auth.create_session(db, uid, NOW)
    auth.revoke_session(db, s2.token, NOW + MINUTE)
    assert auth.authenticate_session(db, s2.token, NOW + 2 * MINUTE) is None
    assert auth.check_csrf(s, s.csrf_token) and not auth.check_csrf(s, "nope") and not auth.check_csrf(s, None)


def test_bootstrap_admin_only_on_an_empty_database(db):
    tok = auth.ensure_bootstrap_admin(db, NOW)
    assert tok and auth.authenticate_bearer(db, tok, NOW).role == "admin"
    assert auth.ensure_bootstrap_admin(db, NOW) is None
    assert auth.authenticate_bearer(db, tok, NOW + 25 * 60 * MINUTE) is None  # valid one day


def test_listening_beyond_loopback_needs_credentials(db):
    public = types.SimpleNamespace(api=types.SimpleNamespace(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="beyond loopback"):
        auth.check_exposure(public, db)
    auth.check_exposure(types.SimpleNamespace(api=types.SimpleNamespace(host="127.0.0.1")), db)
    auth.check_exposure(types.SimpleNamespace(api=types.SimpleNamespace(host="::1")), db)
    auth.create_user(db, "root", "Root R", "a-long-password", "admin", now_ms=NOW)
    auth.check_exposure(public, db)

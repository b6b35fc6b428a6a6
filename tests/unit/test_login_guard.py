"""Sign-in hardening in the core: the lockout counts every simultaneous failure (one UPDATE ... RETURNING),
signatures count toward it, every attempt costs one argon2 check whatever the account's state, hashing is
bounded, the throttle delays grow exponentially and refused attempts do not count."""

from __future__ import annotations

import threading

import pytest
from argon2 import PasswordHasher

from coldtrace.core.errors import RateLimited
from coldtrace.core.model import MINUTE
from coldtrace.services import auth
from coldtrace.services.login_guard import LoginThrottle, delay_ms
from coldtrace.store.db import Database

NOW = 1_795_687_200_000
RIGHT = "right-password-1"


@pytest.fixture
def cheap_argon2(monkeypatch):
    """argon2id with small parameters (the rules under test do not depend on the cost) and a fresh gate."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    auth._dummy_hash.cache_clear()
    monkeypatch.setattr(auth, "_gate", auth.HashGate(2, queue=100, wait_s=30))
    yield
    auth._dummy_hash.cache_clear()


@pytest.fixture
def db(tmp_path, cheap_argon2):
    d = Database(tmp_path / "t.db")
    yield d
    d.close()


def _user_row(db, username):
    return db.query_one("SELECT failed_logins, locked_until FROM users WHERE username = ?", (username,))


def _run_together(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_forty_simultaneous_failures_all_count_and_lock(db):
    """Sign-ins and signature re-entries at the same instant: none of the 40 failures is lost."""
    uid = auth.create_user(db, "qa.anna", "Anna Berg", RIGHT, "qa", now_ms=NOW)

    def attempt(i: int):
        if i % 2:
            return auth.verify_password(db, uid, f"wrong-{i}", now_ms=NOW)
        return auth.check_login(db, "qa.anna", f"wrong-{i}", now_ms=NOW, client="127.0.0.1").principal

    results = _run_together(40, attempt)
    assert all(r in (None, False) for r in results)
    row = _user_row(db, "qa.anna")
    assert row["failed_logins"] == 40
    assert row["locked_until"] == NOW + auth.LOCKOUT_MS  # locked once, not extended by the later failures
    assert auth.authenticate_password(db, "qa.anna", RIGHT, now_ms=NOW + MINUTE) is None
    assert auth.verify_password(db, uid, RIGHT, now_ms=NOW + MINUTE) is False  # a locked account cannot sign
    assert auth.authenticate_password(db, "qa.anna", RIGHT, now_ms=NOW + auth.LOCKOUT_MS) is not None
    assert _user_row(db, "qa.anna")["failed_logins"] == 0


def test_a_failure_after_the_lock_ended_starts_a_new_count(db):
    auth.create_user(db, "qa.ben", "Ben C", RIGHT, "qa", now_ms=NOW)
    for _ in range(auth.MAX_FAILED_LOGINS):
        auth.check_login(db, "qa.ben", "nope", now_ms=NOW)
    assert _user_row(db, "qa.ben")["locked_until"] == NOW + auth.LOCKOUT_MS
    later = NOW + auth.LOCKOUT_MS + 1
    res = auth.check_login(db, "qa.ben", "nope", now_ms=later)
    assert res.principal is None and not res.locked
    assert tuple(_user_row(db, "qa.ben")) == (1, None)


def test_every_attempt_costs_one_argon2_check_whatever_the_account_state(db, monkeypatch):
    auth.create_user(db, "locked", "L L", RIGHT, "qa", now_ms=NOW)
    auth.create_user(db, "open", "O O", RIGHT, "qa", now_ms=NOW)
    auth.create_user(db, "gone", "G G", RIGHT, "qa", now_ms=NOW)
    with db.write() as c:
        c.execute("UPDATE users SET active = 0 WHERE username = 'gone'")
    for _ in range(auth.MAX_FAILED_LOGINS):
        auth.check_login(db, "locked", "nope", now_ms=NOW)
    calls: list[str] = []

    class CountingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002 (argon2's own parameter name)
            calls.append(hash)
            return super().verify(hash, password)

    monkeypatch.setattr(auth, "_hasher", CountingHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for username, password in (("locked", RIGHT), ("locked", "nope"), ("open", "nope"), ("nobody", "nope"),
                               ("gone", RIGHT)):
        calls.clear()
        assert auth.authenticate_password(db, username, password, now_ms=NOW + MINUTE) is None, username
        assert len(calls) == 1, f"{username}: {len(calls)} argon2 checks"
        if username == "nobody":
            assert calls == [auth._dummy_hash()]  # an unknown user is checked against the dummy hash


def test_unknown_usernames_are_counted_per_window_in_one_audit_record(db):
    for i in range(30):
        auth.check_login(db, f"ghost{i}", "x", now_ms=NOW + i * 1000, client="203.0.113.9" if i % 3 else "::1")
    actions = [r["action"] for r in db.query("SELECT action FROM audit_log")]
    assert "auth.login_failed_unknown" not in actions and "auth.login_failed" not in actions
    assert db.query_one("SELECT SUM(attempts) FROM login_failures_unknown")[0] == 30
    with db.write() as c:  # the clock tick after the window ended
        assert auth.flush_unknown_failures(c, NOW + auth.UNKNOWN_WINDOW_MS + 30_000) == 1
    rows = db.query("SELECT * FROM audit_log WHERE action = 'auth.login_failed_unknown'")
    assert len(rows) == 1
    import json

    new = json.loads(rows[0]["new_value"])
    assert new["attempts"] == 30 and new["clients"] == {"203.0.113.9": 20, "::/64": 10}
    assert new["clients_total"] == 2 and new["first_ts"] == NOW and new["last_ts"] == NOW + 29_000
    assert db.query_one("SELECT COUNT(*) FROM login_failures_unknown")[0] == 0


def test_a_known_users_failure_is_audited_with_its_count(db):
    uid = auth.create_user(db, "vic", "Vic V", RIGHT, "viewer", now_ms=NOW)
    auth.check_login(db, "vic", "nope", now_ms=NOW, client="198.51.100.4")
    auth.check_login(db, "vic", RIGHT, now_ms=NOW + 1, client="198.51.100.4")
    import json

    rows = db.query("SELECT action, entity_id, new_value FROM audit_log WHERE entity_id = ? AND action LIKE"
                    " 'auth.%' ORDER BY id", (uid,))
    assert [r["action"] for r in rows] == ["auth.login_failed", "auth.login"]
    assert json.loads(rows[0]["new_value"]) == {"client": "198.51.100.4", "consecutive_failures": 1,
                                                "locked_until": None}


def test_hashing_is_bounded_and_the_excess_is_refused_at_once():
    gate = auth.HashGate(2, queue=1, wait_s=5)
    inside = threading.Event()
    release = threading.Event()
    entered = threading.Semaphore(0)

    def hold():
        with gate.slot():
            entered.release()
            inside.set()
            release.wait(10)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    for _ in range(2):
        assert entered.acquire(timeout=10)
    waiter_result: list = []
    waiter = threading.Thread(target=lambda: waiter_result.append(_enter(gate)))
    waiter.start()
    deadline = threading.Event()
    while gate._inside < 3 and not deadline.wait(0.01):
        pass
    with pytest.raises(RateLimited) as exc:  # 2 computing + 1 waiting: a 4th is refused without waiting
        with gate.slot():
            pass
    assert exc.value.code == "login_busy" and exc.value.headers["Retry-After"].isdigit()
    release.set()
    for t in (*holders, waiter):
        t.join(10)
    assert waiter_result == ["entered"] and gate.peak == 2


def _enter(gate) -> str:
    with gate.slot():
        return "entered"


def test_hash_slots_are_sized_to_memory_and_cpus(monkeypatch):
    per_hash = auth._hasher.memory_cost * 1024
    monkeypatch.setattr(auth.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(auth, "available_memory_bytes", lambda: 10 * per_hash)
    assert auth.default_hash_slots() == 2  # a quarter of the memory: 2.5 buffers
    monkeypatch.setattr(auth, "available_memory_bytes", lambda: per_hash)
    assert auth.default_hash_slots() == 1  # at least one
    monkeypatch.setattr(auth.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(auth, "available_memory_bytes", lambda: 1000 * per_hash)
    assert auth.default_hash_slots() == 2  # no more than CPUs


def test_throttle_delay_grows_exponentially_and_is_capped():
    assert [delay_ms(n, 5) for n in range(4, 10)] == [0, 1000, 2000, 4000, 8000, 16000]
    assert delay_ms(60, 5) == 5 * MINUTE


# the per-account and per-client rules are tested in memory and on each database by
# tests/integration/test_login_throttle_shared.py (its ``make`` fixture builds both kinds of throttle)


def test_throttle_memory_is_bounded():
    t = LoginThrottle(max_keys=100)
    for i in range(1000):
        t.admit(f"10.1.{i // 256}.{i % 256}", f"user{i}", NOW + i)
    assert len(t) <= 100


def test_an_ipv6_client_counts_by_its_slash_64():
    from coldtrace.services.login_guard import client_bucket

    assert client_bucket("2001:db8:1:2:aaaa::1") == client_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_bucket("::ffff:192.0.2.7") == client_bucket("192.0.2.7") == "192.0.2.7"
    assert client_bucket(None) == "unknown"
    t = LoginThrottle(account_free=100, client_free=3)
    for i in range(3):
        t.admit(f"2001:db8:1:2::{i + 1:x}", f"user{i}", NOW)
    with pytest.raises(RateLimited):  # a new address in the same /64 is the same client
        t.admit("2001:db8:1:2:dead:beef::1", "user9", NOW)
    t.admit("2001:db8:1:3::1", "user9", NOW)

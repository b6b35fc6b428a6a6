"""The sign-in throttle's counts live in the database, so several API processes on one database share them: a
client that spreads its attempts over two API processes (behind a load balancer) meets one count, not one per
process, and simultaneous attempts in several processes cannot all pass the same check. The throttle's rules
are the same with its counts in memory or in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from coldtrace.core.clock import ManualClock
from coldtrace.core.errors import RateLimited
from coldtrace.core.model import MINUTE
from coldtrace.services import auth
from coldtrace.services.login_guard import CLIENT_FREE, LoginThrottle
from coldtrace.store import auth as store
from coldtrace.store.db import Database
from coldtrace.store.postgres import PostgresDatabase
from coldtrace.wiring import build_services
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration

NOW = 1_795_687_200_000
LOGIN = "/api/v1/auth/login"


@pytest.fixture(params=["sqlite", "postgresql"])
def open_db(request, tmp_path):
    """A factory of Database objects on one fresh database, each with its own connections (as separate API
    processes have): the SQLite file, or a PostgreSQL database."""
    opened: list = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None

    def factory():
        opened.append(PostgresDatabase(url) if url else Database(tmp_path / "throttle.db"))
        return opened[-1]

    yield factory
    for d in opened:
        d.close()


@pytest.fixture(params=["memory", "database"])
def make(request, tmp_path):
    """A factory of throttles with the given rules: in memory, or on the database (a new Database each call,
    as a separate process would open it)."""
    opened: list[Database] = []

    def factory(**rules) -> LoginThrottle:
        if request.param == "memory":
            return LoginThrottle(**rules)
        opened.append(Database(tmp_path / "throttle.db"))
        return LoginThrottle(opened[-1], **rules)

    yield factory
    for d in opened:
        d.close()


def test_per_account_whether_or_not_it_exists_and_refusals_do_not_count(make):
    t = make(account_free=3, client_free=100)
    for i in range(3):
        t.admit(f"10.0.0.{i}", "Someone", NOW)  # three addresses, one username (case-folded)
    with pytest.raises(RateLimited) as exc:
        t.admit("10.0.0.9", "someone", NOW + 500)
    assert exc.value.code == "login_throttled" and exc.value.retry_after_s == 1
    for _ in range(5):  # refused attempts are not counted: the wait does not grow
        with pytest.raises(RateLimited):
            t.admit("10.0.0.9", "someone", NOW + 900)
    t.admit("10.0.0.9", "someone", NOW + 1000)
    with pytest.raises(RateLimited) as exc:
        t.admit("10.0.0.9", "someone", NOW + 2000)
    assert exc.value.retry_after_s == 1  # 4 attempts: 2 s after the previous one
    t.admit("10.0.0.9", "someone", NOW + 3000)
    t.admit("10.0.0.9", "someone", NOW + 3000 + 4000 + 30 * MINUTE)  # forgotten after a quiet half hour


def test_per_client_and_a_success_gives_the_clients_place_back(make):
    t = make(account_free=100, client_free=3)
    for i in range(3):
        t.settle(t.admit("192.0.2.1", f"user{i}", NOW), succeeded=True)  # good sign-ins do not add up
    for a in [t.admit("192.0.2.1", f"guess{i}", NOW) for i in range(3)]:
        t.settle(a)
    with pytest.raises(RateLimited):
        t.admit("192.0.2.1", "another", NOW)
    t.admit("192.0.2.2", "another", NOW)  # another client is not slowed
    t.settle(t.admit("192.0.2.3", "x", NOW), tried=False)  # never checked (hashing full): not counted
    assert len(t) == 6


def test_two_processes_share_one_count(open_db):
    one, two = open_db(), open_db()
    a, b = LoginThrottle(one, account_free=100, client_free=4), LoginThrottle(two, account_free=100, client_free=4)
    for i in range(4):  # alternating between the two API processes
        (a if i % 2 else b).admit("198.51.100.7", f"spray{i}", NOW)
    for t in (a, b):  # the fifth attempt waits, whichever process it reaches
        with pytest.raises(RateLimited):
            t.admit("198.51.100.7", "spray-more", NOW + 10)
    a.settle(a.admit("198.51.100.7", "spray-later", NOW + 1000), succeeded=True)  # after the delay
    assert store.throttle_entries(two, ["c:198.51.100.7"])[0].attempts == 4  # the success gave it back


def test_simultaneous_attempts_in_several_processes_cannot_all_pass(open_db):
    """40 attempts for one username at the same instant, spread over four processes: exactly the free
    ones are admitted (the lockout bypass of issue 14, now across processes)."""
    dbs = [open_db() for _ in range(4)]
    throttles = [LoginThrottle(d, account_free=5, client_free=1000) for d in dbs]
    barrier = threading.Barrier(40)
    admitted, refused = [], []

    def attempt(i: int) -> None:
        barrier.wait(30)
        try:
            admitted.append(throttles[i % 4].admit(f"203.0.113.{i}", "qa.anna", NOW))
        except RateLimited:
            refused.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert (len(admitted), len(refused)) == (5, 35)
    assert store.throttle_entries(dbs[0], ["u:qa.anna"])[0].attempts == 5


def test_quiet_keys_are_pruned_from_the_table(open_db):
    t = LoginThrottle(open_db())
    for i in range(50):
        t.admit(f"10.2.0.{i}", f"user{i}", NOW)
    assert len(t) == 100
    t.admit("10.3.0.1", "late", NOW + 30 * MINUTE)  # the others were quiet for the forget time
    assert len(t) == 2


@pytest.fixture
def cheap_argon2(monkeypatch):
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    auth._dummy_hash.cache_clear()
    yield
    auth._dummy_hash.cache_clear()


def test_two_api_processes_on_one_database_throttle_one_client_together(tmp_path: Path, cheap_argon2):
    """Two APIs (each with its own Services and database connections, as two processes behind a load
    balancer): the client's 20 free attempts are counted across both, the 21st is refused by either."""
    from api.app import create_app

    clock = ManualClock(NOW)
    apps = []
    for _ in range(2):
        settings = make_settings(tmp_path)
        services = build_services(settings, clock)
        apps.append((services, TestClient(create_app(settings, services=services))))
    try:
        codes = [apps[i % 2][1].post(LOGIN, json={"username": f"spray{i}", "password": "x"}).status_code
                 for i in range(CLIENT_FREE)]
        assert codes == [401] * CLIENT_FREE
        for _, client in apps:
            r = client.post(LOGIN, json={"username": "one-more", "password": "x"})
            assert (r.status_code, r.json()["error"]["code"]) == (429, "login_throttled")
            assert int(r.headers["retry-after"]) >= 1
        clock.advance(MINUTE)
        assert apps[1][1].post(LOGIN, json={"username": "after-the-wait", "password": "x"}).status_code == 401
    finally:
        for services, client in apps:
            client.close()
            services.close()

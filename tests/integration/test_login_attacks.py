"""Sign-in attacked over real HTTP (uvicorn on loopback, real argon2id): simultaneous wrong passwords lock
the account, the answer does not tell a locked account from an open or unknown one, too many attempts get
429 with Retry-After, unknown usernames do not grow the audit trail one record each, and the client address
is taken from X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import MINUTE
from coldtrace.services import auth
from coldtrace.wiring import Services, build_services
from tests.support.services import free_port, wait_port
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration

RIGHT = "cold-chain-2026!"
LOGIN = "/api/v1/auth/login"


@dataclass
class Live:
    services: Services
    clock: ManualClock
    url: str

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


def serve(tmp_path, **over) -> Iterator[Live]:
    from api.app import create_app

    clock = ManualClock()
    settings = make_settings(tmp_path, None, **over)
    services = build_services(settings, clock)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, services=services), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False, lifespan="off",
                                           proxy_headers=False))
    thread = threading.Thread(target=server.run, name="login-uvicorn", daemon=True)
    thread.start()
    wait_port(port, timeout=20)
    try:
        yield Live(services, clock, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(15)
        services.close()


@pytest.fixture
def live(tmp_path):
    yield from serve(tmp_path)


@pytest.fixture
def cheap_argon2(monkeypatch):
    """For the tests that spray many usernames: argon2id with small parameters (what they check does not
    depend on the cost; the lockout and lock-state tests keep the real parameters)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    auth._dummy_hash.cache_clear()
    yield
    auth._dummy_hash.cache_clear()


def _locked_until(live: Live, username: str) -> int | None:
    return live.services.db.query_one("SELECT locked_until FROM users WHERE username = ?", (username,))[0]


def _simultaneously(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_forty_simultaneous_wrong_passwords_lock_the_account(live):
    auth.create_user(live.services.db, "qa.anna", "Anna Berg", RIGHT, "qa", now_ms=live.clock.now_ms())

    def wrong(i: int) -> httpx.Response:
        with live.client() as c:
            return c.post(LOGIN, json={"username": "qa.anna", "password": f"guess-{i}"})

    answers = _simultaneously(40, wrong)
    codes = sorted({(r.status_code, r.json()["error"]["code"]) for r in answers})
    assert set(codes) <= {(401, "login_failed"), (429, "login_throttled"), (429, "login_busy")}, codes
    assert all(r.headers["retry-after"].isdigit() for r in answers if r.status_code == 429)
    assert _locked_until(live, "qa.anna") == live.clock.now_ms() + auth.LOCKOUT_MS
    # every password check that answered 401 was counted (none lost to a simultaneous one)
    failed = live.services.db.query_one("SELECT failed_logins FROM users WHERE username = 'qa.anna'")[0]
    assert failed == sum(r.status_code == 401 for r in answers) >= auth.MAX_FAILED_LOGINS

    live.clock.advance(5 * MINUTE)  # past the throttle's delay, well inside the lockout
    with live.client() as c:
        r = c.post(LOGIN, json={"username": "qa.anna", "password": RIGHT})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "login_failed")
    assert "set-cookie" not in r.headers

    live.clock.advance(auth.LOCKOUT_MS)
    with live.client() as c:
        ok = c.post(LOGIN, json={"username": "qa.anna", "password": RIGHT})
    assert ok.status_code == 200 and ok.json()["name"] == "qa.anna"


def test_the_answer_does_not_tell_a_locked_account_from_an_open_or_unknown_one(live, monkeypatch):
    db, now = live.services.db, live.clock.now_ms()
    auth.create_user(db, "locked.lu", "Lu L", RIGHT, "qa", now_ms=now)
    auth.create_user(db, "open.olga", "Olga O", RIGHT, "qa", now_ms=now)
    with live.client() as c:
        for i in range(auth.MAX_FAILED_LOGINS):
            assert c.post(LOGIN, json={"username": "locked.lu", "password": f"guess-{i}"}).status_code == 401
    assert _locked_until(live, "locked.lu") is not None

    # the time an answer takes is the argon2 check: count them (real parameters) instead of timing them
    from argon2 import PasswordHasher

    checks: list[str] = []

    class CountingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002 (argon2's parameter name)
            checks.append(hash)
            return super().verify(hash, password)

    monkeypatch.setattr(auth, "_hasher", CountingHasher())
    probes = [("locked.lu", RIGHT), ("locked.lu", "guess-x"), ("open.olga", "guess-x"), ("no.such.user", RIGHT)]
    answers, checks_per_probe = [], []
    with live.client() as c:
        for username, password in probes:
            live.clock.advance(MINUTE)  # each probe after the throttle's delay
            checks.clear()
            answers.append(c.post(LOGIN, json={"username": username, "password": password}))
            checks_per_probe.append(len(checks))
    assert checks_per_probe == [1, 1, 1, 1]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1, [r.text for r in answers]
    assert len({tuple(sorted(k for k in r.headers if k != "date")) for r in answers}) == 1
    assert answers[0].json()["error"]["code"] == "login_failed"


def test_too_many_attempts_from_one_client_are_throttled_with_retry_after(live, cheap_argon2):
    with live.client() as c:
        answers = [c.post(LOGIN, json={"username": f"spray{i}", "password": "x"}) for i in range(25)]
        assert [r.status_code for r in answers[:20]] == [401] * 20
        late = answers[20]
        assert late.status_code == 429 and late.json()["error"]["code"] == "login_throttled"
        assert int(late.headers["retry-after"]) >= 1
        live.clock.advance(int(late.headers["retry-after"]) * 1000)
        assert c.post(LOGIN, json={"username": "spray-again", "password": "x"}).status_code == 401
        # another client (through the trusted proxy on 127.0.0.1) is not slowed by this one
        other = c.post(LOGIN, json={"username": "someone", "password": "x"},
                       headers={"X-Forwarded-For": "198.51.100.20"})
        assert other.status_code == 401


def test_password_hashing_full_answers_429_login_busy_at_once(live):
    gate = auth.configure_password_hashing(1, queue=0, wait_s=5)
    auth.create_user(live.services.db, "vic", "Vic V", RIGHT, "viewer", now_ms=live.clock.now_ms())
    held, release = threading.Event(), threading.Event()

    def hold():
        with gate.slot():
            held.set()
            release.wait(20)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        with live.client() as c:
            r = c.post(LOGIN, json={"username": "vic", "password": RIGHT})
        assert r.status_code == 429 and r.json()["error"]["code"] == "login_busy"
        assert int(r.headers["retry-after"]) >= 1
    finally:
        release.set()
        t.join(10)
        auth.configure_password_hashing()
    with live.client() as c:  # the refused attempt did not count against the account
        assert c.post(LOGIN, json={"username": "vic", "password": RIGHT}).status_code == 200
    assert live.services.db.query_one("SELECT failed_logins FROM users WHERE username = 'vic'")[0] == 0


def test_unknown_usernames_make_one_audit_record_per_window(live, cheap_argon2):
    db = live.services.db
    with live.client() as c:
        for i in range(24):
            ip = "203.0.113.9" if i % 2 else "198.51.100.7"
            r = c.post(LOGIN, json={"username": f"ghost{i}", "password": "x"}, headers={"X-Forwarded-For": ip})
            assert r.status_code == 401
        assert db.query_one("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'auth.login_failed%'")[0] == 0
        live.clock.advance(auth.UNKNOWN_WINDOW_MS)
        assert c.post(LOGIN, json={"username": "ghost-late", "password": "x"}).status_code == 401
    rows = db.query("SELECT actor, new_value FROM audit_log WHERE action LIKE 'auth.login_failed%'")
    assert len(rows) == 1 and rows[0]["actor"] == "anonymous"
    import json

    summary = json.loads(rows[0]["new_value"])
    assert summary["attempts"] == 24 and summary["clients"] == {"198.51.100.7": 12, "203.0.113.9": 12}


@pytest.fixture
def live_untrusting(tmp_path):
    yield from serve(tmp_path, api={"trusted_proxies": [], "cookie_secure": False})


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(live_untrusting, cheap_argon2):
    """With no trusted proxy a client cannot pick its own address (to escape the throttle) or scheme."""
    live = live_untrusting
    auth.create_user(live.services.db, "vic", "Vic V", RIGHT, "viewer", now_ms=live.clock.now_ms())
    with live.client() as c:
        r = c.post(LOGIN, json={"username": "vic", "password": RIGHT},
                   headers={"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"})
        assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()
        for i in range(20):
            c.post(LOGIN, json={"username": f"spray{i}", "password": "x"},
                   headers={"X-Forwarded-For": f"198.51.100.{i + 2}"})
        blocked = c.post(LOGIN, json={"username": "spray-x", "password": "x"},
                         headers={"X-Forwarded-For": "198.51.100.99"})
    assert blocked.status_code == 429  # all counted against 127.0.0.1
    row = live.services.db.query_one("SELECT new_value FROM audit_log WHERE action = 'auth.login'")
    assert '"client":"127.0.0.1"' in row[0]


@pytest.fixture
def live_behind_proxy(tmp_path):
    """The TLS proxy is another host: 127.0.0.2 (the only trusted proxy); 127.0.0.1 plays a direct client."""
    yield from serve(tmp_path, api={"trusted_proxies": ["127.0.0.2/32"], "cookie_secure": False})


def _from(live: Live, source: str) -> httpx.Client:
    return live.client(transport=httpx.HTTPTransport(local_address=source))


def _secure(r: httpx.Response) -> bool:
    return "secure" in [p.strip().lower() for p in r.headers["set-cookie"].split(";")]


def test_forwarded_proto_and_for_are_believed_only_from_the_trusted_proxy(live_behind_proxy, cheap_argon2):
    """Over real TCP: the same X-Forwarded-Proto/-For headers make the cookie Secure and name the client when
    they come from the trusted proxy's address, and are ignored from any other peer."""
    live = live_behind_proxy
    auth.create_user(live.services.db, "vic", "Vic V", RIGHT, "viewer", now_ms=live.clock.now_ms())
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    with _from(live, "127.0.0.2") as proxy:
        via_proxy = proxy.post(LOGIN, json={"username": "vic", "password": RIGHT}, headers=forwarded)
    with _from(live, "127.0.0.1") as direct:
        spoofed = direct.post(LOGIN, json={"username": "vic", "password": RIGHT}, headers=forwarded)
    assert via_proxy.status_code == 200 and _secure(via_proxy)
    assert spoofed.status_code == 200 and not _secure(spoofed)
    clients = [r[0] for r in live.services.db.query(
        "SELECT new_value FROM audit_log WHERE action = 'auth.login' ORDER BY id")]
    assert ['"client":"198.51.100.7"' in v for v in clients] == [True, False]
    assert '"client":"127.0.0.1"' in clients[1]


@pytest.fixture
def live_cookie_secure(tmp_path):
    yield from serve(tmp_path, api={"trusted_proxies": [], "cookie_secure": True})


def test_cookie_secure_marks_the_cookie_secure_even_over_plain_http(live_cookie_secure, cheap_argon2):
    """What compose sets (COLDTRACE_API__COOKIE_SECURE=true): the TLS proxy's scheme need not reach the API."""
    live = live_cookie_secure
    auth.create_user(live.services.db, "vic", "Vic V", RIGHT, "viewer", now_ms=live.clock.now_ms())
    with live.client() as c:
        r = c.post(LOGIN, json={"username": "vic", "password": RIGHT})
    assert r.status_code == 200 and _secure(r)
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()

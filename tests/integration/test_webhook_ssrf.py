"""Webhook targets against DNS rebinding and internal reads (issue 14 item 3), with real loopback servers.

Name resolution is a stub installed as ``socket.getaddrinfo`` for the test: it answers from a table, a
different answer on each call for a rebinding name, passes numeric addresses through and knows no other
name, so no DNS query leaves the process. Every server listens on 127.0.0.x: no traffic leaves the machine.

127.0.0.2 plays an internal receiver the site allowed (``webhooks.allowed_private_targets``); 127.0.0.1, on
the same port, plays an internal service nobody allowed (an admin page, a metadata endpoint).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import subprocess

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import Alert
from coldtrace.services import webhooks as wh
from coldtrace.services.delivery import Notifier
from coldtrace.services.pipeline import Pipeline
from coldtrace.store import webhooks as store
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

ALLOWED_IP, FORBIDDEN_IP = "127.0.0.2", "127.0.0.1"


class StubDns:
    """``socket.getaddrinfo`` for tests: ``answers[name]`` is a list of answers used in turn (cycling)."""

    def __init__(self, real, answers: dict[str, list[list[str]]]) -> None:
        self.real = real
        self.answers = answers
        self.lookups: list[tuple[str, list[str]]] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - getaddrinfo's names
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            pass
        else:  # numeric: what connecting to a pinned address does; no lookup
            return self.real(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        if name not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: unknown to the test's DNS stub")
        table = self.answers[name]
        answer = table[sum(1 for n, _ in self.lookups if n == name) % len(table)]
        self.lookups.append((name, answer))
        p = int(port or 0)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (a, p, 0, 0) if ":" in a else (a, p)) for a in answer]


@pytest.fixture
def dns(monkeypatch):
    stub = StubDns(socket.getaddrinfo, {})
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    return stub


@pytest.fixture
def env(tmp_path):
    clock = ManualClock()
    db = Database(tmp_path / "ct.db")
    pipeline = Pipeline(db, SqliteReadingStore(db), clock)
    yield clock, db, pipeline
    db.close()


def _pair(secret: str, clock: ManualClock, tls: ssl.SSLContext | None = None
          ) -> tuple[WebhookReceiver, WebhookReceiver]:
    """A receiver on 127.0.0.2 and another on 127.0.0.1 with the same port (a rebinding keeps the port)."""
    now_s = lambda: clock.now_ms() // 1000  # noqa: E731
    for _ in range(20):
        allowed = WebhookReceiver([secret], now_s=now_s, host=ALLOWED_IP, tls=tls).start()
        try:
            forbidden = WebhookReceiver([secret], now_s=now_s, host=FORBIDDEN_IP, port=allowed.port, tls=tls).start()
        except OSError:  # that port is taken on 127.0.0.1: another pair
            allowed.stop()
            continue
        return allowed, forbidden
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def _alert(i: int, clock: ManualClock) -> Alert:
    return Alert(id=f"alert_ssrf_{i}", type="excursion.alarm", severity="critical", device_id="LOG-1",
                 ts=clock.now_ms(), data={"peak_c": 9.9})


def test_a_rebinding_name_is_resolved_once_and_the_checked_address_is_the_one_connected(env, dns):
    clock, db, pipeline = env
    secret = wh.generate_secret()
    allowed, forbidden = _pair(secret, clock)
    # answers alternate: the site's receiver, then the internal service, then the receiver again...
    dns.answers["hooks.rebind.test"] = [[ALLOWED_IP], [FORBIDDEN_IP]]
    notifier = Notifier(db, clock, allowed_private_targets=[f"{ALLOWED_IP}/32"], timeout_s=2)
    try:
        store.create_subscription(db, url=f"http://hooks.rebind.test:{allowed.port}/hook", secret=secret,
                                  now=clock.now_ms())
        pipeline.emit_now([_alert(1, clock)])
        notifier.run_once()
        assert len(dns.lookups) == 1  # one resolution per attempt: the check's answer is the connection's
        assert len(allowed.delivered()) == 1 and allowed.requests[0].signature_ok
        assert allowed.requests[0].host_header == f"hooks.rebind.test:{allowed.port}"

        pipeline.emit_now([_alert(2, clock)])
        notifier.run_once()  # the name now answers the internal service: refused, nothing sent
        assert dns.lookups[1] == ("hooks.rebind.test", [FORBIDDEN_IP]) and len(dns.lookups) == 2
        d = store.list_deliveries(db, event_id=wh.event_id_for("alert_ssrf_2"))[0]
        assert d["state"] == "pending" and d["last_error"].startswith("unsafe_target")
        assert "127.0.0.1" in d["last_error"] and "allowed_private_targets" in d["last_error"]

        dns.answers["hooks.rebind.test"] = [[ALLOWED_IP, FORBIDDEN_IP]]  # both at once: every one is judged
        clock.advance(60_000)
        notifier.run_once()
        assert store.get_delivery(db, d["id"])["last_error"].startswith("unsafe_target")
    finally:
        notifier.close()
        allowed.stop()
        forbidden.stop()
    assert forbidden.arrivals == 0  # the internal service never saw a byte
    assert len(allowed.requests) == 1


def test_https_keeps_the_name_for_sni_host_and_certificate_while_connecting_to_the_pinned_address(
        env, dns, tmp_path):
    clock, db, pipeline = env
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=hooks.tls.test", "-addext",
                    "subjectAltName=DNS:hooks.tls.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    secret = wh.generate_secret()
    allowed, forbidden = _pair(secret, clock, tls=server_ctx)
    dns.answers["hooks.tls.test"] = [[ALLOWED_IP], [FORBIDDEN_IP]]
    # a host-name entry: whatever internal address this exact name resolves to (never link-local/metadata)
    notifier = Notifier(db, clock, allowed_private_targets=["hooks.tls.test", f"{ALLOWED_IP}/32"], timeout_s=2,
                        verify=client_ctx)
    try:
        sub = store.create_subscription(db, url=f"https://hooks.tls.test:{allowed.port}/hook", secret=secret,
                                        now=clock.now_ms())
        r = notifier.ping(sub["id"])
        assert (r.outcome, r.status) == ("delivered", 204), r.error
        assert sni == ["hooks.tls.test"]  # SNI is the URL's name, not the address connected to
        assert allowed.requests[0].host_header == f"hooks.tls.test:{allowed.port}"
        assert allowed.requests[0].signature_ok
        # the certificate is still checked against the name: the same server by address fails verification
        by_ip = store.create_subscription(db, url=f"https://{ALLOWED_IP}:{allowed.port}/hook", secret=secret,
                                          now=clock.now_ms())
        r = notifier.ping(by_ip["id"])
        assert r.outcome == "failed" and r.status is None and "certificate" in r.error.lower()
    finally:
        notifier.close()
        allowed.stop()
        forbidden.stop()
    assert forbidden.arrivals == 0 and len(allowed.requests) == 1


def test_attempts_keep_the_status_line_never_the_body(env, dns):
    clock, db, pipeline = env
    secret = wh.generate_secret()
    receiver = WebhookReceiver([secret], now_s=lambda: clock.now_ms() // 1000, host=ALLOWED_IP).start()
    leak = b'{"AccessKeyId":"ASIA-TEST-KEY","SecretAccessKey":"do-not-leak-0123456789"}'
    receiver.response_body = leak
    notifier = Notifier(db, clock, allowed_private_targets=[ALLOWED_IP], timeout_s=2)
    try:
        store.create_subscription(db, url=receiver.url, secret=secret, now=clock.now_ms())
        receiver.mode = "error"
        pipeline.emit_now([_alert(1, clock)])
        notifier.run_once()
        receiver.mode = "ok"
        d = store.list_deliveries(db)[0]
        clock.set(d["next_attempt_at"])
        notifier.run_once()
    finally:
        notifier.close()
        receiver.stop()
    attempts = store.list_attempts(db, d["id"])
    assert [a["response"] for a in attempts] == ["HTTP/1.1 500 Internal Server Error", "HTTP/1.1 204 No Content"]
    stored = [tuple(r) for t in ("webhook_attempts", "webhook_deliveries") for r in db.query(f"SELECT * FROM {t}")]
    assert "do-not-leak" not in repr(stored) and "ASIA-TEST-KEY" not in repr(stored)


def test_the_migration_scrubs_bodies_kept_by_earlier_versions(tmp_path):
    db = Database(tmp_path / "old.db")
    with db.write() as c:
        c.execute("INSERT INTO webhook_subscriptions (id, url, secret, created_at, updated_at)"
                  " VALUES ('whsub_old', 'http://x.test/', 'whsec_x', 0, 0)")
        c.execute("INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, created_at)"
                  " VALUES ('whsub_old', 'msg_old', 'excursion.alarm', 0)")
        c.executemany("INSERT INTO webhook_attempts (delivery_id, attempt_no, started_at, status, response)"
                      " VALUES (1, ?, 0, ?, ?)", [(1, 200, '{"Token":"imds-secret"}'), (2, None, None)])
        c.execute("DELETE FROM schema_migrations WHERE name = '1300_webhook_attempt_status_line.sql'")
    db.close()
    db = Database(tmp_path / "old.db")  # opening applies the migration again, as on an upgraded install
    try:
        assert [r[0] for r in db.query("SELECT response FROM webhook_attempts ORDER BY attempt_no")] == \
            ["HTTP 200", None]
    finally:
        db.close()


def test_the_subscription_api_judges_the_url_with_the_allow_list(tmp_path, dns):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from coldtrace.services import auth
    from coldtrace.settings import load_settings
    from coldtrace.wiring import build_services

    clock = ManualClock()
    settings = load_settings(data_dir=tmp_path / "data",
                             webhooks={"allowed_private_targets": [f"{ALLOWED_IP}/32"]})
    services = build_services(settings, clock=clock)
    token = auth.create_token(services.db, role="admin", name="admin-t", now_ms=clock.now_ms())
    dns.answers["hooks.site.test"] = [[ALLOWED_IP]]
    dns.answers["metadata.site.test"] = [["169.254.169.254"]]
    with TestClient(create_app(settings, services=services)) as client:
        h = {"Authorization": f"Bearer {token}"}

        def create(url: str):
            return client.post("/api/v1/webhooks/subscriptions", headers=h, json={"url": url})

        assert create("http://hooks.site.test:9/hook").status_code == 201
        for url in ("http://127.0.0.1:9/hook", "http://[2002:7f00:1::1]/hook", "http://metadata.site.test/",
                    "http://[::ffff:169.254.169.254]/"):
            r = create(url)
            assert r.status_code == 400 and r.json()["error"]["code"] == "unsafe_target", (url, r.text)
    services.close()


@pytest.fixture
def connects(monkeypatch):
    """Every TCP connection the webhook sender opens (host as connected to: the pinned address)."""
    import httpcore

    seen: list[str] = []
    real = httpcore.SyncBackend.connect_tcp

    def recording(self, host, port, *args, **kwargs):
        seen.append(host)
        return real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", recording)
    return seen


def test_metadata_addresses_are_never_connected_even_through_an_allow_listed_name(env, dns, connects):
    """The allow-list names the host and every private range, yet once the name rebinds to the cloud metadata
    address (or a transition form of it) the attempt is refused before any connection is opened."""
    clock, db, pipeline = env
    secret = wh.generate_secret()
    receiver = WebhookReceiver([secret], now_s=lambda: clock.now_ms() // 1000, host=ALLOWED_IP).start()
    notifier = Notifier(db, clock, allowed_private_targets=["hooks.cloud.test", "0.0.0.0/0", "::/0"], timeout_s=2)
    try:
        store.create_subscription(db, url=f"http://hooks.cloud.test:{receiver.port}/hook", secret=secret,
                                  now=clock.now_ms())
        dns.answers["hooks.cloud.test"] = [[ALLOWED_IP]]
        pipeline.emit_now([_alert(0, clock)])
        notifier.run_once()
        assert connects == [ALLOWED_IP] and len(receiver.delivered()) == 1  # the listed name works
        for i, addr in enumerate(["169.254.169.254", "2002:a9fe:a9fe::1", "::ffff:169.254.169.254",
                                  "64:ff9b::a9fe:a9fe", "fd00:ec2::254"], start=1):
            dns.answers["hooks.cloud.test"] = [[addr]]
            pipeline.emit_now([_alert(i, clock)])
            notifier.run_once()
            d = store.list_deliveries(db, event_id=wh.event_id_for(f"alert_ssrf_{i}"))[0]
            assert d["state"] == "pending" and d["last_error"].startswith("unsafe_target"), d
            assert "never allowed" in d["last_error"], d["last_error"]
        assert connects == [ALLOWED_IP]  # not one connection towards any of them
    finally:
        notifier.close()
        receiver.stop()


def test_the_attempts_api_shows_the_status_line_never_the_body(tmp_path, dns):
    """What an admin reads through the API (deliveries/{id}/attempts and the delivery's detail): the receiver's
    status line; the body it answered with (here, what a metadata service would hand out) is nowhere."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from coldtrace.services import auth
    from coldtrace.settings import load_settings
    from coldtrace.wiring import build_services

    clock = ManualClock()
    settings = load_settings(data_dir=tmp_path / "data", webhooks={"allowed_private_targets": [f"{ALLOWED_IP}/32"]})
    services = build_services(settings, clock=clock)
    secret = wh.generate_secret()
    receiver = WebhookReceiver([secret], now_s=lambda: clock.now_ms() // 1000, host=ALLOWED_IP).start()
    receiver.response_body = b'{"AccessKeyId":"ASIA-TEST-KEY","SecretAccessKey":"do-not-leak-0123456789"}'
    notifier = Notifier(services.db, clock, allowed_private_targets=settings.webhooks.allowed_private_targets,
                        timeout_s=2)
    token = auth.create_token(services.db, role="admin", name="admin-t", now_ms=clock.now_ms())
    h = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(create_app(settings, services=services)) as client:
            r = client.post("/api/v1/webhooks/subscriptions", headers=h, json={"url": receiver.url})
            assert r.status_code == 201, r.text
            receiver.secrets = [r.json()["secret"]]
            receiver.mode = "error"
            services.pipeline.emit_now([_alert(1, clock)])
            notifier.run_once()
            receiver.mode = "ok"
            d = client.get("/api/v1/webhooks/deliveries", headers=h).json()[0]
            clock.set(d["next_attempt_at"])
            notifier.run_once()
            attempts = client.get(f"/api/v1/webhooks/deliveries/{d['id']}/attempts", headers=h)
            detail = client.get(f"/api/v1/webhooks/deliveries/{d['id']}", headers=h)
            listing = client.get("/api/v1/webhooks/deliveries", headers=h)
    finally:
        notifier.close()
        receiver.stop()
        services.close()
    assert [a["response"] for a in attempts.json()] == ["HTTP/1.1 500 Internal Server Error",
                                                       "HTTP/1.1 204 No Content"]
    assert [a["status"] for a in detail.json()["attempts_list"]] == [500, 204]
    for answer in (attempts, detail, listing):
        assert answer.status_code == 200
        assert b"do-not-leak" not in answer.content and b"ASIA-TEST-KEY" not in answer.content


def test_a_redirect_to_an_internal_address_is_not_followed(env, dns):
    """An allowed receiver answers 302 towards an internal service: the attempt fails with that status line;
    the internal service never sees a request (redirects are not followed, and any connection is pinned)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    clock, db, pipeline = env
    secret = wh.generate_secret()
    internal = WebhookReceiver([secret], now_s=lambda: clock.now_ms() // 1000, host=FORBIDDEN_IP).start()

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(302)
            self.send_header("Location", f"http://{FORBIDDEN_IP}:{internal.port}/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((ALLOWED_IP, 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    notifier = Notifier(db, clock, allowed_private_targets=[f"{ALLOWED_IP}/32"], timeout_s=2)
    try:
        store.create_subscription(db, url=f"http://{ALLOWED_IP}:{server.server_address[1]}/hook", secret=secret,
                                  now=clock.now_ms())
        pipeline.emit_now([_alert(1, clock)])
        notifier.run_once()
        d = store.list_deliveries(db)[0]
        assert d["state"] == "pending" and d["last_status"] == 302 and d["last_error"] == "HTTP 302"
        assert [a["response"] for a in store.list_attempts(db, d["id"])] == ["HTTP/1.0 302 Found"]
    finally:
        notifier.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
        internal.stop()
    assert internal.arrivals == 0

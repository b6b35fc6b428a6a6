"""A real HTTP webhook receiver on loopback that verifies every Standard Webhooks signature.

Its ``mode`` decides the answer: "ok" (204), "error" (500), "slow" (answers nothing for ``slow_s``, or until
the client hangs up),
"retry_after" (503 with Retry-After), "gone" (410); a message whose signature does not verify (or
whose timestamp is outside the tolerance) gets 401 instead of a success; ``stop()`` closes the port
(connection refused) and ``start()`` reopens the same port. Every request is kept; ``delivered`` counts
2xx answers per webhook-id.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from coldtrace.services import webhooks as wh


@dataclass
class Received:
    webhook_id: str
    timestamp: int
    body: bytes
    status: int
    signature_ok: bool
    arrived: float  # time.monotonic() when the request arrived (before any "slow" wait)
    arrived_wall: float = 0.0  # time.time() then: compare with webhook-timestamp
    host_header: str = ""


class WebhookReceiver:
    def __init__(self, secrets: list[str] | None = None, now_s: Callable[[], int] | None = None,
                 port: int = 0, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        """``host``: a loopback address to listen on (127.0.0.2 etc. for SSRF tests); ``tls``: a server
        context to answer https (its sni_callback sees the client's server name)."""
        self.secrets = list(secrets or [])
        self.now_s = now_s or (lambda: int(time.time()))
        self.mode = "ok"
        self.retry_after = "120"
        self.slow_s = 2.0
        self.requests: list[Received] = []
        self.arrivals = 0  # requests that reached the handler, answered or not yet
        self.in_progress = 0  # requests being handled now (a "slow" receiver holds them)
        self.max_in_progress = 0  # the most ever handled at once: the sender's concurrency towards us
        self.truncated = 0  # requests cut off by a dying sender (not counted as requests)
        self.bad_signatures: list[Received] = []
        self.lock = threading.Lock()
        self.on_receive: Callable[[Received], None] | None = None
        self.host = host
        self.tls = tls
        self.response_body = b""  # sent with every answer (what a nosy sender must not keep)
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()  # ends "slow" sleeps at stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self._port}/hook"

    def start(self) -> WebhookReceiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) != length:  # the sender died mid-request: nothing was delivered
                    with owner.lock:
                        owner.truncated += 1
                    self.close_connection = True
                    return
                owner._handle(self, body)

        self._release.clear()
        self._server = ThreadingHTTPServer((self.host, self._port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _verify(self, headers: dict[str, str], body: bytes, now_s: int | None = None) -> bool:
        if not self.secrets:
            return False
        now_s = self.now_s() if now_s is None else now_s
        try:
            for s in self.secrets:
                wh.verify(s, headers, body, now_s=now_s)
            return True
        except wh.SignatureError:
            return False

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        arrived, arrived_wall = time.monotonic(), time.time()
        with self.lock:
            self.in_progress += 1
            self.max_in_progress = max(self.max_in_progress, self.in_progress)
        try:
            self._answer(h, body, arrived, arrived_wall)
        finally:
            with self.lock:
                self.in_progress -= 1

    def _answer(self, h: BaseHTTPRequestHandler, body: bytes, arrived: float, arrived_wall: float) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        ok = self._verify(headers, body)  # at arrival, as a real receiver would
        mode = self.mode
        with self.lock:
            self.arrivals += 1
        status = {"ok": 204, "error": 500, "slow": 204, "retry_after": 503, "gone": 410}[mode]
        if mode == "slow":
            self._hold(h)
            status = 599  # the client has given up; this answer is never read as a success
        elif not ok and status < 300:
            status = 401  # as a real receiver does: an unverifiable (or stale) message is refused
        rec = Received(headers.get("webhook-id", ""), int(headers.get("webhook-timestamp", "0") or 0), body,
                       status, ok, arrived, arrived_wall, headers.get("host", ""))
        with self.lock:
            self.requests.append(rec)
            if not rec.signature_ok:
                self.bad_signatures.append(rec)
        if self.on_receive is not None and 200 <= status < 300:
            self.on_receive(rec)
        try:
            h.send_response(status)
            if mode == "retry_after":
                h.send_header("Retry-After", self.retry_after)
            h.send_header("Content-Length", str(len(self.response_body)))
            h.end_headers()
            h.wfile.write(self.response_body)
        except OSError:
            pass  # the client hung up (timeout): exactly what a slow receiver sees

    def _hold(self, h: BaseHTTPRequestHandler) -> None:
        """Answer nothing for ``slow_s`` (or until stop()), but notice when the client hangs up, as a real
        server does: ``in_progress`` then counts only the requests the sender is still waiting on."""
        deadline = time.monotonic() + self.slow_s
        while not self._release.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([h.connection], [], [], 0.02)
            if readable:
                try:
                    if not h.connection.recv(1, socket.MSG_PEEK):
                        return  # EOF: the client gave up (its timeout)
                except OSError:
                    return

    def delivered(self) -> Counter[str]:
        """2xx answers per webhook-id."""
        with self.lock:
            return Counter(r.webhook_id for r in self.requests if 200 <= r.status < 300)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

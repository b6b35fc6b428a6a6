"""Webhook delivery engine: outbox -> deliveries -> signed HTTP POSTs, with retries that survive restarts.

All of its state is in SQLite (outbox, webhook_deliveries, webhook_attempts), changed one transaction at a
time, so the process can be killed at any instant and restarted: an event is fanned out exactly once (the
fan-out transaction marks the outbox rows), a delivery becomes ``delivered`` only after a 2xx answer, and a
send in flight when the process died is simply sent again with the same webhook-id (receivers de-duplicate
on it; Standard Webhooks' at-least-once contract).

Time comes from a Clock so tests move it; ``run_once(now_ms)`` is one step, ``run_forever(stop)`` the loop.
The loop sleeps until the next due retry or until ``wake`` is set (the pipeline sets it after committing
alerts, a finished attempt sets it too), so a new alarm leaves within milliseconds rather than a poll interval.

Isolation: every subscription has its own lane (at most ``lane_concurrency`` attempts in flight), attempts
run on threads of their own and the loop never waits for one, so a receiver that hangs until the timeout
delays only its own deliveries. See docs/PROTOCOLS.md "Webhooks".

Several notifiers (processes or machines on one database) share the work: each claim leases its deliveries
to this notifier (``holder``) until the lease ends, so each attempt is made by one notifier; a notifier
killed mid-attempt lets its leases expire and another one makes the attempt again (docs/deployment.md).
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

from coldtrace.core.clock import Clock, to_iso
from coldtrace.services import webhooks as wh
from coldtrace.store import webhooks as store
from coldtrace.store.cluster import holder_id
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

STATUS_LINE_CAP = 120  # what is kept of an answer: its status line, never its body
USER_AGENT = "ColdTrace-Webhooks/1"


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the checked addresses, in order, whatever host the request names: the URL's host is
    still the TLS server name (SNI, certificate check) and the Host header, but it is never resolved again.
    ``abort()`` shuts the connection down from another thread (the attempt's overall deadline)."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self._addresses = addresses
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.aborted = False

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: object = None) -> httpcore.NetworkStream:
        last: Exception = httpcore.ConnectError(f"no checked address for {host}")
        for address in self._addresses:
            try:  # a numeric address: create_connection does no DNS lookup for it
                stream = super().connect_tcp(address.split("%", 1)[0], port, timeout, local_address,
                                             socket_options)  # type: ignore[arg-type]
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            with self._lock:
                self._sockets.append(stream.get_extra_info("socket"))
                if self.aborted:
                    self._shutdown()
            return stream
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: object = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks never use unix sockets")

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            self._shutdown()

    def _shutdown(self) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv/send; the request fails at once
            except OSError:
                pass


class PinnedTransport(httpx.HTTPTransport):
    """An httpx transport that connects only to a checked webhook target's addresses (no proxy from the
    environment, no keep-alive across attempts: the next attempt resolves and checks again)."""

    def __init__(self, target: wh.Target, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self.backend = _PinnedBackend(target.addresses)
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, max_connections=1,
                                             max_keepalive_connections=0, network_backend=self.backend)


class _DeadlineExceeded(Exception):
    """An attempt outlived its overall deadline and its connection was shut down."""


def status_line(r: httpx.Response) -> str:
    """``HTTP/1.1 503 Service Unavailable``: what the attempts API may show of a receiver's answer. The
    reason phrase is the receiver's text, so it is cut short and kept to printable ASCII."""
    reason = "".join(ch for ch in r.reason_phrase if " " <= ch <= "~")
    return f"{r.http_version} {r.status_code} {reason}".strip()[:STATUS_LINE_CAP]


@dataclass(slots=True)
class AttemptResult:
    delivery_id: int
    outcome: str  # delivered | retry | failed | gone
    status: int | None
    latency_ms: int
    error: str | None
    next_attempt_at: int | None


@dataclass(slots=True)
class RunStats:
    dispatched: int = 0
    attempted: int = 0
    delivered: int = 0


class Notifier:
    """The delivery engine. Each subscription is a *lane*: at most ``lane_concurrency`` attempts to it are in
    flight at once, each on a thread of its own, and a lane that is full is simply not given more work. So a
    receiver that never answers ties up only its own lane (its backlog waits, leased in the database), while
    every other subscription's deliveries are claimed and sent the moment they are due."""

    def __init__(self, db: Database, clock: Clock, *,
                 allowed_private_targets: Iterable[str] | wh.TargetPolicy = (),
                 allow_private_targets: bool = False,
                 timeout_s: float = wh.DELIVERY_TIMEOUT_S, wake: threading.Event | None = None,
                 rng: random.Random | None = None, resolver: wh.Resolver = wh.system_resolver,
                 lane_concurrency: int = 4, poll_interval_s: float = 0.5, batch: int = 200,
                 verify: ssl.SSLContext | bool = True, holder: str | None = None) -> None:
        """``allowed_private_targets``: the allow-list of internal targets (``webhooks.allowed_private_targets``).
        ``allow_private_targets=True`` is the replaced switch, kept for old callers: it now adds loopback
        only. ``verify``: the TLS trust (True: certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR; or an SSLContext).
        ``holder``: this notifier's name in delivery leases and attempts (default: role, host, pid, random)."""
        self.db = db
        self.clock = clock
        self.holder = holder or holder_id("notifier")
        policy = wh.TargetPolicy.parse(allowed_private_targets)
        if allow_private_targets:
            policy = wh.TargetPolicy(policy.networks + wh.LOOPBACK_ONLY.networks, policy.hosts)
        self.policy = policy
        self.timeout_s = timeout_s
        self.wake_event = wake if wake is not None else threading.Event()
        self.rng = rng or random.Random()
        self.resolver = resolver
        self.lane_concurrency = max(1, int(lane_concurrency))
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        # The lease must outlast one attempt (its deadline, 2 x timeout, + margin) so a slow attempt is not
        # sent twice by another notifier process; within this process a delivery being sent is never claimed.
        self.lease_ms = int((2 * timeout_s + 5.0) * 1000)
        # One TLS context (trust store loaded once; SSL_CERT_FILE/SSL_CERT_DIR honoured for a site CA); each
        # attempt gets its own pinned connection. Proxies from the environment are never used (PinnedTransport).
        self._ssl = httpx.create_ssl_context(verify=verify, trust_env=True)
        self._rng_lock = threading.Lock()
        self._cond = threading.Condition()
        self._in_flight: dict[str, int] = {}  # subscription id -> attempts running in its lane
        self._running: set[int] = set()  # delivery ids being sent now
        self._threads: set[threading.Thread] = set()
        self._completed = 0

    def wake(self) -> None:
        self.wake_event.set()

    def close(self) -> None:
        """Wait for the attempts in flight (each ends by its deadline, twice the timeout)."""
        deadline = time.monotonic() + 2 * self.timeout_s + 5.0
        with self._cond:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def in_flight(self) -> dict[str, int]:
        """Attempts running now, per subscription (a lane is full at ``lane_concurrency``)."""
        with self._cond:
            return dict(self._in_flight)

    # ---- dispatch: fan out, then fill every lane that has room ------------------------------------------
    def _dispatch(self, now: int, stats: RunStats | None) -> int:
        while True:
            n = store.fan_out(self.db, now, limit=self.batch)
            if stats is not None:
                stats.dispatched += n
            if n < self.batch:
                break
        with self._cond:
            busy, running = dict(self._in_flight), set(self._running)
        jobs = store.claim_due_lanes(self.db, now, self.lease_ms, self.lane_concurrency, busy, limit=self.batch,
                                     running=running, holder=self.holder)
        for job in jobs:
            self._start(job, stats)
        return len(jobs)

    def _start(self, job: store.Job, stats: RunStats | None) -> None:
        t = threading.Thread(target=self._lane_attempt, args=(job, stats), daemon=True,
                             name=f"webhook-{job.subscription_id}")
        with self._cond:
            self._in_flight[job.subscription_id] = self._in_flight.get(job.subscription_id, 0) + 1
            self._running.add(job.delivery_id)
            self._threads.add(t)
        t.start()

    def _lane_attempt(self, job: store.Job, stats: RunStats | None) -> None:
        try:
            r = self.attempt(job)
            if stats is not None:
                with self._cond:
                    stats.attempted += 1
                    stats.delivered += r.outcome == "delivered"
        except Exception:  # attempt() records its own failures; anything else: the lease expires, it is retried
            log.exception("delivery %s to %s failed unexpectedly", job.delivery_id, job.subscription_id)
        finally:
            with self._cond:
                left = self._in_flight.get(job.subscription_id, 1) - 1
                if left > 0:
                    self._in_flight[job.subscription_id] = left
                else:
                    self._in_flight.pop(job.subscription_id, None)
                self._running.discard(job.delivery_id)
                self._threads.discard(threading.current_thread())
                self._completed += 1
                self._cond.notify_all()
            self.wake_event.set()  # the lane has room again: the loop claims its next delivery now

    # ---- one step -------------------------------------------------------------------------------------
    def run_once(self, now_ms: int | None = None) -> RunStats:
        """Fan out the outbox, then attempt every delivery due at ``now_ms`` through the lanes, and return when
        none is left due and none is in flight (tests and the SIGKILL child drive the engine this way)."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        stats = RunStats()
        while True:
            with self._cond:
                seen = self._completed
            started = self._dispatch(now, stats)
            with self._cond:
                if started == 0 and not self._in_flight:
                    return stats
                while self._completed == seen and self._in_flight:
                    self._cond.wait()

    def run_forever(self, stop_event: threading.Event) -> None:
        """The loop: never waits for an attempt. It sleeps until woken (a new alert, an attempt finished, a
        redelivery) or until the next delivery of a lane with room is due."""
        log.info("webhook notifier started (%d attempts per subscription at most)", self.lane_concurrency)
        while not stop_event.is_set():
            self.wake_event.clear()  # cleared before the step: a wake during it is not lost
            try:
                self._dispatch(self.clock.now_ms(), None)
            except Exception:  # the loop owns recovery: log, wait, try again
                log.exception("notifier step failed")
            self.wake_event.wait(self._sleep_s())
        log.info("webhook notifier stopped")

    def _sleep_s(self) -> float:
        with self._cond:
            full = [sid for sid, n in self._in_flight.items() if n >= self.lane_concurrency]
        due = store.next_due(self.db, exclude=full)  # a full lane's backlog waits for a wake, not a poll
        if due is None:
            return self.poll_interval_s
        return min(self.poll_interval_s, max(0.0, (due - self.clock.now_ms()) / 1000))

    # ---- one attempt ----------------------------------------------------------------------------------
    def attempt(self, job: store.Job, trigger: str = "scheduled", retry: bool = True) -> AttemptResult:
        """Send one delivery once and record the attempt and its consequence in one transaction.

        The time is read from the clock here, per attempt: ``webhook-timestamp`` and the signature over it
        are made just before the request leaves, so a delivery that waited (in a lane, or for a retry)
        never arrives with a stale timestamp."""
        status: int | None = None
        error: str | None = None
        response: str | None = None
        retry_after: int | None = None
        body = job.payload.encode("utf-8")
        started = self.clock.now_ms()
        t0 = time.monotonic()
        try:
            target = wh.check_target(job.url, self.policy, self.resolver)  # resolved once, every address judged
            status, response, retry_after = self._post(target, job, body)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except wh.WebhookError as exc:
            error = f"{exc.code}: {exc}"
        except _DeadlineExceeded:
            error = f"timeout: no complete answer within {2 * self.timeout_s:g} s"
        except httpx.TimeoutException:
            error = f"timeout after {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = int((time.monotonic() - t0) * 1000)
        now = max(self.clock.now_ms(), started)
        next_at: int | None = None
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif status == 410:
            outcome = "gone"
        else:
            with self._rng_lock:
                delay = wh.next_attempt_delay(job.attempts + 1, self.rng, retry_after) if retry else None
            outcome = "failed" if delay is None else "retry"
            next_at = None if delay is None else now + delay
        store.record_attempt(self.db, job, started_at=started, status=status, latency_ms=latency, error=error,
                             response=response, outcome=outcome, next_attempt_at=next_at, trigger=trigger,
                             now=now, sent_by=self.holder)
        if outcome == "delivered":
            log.debug("delivered %s to %s (%d ms)", job.event_id, job.subscription_id, latency)
        elif outcome == "gone":
            log.warning("subscription %s answered 410 Gone: disabled", job.subscription_id)
        else:
            log.warning("delivery %s of %s to %s: %s (%s)", job.delivery_id, job.event_id, job.subscription_id,
                        error, outcome)
        return AttemptResult(job.delivery_id, outcome, status, latency, error, next_at)

    def _post(self, target: wh.Target, job: store.Job, body: bytes) -> tuple[int, str, int | None]:
        """POST to exactly the checked addresses; (status, status line, Retry-After ms). The answer's body is
        never read: it could be an internal service's data, and only the status matters. httpx's timeouts
        are per phase (a receiver sending its answer a byte at a time resets them), so the whole attempt also
        has a deadline of twice the timeout, after which its connection is shut down."""
        headers = wh.signed_headers(job.secrets, job.event_id, self.clock.now_ms() // 1000, body)
        headers["user-agent"] = USER_AGENT
        transport = PinnedTransport(target, self._ssl)
        deadline = threading.Timer(2 * self.timeout_s, transport.backend.abort)
        deadline.daemon = True
        deadline.start()
        try:
            with httpx.Client(transport=transport, timeout=self.timeout_s, follow_redirects=False,
                              trust_env=False) as client, \
                    client.stream("POST", target.url, content=body, headers=headers) as r:
                retry_after = None
                if not 200 <= r.status_code < 300:
                    retry_after = wh.parse_retry_after(r.headers.get("retry-after"), self.clock.now_ms())
                return r.status_code, status_line(r), retry_after
        except httpx.TransportError as exc:
            if transport.backend.aborted:
                raise _DeadlineExceeded from exc
            raise
        finally:
            deadline.cancel()

    def ping(self, subscription_id: str, now: int | None = None) -> AttemptResult:
        """Send a ``webhook.ping`` to one subscription at once (the API's test button); not retried."""
        now = self.clock.now_ms() if now is None else now
        store.get_subscription(self.db, subscription_id)
        event_id = "msg_ping_" + f"{now:x}{self.rng.getrandbits(32):08x}"
        body = wh.encode_body({"type": "webhook.ping", "timestamp": _iso(now),
                               "data": {"subscription_id": subscription_id}})
        with self.db.write() as c:
            store.insert_event(c, event_id, "webhook.ping", body, now, dispatched=True)
            did = store.add_delivery(c, subscription_id, event_id, "webhook.ping", now + self.lease_ms)
        return self.attempt(store.job_for(self.db, did, now), trigger="ping", retry=False)


def _iso(ms: int) -> str:
    return to_iso(ms) or ""

"""Webhook delivery engine: outbox -> deliveries -> signed HTTP POSTs, with retries that survive restarts.

All of its state is in SQLite (outbox, webhook_deliveries, webhook_attempts), changed one transaction at a
time, so the process can be killed at any instant and restarted: an event is fanned out exactly once (the
fan-out transaction marks the outbox rows), a delivery becomes ``delivered`` only after a 2xx answer, and a
send in flight when the process died is simply sent again with the same webhook-id (receivers de-duplicate
on it; Standard Webhooks' at-least-once contract).

Time comes from a Clock so tests move it; ``run_once(now_ms)`` is one step, ``run_forever(stop)`` the loop.
The loop sleeps until the next due retry or until ``wake`` is set (the pipeline sets it after committing
alerts), so a new alarm leaves within milliseconds rather than a poll interval.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from . import webhooks as wh
from .clock import Clock, to_iso
from .store import webhooks as store
from .store.db import Database

log = logging.getLogger(__name__)

RESPONSE_CAP = 512


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
    def __init__(self, db: Database, clock: Clock, *, allow_private_targets: bool = False,
                 timeout_s: float = wh.DELIVERY_TIMEOUT_S, wake: threading.Event | None = None,
                 rng: random.Random | None = None, resolver: wh.Resolver = wh.system_resolver,
                 workers: int = 8, poll_interval_s: float = 0.5, batch: int = 200,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.db = db
        self.clock = clock
        self.allow_private_targets = allow_private_targets
        self.timeout_s = timeout_s
        self.wake_event = wake if wake is not None else threading.Event()
        self.rng = rng or random.Random()
        self.resolver = resolver
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        # The lease must outlast one attempt (timeout + margin) so a slow attempt is not sent twice.
        self.lease_ms = int((timeout_s + 5.0) * 1000)
        # Redirects are not followed: a 3xx to an internal address would bypass the target check.
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport,
                                    headers={"user-agent": "ColdTrace-Webhooks/1"})
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="notifier")
        self._rng_lock = threading.Lock()

    def wake(self) -> None:
        self.wake_event.set()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    # ---- one step -------------------------------------------------------------------------------------
    def run_once(self, now_ms: int | None = None) -> RunStats:
        """Fan out the outbox, then attempt every delivery due at ``now_ms`` (in parallel, then wait)."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        stats = RunStats()
        while True:
            n = store.fan_out(self.db, now, limit=self.batch)
            stats.dispatched += n
            if n < self.batch:
                break
        while True:
            jobs = store.claim_due(self.db, now, self.lease_ms, limit=self.batch)
            if not jobs:
                break
            results = list(self._pool.map(lambda j: self.attempt(j, now), jobs))
            stats.attempted += len(results)
            stats.delivered += sum(r.outcome == "delivered" for r in results)
            if len(jobs) < self.batch:
                break
        return stats

    def run_forever(self, stop_event: threading.Event) -> None:
        log.info("webhook notifier started")
        while not stop_event.is_set():
            self.wake_event.clear()  # cleared before the step: a wake during it is not lost
            try:
                self.run_once(self.clock.now_ms())
            except Exception:  # the loop owns recovery: log, wait, try again
                log.exception("notifier step failed")
            self.wake_event.wait(self._sleep_s())
        log.info("webhook notifier stopped")

    def _sleep_s(self) -> float:
        due = store.next_due(self.db)
        if due is None:
            return self.poll_interval_s
        return min(self.poll_interval_s, max(0.0, (due - self.clock.now_ms()) / 1000))

    # ---- one attempt ----------------------------------------------------------------------------------
    def attempt(self, job: store.Job, now: int, trigger: str = "scheduled", retry: bool = True
                ) -> AttemptResult:
        """Send one delivery once and record the attempt and its consequence in one transaction."""
        status: int | None = None
        error: str | None = None
        response: str | None = None
        retry_after: int | None = None
        body = job.payload.encode("utf-8")
        t0 = time.monotonic()
        try:
            wh.check_target(job.url, self.allow_private_targets, self.resolver)
            headers = wh.signed_headers(job.secrets, job.event_id, now // 1000, body)
            r = self._client.post(job.url, content=body, headers=headers)
            status = r.status_code
            response = r.text[:RESPONSE_CAP]
            if not 200 <= status < 300:
                error = f"HTTP {status}"
                retry_after = wh.parse_retry_after(r.headers.get("retry-after"), now)
        except wh.WebhookError as exc:
            error = f"{exc.code}: {exc}"
        except httpx.TimeoutException:
            error = f"timeout after {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = int((time.monotonic() - t0) * 1000)
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
        store.record_attempt(self.db, job, started_at=now, status=status, latency_ms=latency, error=error,
                             response=response, outcome=outcome, next_attempt_at=next_at, trigger=trigger,
                             now=now)
        if outcome == "delivered":
            log.debug("delivered %s to %s (%d ms)", job.event_id, job.subscription_id, latency)
        elif outcome == "gone":
            log.warning("subscription %s answered 410 Gone: disabled", job.subscription_id)
        else:
            log.warning("delivery %s of %s to %s: %s (%s)", job.delivery_id, job.event_id, job.subscription_id,
                        error, outcome)
        return AttemptResult(job.delivery_id, outcome, status, latency, error, next_at)

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
        return self.attempt(store.job_for(self.db, did, now), now, trigger="ping", retry=False)


def _iso(ms: int) -> str:
    return to_iso(ms) or ""

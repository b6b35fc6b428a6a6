"""The webhook notifier process part: the delivery loop and the alert-lifecycle clock as threads.

The engine (fan-out, signed attempts, retries, leases) is ``coldtrace.services.delivery.Notifier`` so the API's test
ping can use it too; this module wires it to the running Services for ``coldtrace run`` / ``collector``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from coldtrace.core.clock import Clock
from coldtrace.services import alerts
from coldtrace.services.delivery import AttemptResult, Notifier, RunStats

log = logging.getLogger(__name__)

__all__ = ["AttemptResult", "Notifier", "NotifierWorker", "RunStats", "build_notifier"]


class NotifierWorker:
    """The notifier loop and the alert-lifecycle clock (escalation, self-resolution) as threads of a
    process; what ``collector.service`` and ``coldtrace run`` start."""

    def __init__(self, notifier: Notifier, tick: Callable[[int], object] | None, clock: Clock,
                 tick_interval_s: float, leader: Callable[[int], bool] | None = None) -> None:
        """``leader(now)``: whether this process runs the cluster's clock tick now (collector/service.py's
        lease); the alert-lifecycle tick runs only then. None: always (a process on its own)."""
        self.notifier = notifier
        self._leader = leader
        self._tick = tick
        self._clock = clock
        self._interval = tick_interval_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self.notifier.run_forever, args=(self._stop,),
                                          name="notifier", daemon=True)]
        if self._tick is not None:
            self._threads.append(threading.Thread(target=self._tick_loop, name="alert-lifecycle", daemon=True))
        for t in self._threads:
            t.start()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                now = self._clock.now_ms()
                if self._tick is not None and (self._leader is None or self._leader(now)):
                    self._tick(now)
                self.notifier.wake()  # escalations just written go out now
            except Exception:  # the loop owns recovery
                log.exception("alert lifecycle tick failed")

    def stop(self) -> None:
        self._stop.set()
        self.notifier.wake()
        for t in self._threads:
            t.join(10)
        self.notifier.close()


def build_notifier(services: Any, leader: Callable[[int], bool] | None = None) -> NotifierWorker:
    """Wire a notifier from the running Services: woken by the pipeline's alerts_emitted event. ``leader``:
    see NotifierWorker (the escalation and self-resolution clock runs once across the cluster)."""
    ws = services.settings.webhooks
    notifier = Notifier(services.db, services.clock, allowed_private_targets=ws.allowed_private_targets,
                        timeout_s=ws.timeout_s, lane_concurrency=ws.lane_concurrency,
                        wake=services.pipeline.alerts_emitted)
    policy = alerts.policy_from_settings(ws)
    return NotifierWorker(notifier, lambda now: alerts.tick(services.db, now, policy), services.clock,
                          services.settings.tick_interval_s, leader=leader)

"""Device health inside the pipeline's transactions: state persisted in ``device_health``.

The rules are in ``coldtrace.core.health`` (pure); this adapter only loads and saves ``DeviceHealth`` values and
keeps ``devices.online`` in step. Every method takes the caller's connection, so the state change and the
alerts it causes commit together. Nothing is cached in memory: a rolled-back transaction leaves no state
behind that would swallow the alert when the message is redelivered (a keyed SELECT costs microseconds).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson

from coldtrace.core import health
from coldtrace.core.health import DEFAULT_CONFIG, DeviceHealth, HealthConfig
from coldtrace.core.model import Alert
from coldtrace.store import devices as device_store
from coldtrace.store import health as health_store

log = logging.getLogger(__name__)

class HealthTracker:
    def __init__(self, config: HealthConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    @staticmethod
    def get(c: Any, device_id: str) -> DeviceHealth:
        state = health_store.state(c, device_id)
        return DeviceHealth.from_dict(json.loads(state)) if state is not None else DeviceHealth(device_id)

    @staticmethod
    def _save(c: Any, h: DeviceHealth, now: int) -> None:
        health_store.save(c, h.device_id, json.dumps(h.to_dict()), now)

    def on_readings(self, c: Any, device_id: str, ts: Sequence[int], temps: Sequence[float],
                    battery_pct: float | None, now: int) -> list[Alert]:
        h = self.get(c, device_id)
        was_offline = h.offline
        alerts = health.observe_readings(h, ts, temps, now_ms=now, battery_pct=battery_pct, config=self.config)
        if was_offline and not h.offline:
            device_store.set_online(c, [device_id], True)
        self._save(c, h, now)
        return alerts

    def on_flush(self, c: Any,
                 items: Sequence[tuple[str, Sequence[int], Sequence[float], float | None]],
                 out_of_range: dict[str, int], now: int, bench: Collection[str] = ()) -> list[Alert]:
        """One ingest flush: (device, ts, temps, battery) per device with valid readings, and the number of
        out-of-range rejections per device. One SELECT and one executemany for the lot.

        ``bench``: devices on a calibration bench, whose ramps are intended: no rate-of-change fault for them
        (their other health rules still apply)."""
        devs = list(dict.fromkeys([i[0] for i in items] + list(out_of_range)))
        if not devs:
            return []
        states = {dev: DeviceHealth.from_dict(orjson.loads(state))
                  for dev, state in health_store.states(c, devs).items()}
        alerts: list[Alert] = []
        back_online = []
        for dev, ts, temps, battery in items:
            h = states.setdefault(dev, DeviceHealth(dev))
            was_offline = h.offline
            new = health.observe_readings(h, ts, temps, now_ms=now, battery_pct=battery, config=self.config)
            if dev in bench:
                new = [a for a in new if a.data.get("kind") != "jump"]
            alerts.extend(new)
            if was_offline and not h.offline:
                back_online.append(dev)
        for dev, n in out_of_range.items():  # after the message's valid readings (see health.py)
            h = states.setdefault(dev, DeviceHealth(dev))
            alerts.extend(health.observe_rejections(h, n, now_ms=now, config=self.config))
        if back_online:
            device_store.set_online(c, back_online, True)
        health_store.save_many(c, [(d, orjson.dumps(states[d].to_dict()).decode(), now) for d in devs])
        return alerts

    def on_rejections(self, c: Any, device_id: str, out_of_range: int, now: int) -> list[Alert]:
        h = self.get(c, device_id)
        alerts = health.observe_rejections(h, out_of_range, now_ms=now, config=self.config)
        self._save(c, h, now)
        return alerts

    def tick(self, c: Any, now: int, offline_after: Callable[[str | None], int]) -> list[Alert]:
        """Deadman check of every monitored device (marked monitored, or on a shipment in transit)."""
        alerts: list[Alert] = []
        for dev, profile_id, last_seen, state in health_store.monitored(c):
            h = DeviceHealth.from_dict(json.loads(state)) if state else DeviceHealth(dev)
            if h.offline:
                continue
            if h.last_seen_ms is None:  # seen before health was tracked: the devices table knows when
                h.last_seen_ms = last_seen
            new = health.tick(h, now, offline_after_ms=offline_after(profile_id))
            if new:
                device_store.set_online(c, [dev], False)
                self._save(c, h, now)
                alerts.extend(new)
        return alerts

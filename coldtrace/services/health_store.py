"""Device health inside the pipeline's transactions: state persisted in ``device_health``.

The rules are in ``coldtrace.core.health`` (pure); this adapter only loads and saves ``DeviceHealth`` values and
keeps ``devices.online`` in step. Every method takes the caller's connection, so the state change and the
alerts it causes commit together. Nothing is cached in memory: a rolled-back transaction leaves no state
behind that would swallow the alert when the message is redelivered (a keyed SELECT costs microseconds).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence

import orjson

from coldtrace.core import health
from coldtrace.core.health import DEFAULT_CONFIG, DeviceHealth, HealthConfig
from coldtrace.core.model import Alert

log = logging.getLogger(__name__)

MONITORED_SQL = (
    "SELECT d.id, d.profile_id, d.last_seen_at, h.state FROM devices d"
    " LEFT JOIN device_health h ON h.device_id = d.id"
    " WHERE d.last_seen_at IS NOT NULL AND (d.monitored = 1 OR EXISTS ("
    " SELECT 1 FROM shipment_loggers l JOIN shipments s ON s.id = l.shipment_id"
    " WHERE l.device_id = d.id AND s.state = 'in_transit'))"
)


class HealthTracker:
    def __init__(self, config: HealthConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    @staticmethod
    def get(c: sqlite3.Connection, device_id: str) -> DeviceHealth:
        row = c.execute("SELECT state FROM device_health WHERE device_id = ?", (device_id,)).fetchone()
        return DeviceHealth.from_dict(json.loads(row[0])) if row else DeviceHealth(device_id)

    @staticmethod
    def _save(c: sqlite3.Connection, h: DeviceHealth, now: int) -> None:
        c.execute("INSERT INTO device_health (device_id, state, updated_at) VALUES (?,?,?) ON CONFLICT(device_id)"
                  " DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                  (h.device_id, json.dumps(h.to_dict()), now))

    def on_readings(self, c: sqlite3.Connection, device_id: str, ts: Sequence[int], temps: Sequence[float],
                    battery_pct: float | None, now: int) -> list[Alert]:
        h = self.get(c, device_id)
        was_offline = h.offline
        alerts = health.observe_readings(h, ts, temps, now_ms=now, battery_pct=battery_pct, config=self.config)
        if was_offline and not h.offline:
            c.execute("UPDATE devices SET online = 1 WHERE id = ?", (device_id,))
        self._save(c, h, now)
        return alerts

    def on_flush(self, c: sqlite3.Connection,
                 items: Sequence[tuple[str, Sequence[int], Sequence[float], float | None]],
                 out_of_range: dict[str, int], now: int, bench: Collection[str] = ()) -> list[Alert]:
        """One ingest flush: (device, ts, temps, battery) per device with valid readings, and the number of
        out-of-range rejections per device. One SELECT and one executemany for the lot.

        ``bench``: devices on a calibration bench, whose ramps are intended: no rate-of-change fault for them
        (their other health rules still apply)."""
        devs = list(dict.fromkeys([i[0] for i in items] + list(out_of_range)))
        if not devs:
            return []
        states: dict[str, DeviceHealth] = {}
        for k in range(0, len(devs), 500):
            chunk = devs[k:k + 500]
            marks = ",".join("?" * len(chunk))
            for dev, state in c.execute(f"SELECT device_id, state FROM device_health WHERE device_id IN ({marks})",
                                        chunk):
                states[dev] = DeviceHealth.from_dict(orjson.loads(state))
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
                back_online.append((dev,))
        for dev, n in out_of_range.items():  # after the message's valid readings (see health.py)
            h = states.setdefault(dev, DeviceHealth(dev))
            alerts.extend(health.observe_rejections(h, n, now_ms=now, config=self.config))
        if back_online:
            c.executemany("UPDATE devices SET online = 1 WHERE id = ?", back_online)
        c.executemany("INSERT INTO device_health (device_id, state, updated_at) VALUES (?,?,?)"
                      " ON CONFLICT(device_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                      [(d, orjson.dumps(states[d].to_dict()).decode(), now) for d in devs])
        return alerts

    def on_rejections(self, c: sqlite3.Connection, device_id: str, out_of_range: int, now: int) -> list[Alert]:
        h = self.get(c, device_id)
        alerts = health.observe_rejections(h, out_of_range, now_ms=now, config=self.config)
        self._save(c, h, now)
        return alerts

    def tick(self, c: sqlite3.Connection, now: int, offline_after: Callable[[str | None], int]) -> list[Alert]:
        """Deadman check of every monitored device (marked monitored, or on a shipment in transit)."""
        alerts: list[Alert] = []
        for dev, profile_id, last_seen, state in c.execute(MONITORED_SQL).fetchall():
            h = DeviceHealth.from_dict(json.loads(state)) if state else DeviceHealth(dev)
            if h.offline:
                continue
            if h.last_seen_ms is None:  # seen before health was tracked: the devices table knows when
                h.last_seen_ms = last_seen
            new = health.tick(h, now, offline_after_ms=offline_after(profile_id))
            if new:
                c.execute("UPDATE devices SET online = 0 WHERE id = ?", (dev,))
                self._save(c, h, now)
                alerts.extend(new)
        return alerts

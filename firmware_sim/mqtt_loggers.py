"""Simulated data loggers publishing over MQTT like real ones: native v1 payloads, seq numbers, batch uploads,
offline buffering, a birth message and a last will on the status topic, battery drain.

Scenarios: "normal", "failing-cooler", "door-openings", "flaky-network", "low-battery", "probe-fault" (the
probe loses contact for 10 min and reads -40 °C), "mixed" (a fleet of the first five). "normal" and
"door-openings" (a fridge opened three times an hour, back in minutes) are normal operation and must raise no
alarm; the cooler that fails for 2 h, the network down for 45 min, the weak battery and the probe that loses
contact must each raise one (bench/alarm_flood.py runs them all for a simulated day). The recent past
(``history_ms``) is uploaded as buffered batches at start, so a fresh demo shows real excursions at once; then
each logger streams live at ``interval_ms``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.core.clock import Clock, SystemClock, to_iso
from coldtrace.core.model import HOUR, MINUTE
from coldtrace.settings import parse_mqtt_url

from .thermal import CoolerFailure, ThermalModel

log = logging.getLogger(__name__)

SCENARIOS = ("normal", "failing-cooler", "door-openings", "flaky-network", "low-battery", "probe-fault", "mixed")
QUIET_SCENARIOS = ("normal", "door-openings")  # normal operation: an alarm from these is a false alarm
FAULTY_SCENARIOS = ("failing-cooler", "flaky-network", "low-battery", "probe-fault")
PROBE_FAULT_MS = 10 * MINUTE
FLAKY_OUTAGE_MS = 45 * MINUTE  # longer than the profiles' offline_after (30 min): the deadman must see it


@dataclass
class SimLogger:
    device_id: str
    model: ThermalModel
    interval_ms: int
    battery_pct: float = 95.0
    battery_drain_per_reading: float = 0.001
    offline_windows: tuple[tuple[int, int], ...] = ()  # (start, end) ms when the network is down
    seq: int = 0
    last_sent_ts: int | None = None

    def online_at(self, t_ms: int) -> bool:
        return not any(a <= t_ms < b for a, b in self.offline_windows)

    def readings_until(self, now_ms: int, start_ms: int) -> list[dict]:
        t = start_ms if self.last_sent_ts is None else self.last_sent_ts + self.interval_ms
        t -= t % self.interval_ms
        if self.last_sent_ts is not None and t <= self.last_sent_ts:
            t += self.interval_ms
        out = []
        while t <= now_ms:
            out.append({"ts": to_iso(t), "temp_c": self.model.temperature(t)})
            t += self.interval_ms
        return out

    def due_messages(self, now_ms: int, start_ms: int, batch_max: int = 500) -> list[tuple[bytes, int]]:
        """The messages this logger sends at ``now_ms`` with their number of readings: nothing while its
        network is down (it buffers), else everything not yet sent, at most ``batch_max`` readings each."""
        if not self.online_at(now_ms):
            return []
        pending = self.readings_until(now_ms, start_ms)
        if pending:
            self.last_sent_ts = int(_parse_ms(pending[-1]["ts"]))
        chunks = [pending[i:i + batch_max] for i in range(0, len(pending), batch_max)]
        return [(self.message(c), len(c)) for c in chunks]

    def message(self, readings: list[dict]) -> bytes:
        self.seq += 1
        self.battery_pct = max(0.0, self.battery_pct - self.battery_drain_per_reading * len(readings))
        return json.dumps({"v": 1, "device_id": self.device_id, "seq": self.seq,
                           "battery_pct": round(self.battery_pct, 1), "readings": readings}).encode()


def build_fleet(n: int, scenario: str, now_ms: int, history_ms: int, interval_ms: int,
                prefix: str = "LOG", outage_at_ms: int | None = None) -> list[SimLogger]:
    """``n`` loggers whose data starts at ``now_ms - history_ms``. ``outage_at_ms``: when the flaky network
    goes down (default 2 min after now, so a live demo shows the logger going offline and coming back)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    start = now_ms - history_ms
    fleet = []
    for i in range(n):
        kind = scenario if scenario != "mixed" else ("failing-cooler", "door-openings", "flaky-network",
                                                      "low-battery", "normal", "normal")[i % 6]
        model = ThermalModel(setpoint_c=5.0 + (i % 3) * 0.3, seed=i + 1)
        lg = SimLogger(f"{prefix}-{i + 1:04d}", model, interval_ms)
        if kind == "failing-cooler":
            # the cooler fails in the recent past for 2 h: the load warms past 8 °C for well over 30 min
            model.failures.append(CoolerFailure(start + history_ms // 4, 2 * HOUR))
        elif kind == "door-openings":
            model.door_openings_per_hour = 3
        elif kind == "flaky-network":
            down = now_ms + 2 * MINUTE if outage_at_ms is None else outage_at_ms
            lg.offline_windows = ((down, down + FLAKY_OUTAGE_MS),)  # buffers, then uploads
        elif kind == "probe-fault":  # a third of the way in (a demo: 3 min after start), for 10 min
            at = start + history_ms // 3 if history_ms else now_ms + 3 * MINUTE
            model.probe_faults.append((at, at + PROBE_FAULT_MS))
        elif kind == "low-battery":
            lg.battery_pct = 22.0
            lg.battery_drain_per_reading = 0.01
        fleet.append(lg)
    return fleet


class LoggerFleet:
    """Publishes a fleet's readings over MQTT (QoS 1) in a thread. ``start()``/``stop()``."""

    def __init__(self, mqtt_url: str, fleet: list[SimLogger], *, history_ms: int, clock: Clock | None = None,
                 tick_s: float = 1.0, batch_max: int = 500, client_id: str = "coldtrace-sim",
                 username: str | None = None, password: str | None = None) -> None:
        self.host, self.port, tls = parse_mqtt_url(mqtt_url)
        self.fleet = fleet
        self.clock = clock or SystemClock()
        self.history_ms = history_ms
        self.tick_s = tick_s
        self.batch_max = batch_max
        self.published_readings = 0
        self.start_ms = self.clock.now_ms() - history_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        if tls:
            self.client.tls_set()
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(100)

    def _status_topic(self, dev: str) -> str:
        return f"coldtrace/v1/devices/{dev}/status"

    def start(self) -> None:
        self.client.connect(self.host, self.port, 30)
        self.client.loop_start()
        for lg in self.fleet:
            self.client.publish(self._status_topic(lg.device_id), json.dumps({"online": True, "fw": "sim-1.0"}),
                                qos=1, retain=True)
        self._thread = threading.Thread(target=self._run, name="sim-fleet", daemon=True)
        self._thread.start()

    def step(self, now_ms: int) -> int:
        """Publish everything due up to now_ms (buffered while a logger is offline). Returns readings sent."""
        sent = 0
        for lg in self.fleet:
            for msg, n in lg.due_messages(now_ms, self.start_ms, self.batch_max):  # none while offline
                info = self.client.publish(f"coldtrace/v1/devices/{lg.device_id}/readings", msg, qos=1)
                info.wait_for_publish(30)
                sent += n
        self.published_readings += sent
        return sent

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.step(self.clock.now_ms())
                if n:
                    log.debug("simulator published %d readings", n)
            except (RuntimeError, ValueError, OSError) as exc:
                log.warning("simulator could not publish (%s); retrying", exc)
            self._stop.wait(self.tick_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        # "offline" for each logger, if the connection is still there: a stop that comes while the
        # simulator connects (Ctrl-C during start-up) must stop cleanly, not fail on a publish
        for lg in self.fleet if self.client.is_connected() else ():
            try:
                self.client.publish(self._status_topic(lg.device_id), json.dumps({"online": False}), qos=1,
                                    retain=True).wait_for_publish(5)
            except (RuntimeError, ValueError) as exc:  # the connection went while stopping
                log.warning("simulator stopped without marking the loggers offline: %s", exc)
                break
        self.client.disconnect()
        self.client.loop_stop()


def _parse_ms(iso: str) -> int:
    from coldtrace.core.clock import parse_time

    return parse_time(iso)


def run_fleet_forever(mqtt_url: str, n: int, scenario: str, interval_s: float, history_h: float,
                      username: str | None = None, password: str | None = None) -> None:
    """`coldtrace sim`: run until interrupted."""
    now = SystemClock().now_ms()
    history_ms = int(history_h * HOUR)
    fleet = build_fleet(n, scenario, now, history_ms, max(1000, int(interval_s * 1000)))
    sim = LoggerFleet(mqtt_url, fleet, history_ms=history_ms, username=username, password=password)
    sim.start()
    log.info("simulating %d loggers (%s) against %s; Ctrl-C to stop", n, scenario, mqtt_url)
    try:
        while True:
            time.sleep(1)
    finally:
        sim.stop()


__all__ = ["SCENARIOS", "SimLogger", "LoggerFleet", "build_fleet", "run_fleet_forever", "MINUTE"]

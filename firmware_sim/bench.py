"""Simulated calibration bench: a bath stepping through set points, a reference thermometer, loggers under test.

The bath relaxes exponentially to each set point (time constant ``tau_bath``) and holds it long enough for
ColdTrace to see the reference settle (10 min stable), then capture. Each logger sees the bath through its
own first-order lag, adds an offset, an optional linear drift (°C per hour, the "bad" logger), noise, and
rounds to its resolution. The reference adds only a little noise.

The bench's devices are registered with their roles (``register_bench_devices``: the reference a calibration
reference, the loggers devices under calibration), so ColdTrace judges them by the calibration rules and
never by a shipment profile: a bath ramp from 22 to -20 °C is the point of a bench, not an excursion.

Time is simulated: ``bench_series`` generates timestamps, nothing waits. ``run_bench`` publishes the whole
bench over MQTT as native v1 payloads (PROTOCOLS.md) with timestamps ending at "now" (a bench replayed in
seconds), which is what ``coldtrace sim --scenario bench`` runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.core.clock import SystemClock
from coldtrace.core.errors import TransportError
from coldtrace.core.model import MINUTE
from coldtrace.services.device_roles import CALIBRATION_REFERENCE, DEVICE_UNDER_CALIBRATION, set_role
from coldtrace.settings import parse_mqtt_url
from coldtrace.store import devices as device_store

log = logging.getLogger(__name__)

SECOND = 1000


@dataclass(frozen=True, slots=True)
class BenchLogger:
    device_id: str
    offset_c: float = 0.0
    drift_c_per_h: float = 0.0
    noise_c: float = 0.012
    resolution_c: float = 0.01
    tau_s: float = 20.0
    make: str = "Coldchain Instruments"
    model: str = "CI-T20 USB logger"
    serial_number: str = ""  # "" -> derived from the device id


@dataclass(frozen=True, slots=True)
class BenchSpec:
    set_points: tuple[float, ...] = (-20.0, 5.0, 25.0)
    hold_ms: int = 50 * MINUTE  # per set point: settle, 10 min stable window, capture, margin
    ambient_c: float = 22.0
    tau_bath_s: float = 90.0
    bath_noise_c: float = 0.004
    reference_id: str = "BENCH-REF-1"
    reference_noise_c: float = 0.003
    reference_resolution_c: float = 0.001
    reference_U_c: float = 0.03
    reference_interval_ms: int = 5 * SECOND
    logger_interval_ms: int = 30 * SECOND
    loggers: tuple[BenchLogger, ...] = field(default_factory=lambda: (
        BenchLogger("BENCH-LOG-1", offset_c=0.08),
        BenchLogger("BENCH-LOG-2", offset_c=-0.12),
        BenchLogger("BENCH-LOG-3", offset_c=0.15, drift_c_per_h=0.25),  # drifts out during the session
    ))
    seed: int = 7
    # the reference's calibration record, so that a bench certificate states its traceability in full
    reference_make: str = "Fluke"
    reference_model: str = "1524 with 5615 PRT"
    reference_serial: str = "B79432"
    reference_certificate: str = "UKAS 0001/2026/17"
    reference_lab: str = "UKAS calibration laboratory 0001 (simulated)"
    reference_traceability: str = ("Reference PRT calibrated by comparison at fixed points of ITS-90; traceable to "
                                   "the national temperature standards of NPL (UK) through UKAS laboratory 0001")
    reference_interval_days: float = 365.0
    ambient_rh_pct: float = 45.0

    def registrations(self, now_ms: int) -> dict[str, dict]:
        """Calibration records of the bench's devices (the fields of PUT /api/v1/calibration/devices/{id}):
        the reference with its certificate, issuing lab, traceability and U; each logger's make, model and
        serial number. The reference was calibrated 60 days ago."""
        out = {self.reference_id: {
            "last_calibrated_at": now_ms - 60 * 86_400_000, "interval_days": self.reference_interval_days,
            "certificate_ref": self.reference_certificate, "calibrated_by": self.reference_lab,
            "traceability": self.reference_traceability, "expanded_uncertainty_c": self.reference_U_c,
            "resolution_c": self.reference_resolution_c, "make": self.reference_make,
            "model": self.reference_model, "serial_number": self.reference_serial}}
        for lg in self.loggers:
            out[lg.device_id] = {"make": lg.make, "model": lg.model, "resolution_c": lg.resolution_c,
                                 "serial_number": lg.serial_number or f"SN-{lg.device_id.split('-')[-1]:0>6}"}
        return out

    @property
    def duration_ms(self) -> int:
        return self.hold_ms * len(self.set_points)

    @property
    def drifting(self) -> list[str]:
        return [lg.device_id for lg in self.loggers if lg.drift_c_per_h]


def bath_profile(spec: BenchSpec, start_ms: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bath temperature every second: exponential approach to each set point plus a little controller noise."""
    t = start_ms + np.arange(0, spec.duration_ms + 1, SECOND, dtype=np.int64)
    temp = np.empty(t.size)
    prev = spec.ambient_c
    per = spec.hold_ms // SECOND
    for k, sp in enumerate(spec.set_points):
        seg = np.arange(per + (1 if k == len(spec.set_points) - 1 else 0), dtype=np.float64)
        a, b = k * per, k * per + seg.size
        temp[a:b] = sp + (prev - sp) * np.exp(-seg / spec.tau_bath_s)
        prev = float(temp[b - 1])
    # slow controller wander: smoothed noise, so the bath is still but not perfectly flat
    wander = np.convolve(rng.normal(0, spec.bath_noise_c * 4, t.size), np.ones(30) / 30, mode="same")
    return t, temp + wander


def _lag(temp: np.ndarray, tau_s: float) -> np.ndarray:
    """First-order sensor lag at 1 s steps (exact discretisation)."""
    a = 1.0 - np.exp(-1.0 / tau_s)
    out = np.empty_like(temp)
    y = temp[0]
    for i, v in enumerate(temp):
        y += a * (v - y)
        out[i] = y
    return out


def bench_series(spec: BenchSpec, start_ms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every device's readings: {device_id: (ts ms, temp °C)}. Deterministic for a given spec and start."""
    rng = np.random.default_rng(spec.seed)
    t, bath = bath_profile(spec, start_ms, rng)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    step = spec.reference_interval_ms // SECOND
    rt = t[::step]
    rc = bath[::step] + rng.normal(0, spec.reference_noise_c, rt.size)
    out[spec.reference_id] = (rt, np.round(rc / spec.reference_resolution_c) * spec.reference_resolution_c)
    step = spec.logger_interval_ms // SECOND
    for lg in spec.loggers:
        sensed = _lag(bath, lg.tau_s)[::step]
        lt = t[::step]
        hours = (lt - start_ms) / 3_600_000
        v = sensed + lg.offset_c + lg.drift_c_per_h * hours + rng.normal(0, lg.noise_c, lt.size)
        out[lg.device_id] = (lt, np.round(np.round(v / lg.resolution_c) * lg.resolution_c, 6))
    return out


def native_payloads(device_id: str, ts: np.ndarray, temp: np.ndarray, *, batch: int = 120,
                    first_seq: int = 1) -> list[bytes]:
    """The device's readings as native v1 messages of at most ``batch`` readings each."""
    msgs = []
    for k, i in enumerate(range(0, ts.size, batch)):
        body = {"v": 1, "device_id": device_id, "seq": first_seq + k, "battery_pct": 100,
                "readings": [{"ts": int(a), "temp_c": round(float(b), 4)}
                             for a, b in zip(ts[i:i + batch], temp[i:i + batch], strict=True)]}
        msgs.append(json.dumps(body, separators=(",", ":")).encode())
    return msgs


def bench_devices(spec: BenchSpec) -> dict[str, tuple[str, str]]:
    """The bench's devices: {device_id: (kind, role)}."""
    out = {spec.reference_id: ("reference", CALIBRATION_REFERENCE)}
    out.update((lg.device_id, ("logger", DEVICE_UNDER_CALIBRATION)) for lg in spec.loggers)
    return out


def register_bench_devices(db, spec: BenchSpec, now_ms: int, *, actor: str = "simulator") -> None:
    """Register the bench's devices (a ``coldtrace.store.db.Database``) with their roles, unmonitored by the
    deadman: a bench runs for a few hours and then falls silent; its session judges missing data."""
    with db.write() as c:
        for dev, (kind, role) in bench_devices(spec).items():
            device_store.register_unmonitored(c, dev, kind, "simulated bench " + kind, now_ms)
            set_role(c, dev, role, actor=actor, now=now_ms, reason="simulated calibration bench")


@dataclass(frozen=True, slots=True)
class BenchRun:
    spec: BenchSpec
    start_ms: int
    end_ms: int
    readings: dict[str, int]  # device id -> readings published
    messages: int

    def session_request(self, mpe_c: float = 0.5) -> dict:
        """A session body for POST /api/v1/calibration/sessions matching this bench."""
        return {"reference_id": self.spec.reference_id, "set_points": list(self.spec.set_points),
                "duts": [{"device_id": lg.device_id, "resolution_c": lg.resolution_c} for lg in self.spec.loggers],
                "mpe_c": mpe_c, "u_ref_c": self.spec.reference_U_c, "start_ms": self.start_ms,
                "ambient_c": self.spec.ambient_c, "ambient_rh_pct": self.spec.ambient_rh_pct}


def run_bench(mqtt_url: str, *, spec: BenchSpec | None = None, start_ms: int | None = None,
              client_id: str = "coldtrace-bench-sim", timeout_s: float = 30.0) -> BenchRun:
    """Publish a whole bench run over MQTT (QoS 1) and return what was sent.

    ``start_ms`` None: the run ends now (all timestamps in the past, so none is refused as "future").
    Messages are sent in time order across devices, as a live bench would deliver them.
    """
    spec = spec or BenchSpec()
    if start_ms is None:
        start_ms = SystemClock().now_ms() - spec.duration_ms - MINUTE
    series = bench_series(spec, start_ms)
    host, port, tls = parse_mqtt_url(mqtt_url)
    queue: list[tuple[int, str, bytes]] = []
    for dev, (ts, temp) in series.items():
        batch = 120 if dev == spec.reference_id else 20
        for k, msg in enumerate(native_payloads(dev, ts, temp, batch=batch)):
            queue.append((int(ts[min(k * batch + batch - 1, ts.size - 1)]), dev, msg))
    queue.sort(key=lambda x: x[0])
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
    if tls:
        client.tls_set()
    try:
        client.connect(host, port, 30)
    except OSError as exc:
        raise TransportError(f"bench simulator cannot reach the broker {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        infos = [client.publish(f"coldtrace/v1/devices/{dev}/readings", msg, qos=1) for _, dev, msg in queue]
        for info in infos:
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise TransportError("bench simulator: broker did not acknowledge a message in time")
    finally:
        client.disconnect()
        client.loop_stop()
    counts = {dev: int(ts.size) for dev, (ts, _) in series.items()}
    log.info("bench: published %d readings of %d devices in %d messages (%s .. %s)", sum(counts.values()),
             len(counts), len(queue), start_ms, start_ms + spec.duration_ms)
    return BenchRun(spec, start_ms, start_ms + spec.duration_ms, counts, len(queue))


def main(mqtt_url: str, argv: list[str] | None = None) -> int:
    """`coldtrace sim --scenario bench`: publish one bench run (ending now) and print the session to create."""
    run = run_bench(mqtt_url)
    devices = ", ".join(f"{d} ({n})" for d, n in run.readings.items())
    print(f"Bench published over {mqtt_url}: {run.messages} messages, readings per device: {devices}.")
    print(f"Logger(s) drifting on purpose: {', '.join(run.spec.drifting)}.")
    print("Record the devices' calibration data (QA role) with PUT /api/v1/calibration/devices/{id}:")
    print(json.dumps(run.spec.registrations(SystemClock().now_ms()), indent=2))
    print("So that no shipment profile judges the bath's ramps, a bench's devices carry their roles (set before"
          " the next run, admin role; a running session does the same for its devices while it runs):"
          " PUT /api/v1/devices/{id}/role with")
    for dev, (_, role) in bench_devices(run.spec).items():
        print(f"  {dev}: {{\"role\": \"{role}\"}}")
    print("Create the session (QA role) with POST /api/v1/calibration/sessions and this body:")
    print(json.dumps(run.session_request(), indent=2))
    return 0

"""The collector process: MQTT source, clock tick (device health, escalations) and the webhook notifier.

Several collectors may run on one database (docs/deployment.md): they share the MQTT subscription, their
notifiers lease deliveries, and the clock tick runs in one of them at a time, the holder of the
``clock-tick`` lease (coldtrace/store/cluster.py), renewed every tick and taken over by another collector
once it has expired (``LEADER_TTL_TICKS`` ticks after the leader's last renewal)."""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from pathlib import Path

from coldtrace.core.errors import ColdTraceError, ConfigError
from coldtrace.services import audit_anchor, shipments
from coldtrace.services.calibration_service import for_services
from coldtrace.store.cluster import LeaderLease, holder_id
from coldtrace.wiring import Services

from .mqtt import MqttCollector
from .notifier import build_notifier

log = logging.getLogger(__name__)

SHIPMENT_TICK_S = 60.0  # re-evaluating every shipment in transit is heavier than the health checks
LEADER_TTL_TICKS = 3  # the clock-tick lease lasts this many ticks: a stopped leader is replaced after it


class CollectorService:
    def __init__(self, services: Services, *, with_notifier: bool = True, source=None) -> None:
        """``source``: what feeds the pipeline instead of an MQTT subscription (the embedded broker's
        ``InboxDrainer``); it has the collector's start/stop/wait_connected."""
        self.services = services
        s = services.settings
        self.mqtt = source if source is not None else MqttCollector(
            services.pipeline, s.mqtt, batch_max_messages=s.ingest.batch_max_messages,
            batch_max_wait_ms=s.ingest.batch_max_wait_ms, worker_settings=s if s.ingest.worker_process else None,
            batch_max_bytes=s.ingest.batch_max_bytes)
        self.broker_guard = None
        if s.mqtt.watch_broker_sys and source is None:  # the broker's $SYS counters: broker.messages_dropped
            from coldtrace.services.data_loss import BrokerGuard

            guard = BrokerGuard(f"{self.mqtt.host}:{self.mqtt.port}", services.db, services.pipeline.emit_now,
                                services.clock)
            self.mqtt.side_channels.update(dict.fromkeys(guard.filters, guard.on_message))
            self.broker_guard = guard
        self._stop = threading.Event()
        self._tick_thread: threading.Thread | None = None
        self.leader = LeaderLease(services.db, holder_id("collector"),
                                  ttl_ms=int(LEADER_TTL_TICKS * s.tick_interval_s * 1000))
        self.ticks_led = 0  # clock ticks this process ran as the leader
        self.notifier = None
        if with_notifier:
            self.notifier = build_notifier(services, leader=self.leader.held)
        self.serial = None
        if s.serial_config is not None:
            from .serial_source import SerialSource

            self.serial = SerialSource(services.pipeline, load_instruments(s.serial_config), clock=services.clock)

    def start(self, connect_timeout: float | None = None) -> None:
        if self.serial is not None:
            self.serial.start()
            log.info("reading %d serial instrument(s) from %s", len(self.serial.status()),
                     self.services.settings.serial_config)
        self.mqtt.start(connect_timeout=connect_timeout)
        self._tick_thread = threading.Thread(target=self._tick_loop, name="collector-tick", daemon=True)
        self._tick_thread.start()
        if self.notifier is not None:
            self.notifier.start()

    def _tick_loop(self) -> None:
        interval = self.services.settings.tick_interval_s
        last_shipments = 0.0
        leading = False
        while not self._stop.wait(interval):
            try:
                now_leading = self.leader.hold(self.services.clock.now_ms())
            except ColdTraceError as exc:
                log.error("clock-tick lease not renewed (%s): skipping this tick", exc)
                now_leading = False
            if self.broker_guard is not None:  # every collector: is the broker's dropped counter seen?
                self.broker_guard.check_available(self.mqtt.wait_connected(0) is True)
            if now_leading != leading:
                leading = now_leading
                if leading:
                    log.info("this collector (%s) runs the clock tick now (lease term %s)", self.leader.holder,
                             self.leader.term)
                else:
                    log.info("another collector runs the clock tick now")
            if leading:
                self.ticks_led += 1
                last_shipments = self._tick(last_shipments)

    def _tick(self, last_shipments: float) -> float:
        """One clock tick (the leader's): shipments (every SHIPMENT_TICK_S), device health and alert
        self-resolution, calibration, audit anchoring. Returns when the shipments were last ticked."""
        if time.monotonic() - last_shipments >= SHIPMENT_TICK_S:
            last_shipments = time.monotonic()
            try:  # shipments in transit: excursions on their series, lot stability budgets
                p = self.services.pipeline
                shipments.tick(self.services.db, self.services.readings, self.services.clock.now_ms(), p.emit)
            except ColdTraceError as exc:
                log.error("shipment tick failed: %s", exc)
        try:
            self.services.pipeline.tick(self.services.clock.now_ms())
        except ColdTraceError as exc:
            log.error("clock tick failed: %s", exc)
        try:  # calibration sessions follow the stored readings; calibration.due by the clock
            for_services(self.services).tick(self.services.clock.now_ms())
        except ColdTraceError as exc:
            log.error("calibration tick failed: %s", exc)
        try:  # signed audit head to the head file; failed sign-ins of unknown users summarised
            audit_anchor.tick(self.services)
        except (ColdTraceError, OSError) as exc:
            log.error("audit tick failed: %s", exc)
        return last_shipments

    def stop(self) -> None:
        self._stop.set()
        if self.serial is not None:
            self.serial.stop()
        if self.notifier is not None:
            self.notifier.stop()
        self.mqtt.stop()
        if self._tick_thread:
            self._tick_thread.join(5)
        try:  # a clean stop hands the clock tick on at once instead of after the lease's expiry
            self.leader.release()
        except ColdTraceError as exc:
            log.warning("could not release the clock-tick lease (%s); it expires by itself", exc)


def load_instruments(path: Path) -> list[dict]:
    """The [[instruments]] of a TOML file (gateway.toml format); relative ports are relative to the file."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"serial config {path}: {exc}") from exc
    instruments = doc.get("instruments")
    if not isinstance(instruments, list) or not instruments:
        raise ConfigError(f"serial config {path}: no [[instruments]]")
    return instruments

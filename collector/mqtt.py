"""MQTT source: paho-mqtt 2, QoS 1, fixed client id, persistent session, acknowledgement after commit.

Messages are collected in paho's network thread and committed in batches through the Pipeline in one
transaction, right there when a batch is full (no hand-off between threads, which cost a fifth of the
throughput), or by a small flusher thread once the oldest has waited ``batch_max_wait_ms``. Only then are
the PUBACKs sent. A crash before the commit means the broker redelivers (the session is persistent); a
redelivery after the commit changes nothing (idempotent).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from itertools import chain, repeat

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from coldtrace.core.errors import ColdTraceError, TransportError
from coldtrace.core.payload import valid_device_id
from coldtrace.services.pipeline import Pipeline
from coldtrace.settings import MqttSettings, Settings, parse_mqtt_url

from .ingest import ingest_messages, topic_device
from .ingest_worker import WorkerIngest

log = logging.getLogger(__name__)

READINGS_FILTER = "coldtrace/v1/devices/+/readings"
STATUS_FILTER = "coldtrace/v1/devices/+/status"
IDLE_FLUSH_S = 0.005
BATCH_MAX_BYTES = 512 * 1024  # ~13,000 readings of the native format: ~30 ms of the ingest child's work
_PUBACK_HEAD = 0x4002  # PUBACK, remaining length 2 (then the packet id)


class LeanProperties(Properties):
    """paho's Properties for received packets, without its cost per message.

    paho decodes every MQTT 5 PUBLISH into a fresh ``Properties``, whose constructor builds three tables
    (names, types, per-property rules) and whose ``unpack`` first deletes all 27 possible attributes one by
    one: a third of paho's network thread in the collector (bench/profile_ingest.py network), and why an
    MQTT 5 subscriber drained at half the speed of a 3.1.1 one. The tables never change, so they are shared;
    a packet without properties (property length 0, the common case) is answered at once; anything else is
    decoded by paho's own code. Same class to every caller (a subclass), same attributes, same errors."""

    _shared: dict | None = None

    def __init__(self, packetType):  # noqa: N803 - paho's signature
        shared = LeanProperties._shared
        if shared is None:
            template = Properties(packetType)
            shared = LeanProperties._shared = {"types": template.types, "names": template.names,
                                               "properties": template.properties}
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", shared["types"])
        object.__setattr__(self, "names", shared["names"])
        object.__setattr__(self, "properties", shared["properties"])

    def unpack(self, buffer):
        if buffer[:1] == b"\x00" and len(self.__dict__) == 4:  # no properties, nothing set yet
            return self, 1
        return super().unpack(buffer)


if _packet.Properties is Properties:  # received packets only: what this process sends is built by paho as is
    _packet.Properties = LeanProperties


@dataclass(slots=True)
class _Msg:
    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttCollector:
    """Subscribes to readings and status topics and feeds the Pipeline. ``start()``/``stop()``."""

    def __init__(self, pipeline: Pipeline, settings: MqttSettings, *, batch_max_messages: int = 2000,
                 batch_max_wait_ms: int = 20, worker_settings: Settings | None = None,
                 batch_max_bytes: int = BATCH_MAX_BYTES) -> None:
        """``worker_settings``: decode/store/evaluate in a child process built from these settings
        (collector/ingest_worker.py); None: in this process, through ``pipeline``. ``batch_max_bytes``: a
        batch is handed on once its payloads reach this size, whatever its age and count (the work of a
        batch is its readings: this keeps a transaction, and so the wait of an alarm behind it, short when
        large messages arrive in a burst)."""
        if not settings.url:
            raise TransportError("no MQTT broker URL configured")
        self.host, self.port, self.tls = parse_mqtt_url(settings.url)
        self.settings = settings
        self.pipeline = pipeline
        # the broker stops sending once its window of unacknowledged messages is full: commit at half of it
        window = settings.receive_maximum if settings.protocol == "5" else settings.broker_inflight_v311
        self.batch_max = max(1, min(batch_max_messages, window // 2))
        self.batch_wait = batch_max_wait_ms / 1000
        self.batch_max_bytes = max(1, batch_max_bytes)
        self._pending_bytes = 0
        self._last_at = 0.0
        self._pending: list[_Msg] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one commit at a time, so batches commit in arrival order
        self._first_at = 0.0
        self._retry_at = 0.0
        self._delay = 0.5
        self._stop = threading.Event()
        self._wake = threading.Event()  # the child answered: the flusher hands on what is pending
        self._connected = threading.Event()
        self._flusher_thread: threading.Thread | None = None
        self.processed = 0
        self.worker = None if worker_settings is None else WorkerIngest(worker_settings, self._committed_by_child,
                                                                        self._poison_from_child)
        v5 = settings.protocol == "5"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if settings.username:
            pw = settings.password.get_secret_value() if settings.password else None
            self.client.username_pw_set(settings.username, pw)
        if self.tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(max(20, settings.receive_maximum))
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        # side channels (not acknowledged-after-commit): topic filters -> handler(topic, payload) in paho's
        # network thread; the broker's $SYS counters (coldtrace/services/data_loss.py BrokerGuard)
        self.side_channels: dict[str, object] = {}
        self.client.on_subscribe = self._on_subscribe

    # ---- paho callbacks (network thread) --------------------------------------------------------------
    def _filters(self) -> list[str]:
        g = self.settings.shared_group
        extra = [f for src in self.pipeline.topic_sources for f in src.filters]  # e.g. LoRaWAN uplinks
        return [f"$share/{g}/{f}" if g else f for f in (READINGS_FILTER, STATUS_FILTER, *extra)] + list(
            self.side_channels)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        log.info("connected to MQTT broker %s:%s (session present: %s)", self.host, self.port,
                 flags.session_present)
        client.subscribe([(f, 1) for f in self._filters()])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._connected.set()  # connected and subscribed: a message published from now on reaches us

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from MQTT broker %s:%s (%s); paho reconnects with back-off",
                        self.host, self.port, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        """Network thread: collect, and hand a due batch on (committed right here in-process, or sent down
        the pipe to the ingest child). With the child, a batch is due also whenever the child has nothing in
        hand: it never waits for a batch to fill or age while messages wait here, whatever the broker's real
        window (Mosquitto's max_inflight_messages may be below our Receive Maximum), and batches grow by
        themselves to what arrives while the child commits the previous one."""
        side = self.side_channels.get(msg.topic) if msg.topic.startswith("$") else None
        if side is not None:
            side(msg.topic, msg.payload)  # type: ignore[operator]
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        m = _Msg(msg.topic, msg.payload, msg.mid, msg.qos)
        with self._pending_lock:
            now = self._last_at = time.monotonic()
            if not self._pending:
                self._first_at = now
            self._pending.append(m)
            self._pending_bytes += len(m.payload)
            due = (len(self._pending) >= self.batch_max or self._pending_bytes >= self.batch_max_bytes
                   or now - self._first_at >= self.batch_wait)
        if due or (self.worker is not None and self.worker.idle()):  # never leave the child waiting
            self._flush()

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self, connect_timeout: float | None = None) -> None:
        """Start the ingest child (if any), connect (retrying with back-off, saying so), start paho's loop."""
        if self.worker is not None:
            self.worker.start()
        self._flusher_thread = threading.Thread(target=self._flusher, name="collector-flusher", daemon=True)
        self._flusher_thread.start()
        delay = 1.0
        deadline = None if connect_timeout is None else time.monotonic() + connect_timeout
        while not self._stop.is_set():
            try:
                self._connect()
                break
            except (OSError, ColdTraceError) as exc:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise TransportError(f"MQTT broker {self.host}:{self.port} unreachable: {exc}") from exc
                log.warning("MQTT broker %s:%s unreachable (%s); retrying in %.0f s", self.host, self.port,
                            exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        self.client.loop_start()

    def _connect(self) -> None:
        if self.settings.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry_s
            props.ReceiveMaximum = self.settings.receive_maximum
            self.client.connect(self.host, self.port, self.settings.keepalive_s, clean_start=False,
                                properties=props)
        else:
            self.client.connect(self.host, self.port, self.settings.keepalive_s)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._flusher_thread:
            self._flusher_thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()
        if self.worker is not None:
            self.worker.stop()

    # ---- committing -----------------------------------------------------------------------------------
    def _flusher(self) -> None:
        """Commits what is pending once nothing has arrived for a moment, and retries a failed commit.

        While messages flow, the network thread commits them itself (a full batch, or the oldest has waited
        ``batch_max_wait_ms``): a commit here would then compete with paho for the GIL, and sqlite3 gives up
        the GIL at every statement. So this thread only acts when the network thread is idle (the broker's
        window may be smaller than we think: it must never wait for a full batch), or when the ingest child
        has just answered and has nothing in hand."""
        while not self._stop.is_set():
            self._wake.wait(IDLE_FLUSH_S)  # woken at once when the child answers
            self._wake.clear()
            child_idle = self.worker is not None and self.worker.idle()
            with self._pending_lock:
                now = time.monotonic()
                idle = now - self._last_at >= IDLE_FLUSH_S
                due = bool(self._pending) and (idle or child_idle)
            if due or self._retry_at:
                if self._retry_at and time.monotonic() < self._retry_at:
                    continue
                self._flush()

    def _flush(self) -> None:
        """Commit the pending messages through the pipeline, then acknowledge them (in arrival order)."""
        with self._commit_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                self._pending_bytes = 0
            if not batch:
                return
            if self.worker is not None:  # acknowledged by _committed once the child has committed it
                self.worker.submit(batch, [(m.topic, m.payload) for m in batch])
                return
            try:
                self.process(batch)
            except ColdTraceError as exc:
                self._delay = min(self._delay * 2, 30.0) if self._retry_at else 0.5
                log.error("could not commit %d messages (%s); not acknowledged, retrying in %.1f s",
                          len(batch), exc, self._delay)
                with self._pending_lock:  # keep them first in line; the broker holds back the rest
                    self._pending[:0] = batch
                    self._pending_bytes = sum(len(m.payload) for m in self._pending)
                    self._first_at = time.monotonic()
                self._retry_at = time.monotonic() + self._delay
                return
            self._retry_at = 0.0
            self._committed(batch, 0)

    def _committed_by_child(self, batch: list[_Msg], alerts: int) -> None:
        """The child committed a batch: its acknowledgements go out at once (one write for the batch, so the
        broker refills its window without waiting for the next message or an idle moment), and the flusher
        is woken to hand the child what has gathered meanwhile."""
        self._committed(batch, alerts)
        self._wake.set()

    def _poison_from_child(self, item: tuple[str, bytes], detail: str) -> None:
        topic, payload = item
        dev, _ = topic_device(topic)
        self.pipeline.quarantine(source="mqtt", reason="internal_error", detail=detail, raw=payload, topic=topic,
                                 device_id=dev if dev and valid_device_id(dev) else None)

    def _committed(self, batch: list[_Msg], alerts: int) -> None:
        """Acknowledge a committed batch: its PUBACKs (4 bytes each, MQTT 3.1.1 and 5 alike: reason code 0
        and no properties may be left out) go out as one write, instead of one queued packet, one wake-up of
        paho's loop and one send() per message (``client.ack``)."""
        mids = [m.mid for m in batch if m.qos == 1]
        if len(mids) == len(batch) and hasattr(self.client, "_packet_queue"):
            if mids:
                acks = array("H", chain.from_iterable(zip(repeat(_PUBACK_HEAD), mids)))
                if sys.byteorder == "little":
                    acks.byteswap()  # network byte order
                self.client._packet_queue(mqtt.PUBACK, acks.tobytes(), 0, 0)
        else:  # QoS 0 or 2 among them (not subscribed so, but never assume): paho's own ack, one by one
            ack = self.client.ack
            for m in batch:
                if m.qos > 0:
                    ack(m.mid, m.qos)
        self.processed += len(batch)
        if alerts:
            self.pipeline.alerts_emitted.set()  # wakes the notifier of this process

    def process(self, batch: list[_Msg]) -> None:
        ingest_messages(self.pipeline, [(m.topic, m.payload) for m in batch])

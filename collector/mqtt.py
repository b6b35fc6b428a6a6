"""MQTT source: paho-mqtt 2, QoS 1, fixed client id, persistent session, acknowledgement after commit.

Messages are collected in paho's network thread and committed in batches through the Pipeline in one
transaction, right there when a batch is full (no hand-off between threads, which cost a fifth of the
throughput), or by a small flusher thread once the oldest has waited ``batch_max_wait_ms``. Only then are
the PUBACKs sent. A crash before the commit means the broker redelivers (the session is persistent); a
redelivery after the commit changes nothing (idempotent).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from coldtrace.errors import ColdTraceError, TransportError
from coldtrace.payload import valid_device_id
from coldtrace.pipeline import Pipeline, RawMessage
from coldtrace.settings import MqttSettings, parse_mqtt_url

log = logging.getLogger(__name__)

TOPIC_PREFIX = "coldtrace/v1/devices/"
READINGS_FILTER = "coldtrace/v1/devices/+/readings"
STATUS_FILTER = "coldtrace/v1/devices/+/status"
IDLE_FLUSH_S = 0.005


def topic_device(topic: str) -> tuple[str | None, str | None]:
    """coldtrace/v1/devices/{id}/{kind} -> (id, kind); (None, None) when the topic is not ours."""
    if not topic.startswith(TOPIC_PREFIX):
        return None, None
    dev, sep, kind = topic[len(TOPIC_PREFIX):].partition("/")
    if not sep or "/" in kind:
        return None, None
    return dev, kind


@dataclass(slots=True)
class _Msg:
    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttCollector:
    """Subscribes to readings and status topics and feeds the Pipeline. ``start()``/``stop()``."""

    def __init__(self, pipeline: Pipeline, settings: MqttSettings, *, batch_max_messages: int = 2000,
                 batch_max_wait_ms: int = 20) -> None:
        if not settings.url:
            raise TransportError("no MQTT broker URL configured")
        self.host, self.port, self.tls = parse_mqtt_url(settings.url)
        self.settings = settings
        self.pipeline = pipeline
        # the broker stops sending once its window of unacknowledged messages is full: commit at half of it
        window = settings.receive_maximum if settings.protocol == "5" else settings.broker_inflight_v311
        self.batch_max = max(1, min(batch_max_messages, window // 2))
        self.batch_wait = batch_max_wait_ms / 1000
        self._last_at = 0.0
        self._pending: list[_Msg] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # one commit at a time, so batches commit in arrival order
        self._first_at = 0.0
        self._retry_at = 0.0
        self._delay = 0.5
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._worker: threading.Thread | None = None
        self.processed = 0
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

    # ---- paho callbacks (network thread) --------------------------------------------------------------
    def _filters(self) -> list[str]:
        g = self.settings.shared_group
        return [f"$share/{g}/{f}" if g else f for f in (READINGS_FILTER, STATUS_FILTER)]

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        log.info("connected to MQTT broker %s:%s (session present: %s)", self.host, self.port,
                 flags.session_present)
        client.subscribe([(f, 1) for f in self._filters()])
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from MQTT broker %s:%s (%s); paho reconnects with back-off",
                        self.host, self.port, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        """Network thread: collect; a full batch is committed and acknowledged right here (no hand-off)."""
        m = _Msg(msg.topic, msg.payload, msg.mid, msg.qos)
        with self._pending_lock:
            now = self._last_at = time.monotonic()
            if not self._pending:
                self._first_at = now
            self._pending.append(m)
            due = len(self._pending) >= self.batch_max or now - self._first_at >= self.batch_wait
        if due:
            self._flush()

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self, connect_timeout: float | None = None) -> None:
        """Connect (retrying with back-off, saying so) and start the network and worker threads."""
        self._worker = threading.Thread(target=self._flusher, name="collector-flusher", daemon=True)
        self._worker.start()
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
        if self._worker:
            self._worker.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    # ---- committing -----------------------------------------------------------------------------------
    def _flusher(self) -> None:
        """Commits what is pending once nothing has arrived for a moment, and retries a failed commit.

        While messages flow, the network thread commits them itself (a full batch, or the oldest has waited
        ``batch_max_wait_ms``): a commit here would then compete with paho for the GIL, and sqlite3 gives up
        the GIL at every statement. So this thread only acts when the network thread is idle (the broker's
        window may be smaller than we think: it must never wait for a full batch)."""
        while not self._stop.wait(IDLE_FLUSH_S):
            with self._pending_lock:
                now = time.monotonic()
                due = bool(self._pending) and now - self._last_at >= IDLE_FLUSH_S
            if due or self._retry_at:
                if self._retry_at and time.monotonic() < self._retry_at:
                    continue
                self._flush()

    def _flush(self) -> None:
        """Commit the pending messages through the pipeline, then acknowledge them (in arrival order)."""
        with self._commit_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self.process(batch)
            except ColdTraceError as exc:
                self._delay = min(self._delay * 2, 30.0) if self._retry_at else 0.5
                log.error("could not commit %d messages (%s); not acknowledged, retrying in %.1f s",
                          len(batch), exc, self._delay)
                with self._pending_lock:  # keep them first in line; the broker holds back the rest
                    self._pending[:0] = batch
                    self._first_at = time.monotonic()
                self._retry_at = time.monotonic() + self._delay
                return
            self._retry_at = 0.0
            ack = self.client.ack
            for m in batch:
                if m.qos > 0:
                    ack(m.mid, m.qos)
            self.processed += len(batch)

    def process(self, batch: list[_Msg]) -> None:
        raws: list[RawMessage] = []
        for m in batch:
            dev, kind = topic_device(m.topic)
            if kind == "status" and dev:
                self._status(dev, m.payload)
                continue
            if kind != "readings" or not dev or not valid_device_id(dev):
                self.pipeline.quarantine(source="mqtt", reason="schema", topic=m.topic, raw=m.payload,
                                         detail=f"topic {m.topic[:200]!r} is not coldtrace/v1/devices/{{id}}/readings")
                continue
            raws.append(RawMessage(m.payload, "mqtt", dev, None, m.topic))
        if raws:
            self.pipeline.ingest_raw_many(raws)

    def _status(self, dev: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
            online = doc.get("online") if isinstance(doc, dict) else None
        except ValueError:
            log.warning("status message of %s is not JSON; ignored", dev)
            return
        self.pipeline.record_status(dev, online if isinstance(online, bool) else None, payload.decode(
            "utf-8", "replace"))

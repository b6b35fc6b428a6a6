"""MQTT source: paho-mqtt 2, QoS 1, fixed client id, persistent session, acknowledgement after commit.

paho's network thread only queues messages; one worker thread takes them in batches, commits each batch
through the Pipeline in one transaction and only then sends the PUBACKs. A crash before the commit means the
broker redelivers (the session is persistent); a redelivery after the commit changes nothing (idempotent).
"""

from __future__ import annotations

import json
import logging
import queue
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
        self.batch_max = batch_max_messages
        self.batch_wait = batch_max_wait_ms / 1000
        self._queue: queue.Queue[_Msg] = queue.Queue()
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
        self._queue.put(_Msg(msg.topic, msg.payload, msg.mid, msg.qos))

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self, connect_timeout: float | None = None) -> None:
        """Connect (retrying with back-off, saying so) and start the network and worker threads."""
        self._worker = threading.Thread(target=self._work, name="collector-worker", daemon=True)
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

    # ---- worker ---------------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Msg]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_wait
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.001)
        return batch

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            delay = 0.5
            while not self._stop.is_set():
                try:
                    self.process(batch)
                    break
                except ColdTraceError as exc:
                    log.error("could not commit %d messages (%s); not acknowledged, retrying in %.1f s",
                              len(batch), exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
            else:
                return  # stopping: unacknowledged messages will be redelivered
            for m in batch:
                if m.qos > 0:
                    self.client.ack(m.mid, m.qos)
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

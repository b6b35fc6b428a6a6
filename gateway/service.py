"""The edge gateway: serial instruments -> durable spool -> MQTT (QoS 1), nothing lost while the broker is away.

Readers (one thread per port) put native-JSON messages into the spool (PROTOCOLS.md, one message per at
most ``max_batch_readings`` readings, ``seq`` per device from the spool). One publisher thread owns the MQTT
connection and its reconnection with back-off (the service loop, not the adapter): it publishes the oldest
spooled messages with QoS 1, a window of ``inflight`` at a time, and deletes a message only when its PUBACK
arrives. After a lost connection it starts again from the oldest message still spooled, so a message whose
PUBACK was lost is sent twice; the store is idempotent on (device, ts), so it is stored once.

The gateway's own status (online, spool depth and policy, ports) is retained on
``coldtrace/v1/devices/{gateway_id}/status``, with a last will ``{"online": false}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from coldtrace.adapters.serial_readers import ReaderGroup, build_reader
from coldtrace.core.clock import Clock, SystemClock, to_iso
from coldtrace.core.errors import ColdTraceError
from coldtrace.core.model import Batch, Reading

from .config import GatewayConfig, load_config
from .spool import Spool, SqliteSpool

log = logging.getLogger(__name__)

_BAD_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def readings_topic(device_id: str) -> str:
    """A device id that is not topic-safe is escaped; the collector then quarantines it as device_mismatch."""
    return f"coldtrace/v1/devices/{_BAD_TOPIC_CHARS.sub('_', device_id)[:64] or '_'}/readings"


def status_topic(gateway_id: str) -> str:
    return f"coldtrace/v1/devices/{gateway_id}/status"


def encode_batch(device_id: str, seq: int, readings: Sequence[Reading], sent_at_ms: int, gateway_id: str) -> bytes:
    """The native payload of PROTOCOLS.md (epoch-ms timestamps keep messages small)."""
    doc = {"v": 1, "device_id": device_id, "seq": seq, "sent_at": to_iso(sent_at_ms), "gateway_id": gateway_id,
           "source": "serial", "readings": [{"ts": r.ts, "temp_c": r.temp_c} for r in readings]}
    return json.dumps(doc, separators=(",", ":")).encode()


class _Connection:
    """What one MQTT connection knows: CONNACK state, and which spool entries await a PUBACK."""

    def __init__(self) -> None:
        self.connected = False
        self.refused: str | None = None
        self.lost = False
        self.inflight: dict[int, int] = {}  # mid -> spool entry id
        self.acked: list[int] = []
        self.cursor = 0  # highest spool id published on this connection
        self.failed_puback = False


class Gateway:
    def __init__(self, cfg: GatewayConfig, *, clock: Clock | None = None, spool: Spool | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.spool: Spool = spool or SqliteSpool(cfg.spool_path, cfg.spool_max_bytes, cfg.spool_max_readings,
                                                 cfg.spool_policy, cfg.spool_synchronous)
        self.readers = ReaderGroup([build_reader(i, self.enqueue, clock=self.clock) for i in cfg.instruments])
        self._stop = threading.Event()
        self._status_dirty = threading.Event()
        self.connected = False
        self.published = 0
        self.acked = 0
        self.connects = 0

    # ---- readers -> spool -----------------------------------------------------------------------------
    def enqueue(self, batches: list[Batch]) -> None:
        """The readers' callback. Raises StoreError if the disk fails (the reader offers the data again)."""
        n = self.cfg.max_batch_readings
        for b in batches:
            rs = b.readings
            for i in range(0, len(rs), n):
                chunk = rs[i : i + n]
                was_full = self.spool.status().full
                now = self.clock.now_ms()
                res = self.spool.put(b.device_id, lambda seq, c=chunk, d=b.device_id, t=now: encode_batch(
                    d, seq, c, t, self.cfg.gateway_id), len(chunk), now)
                if not res.accepted or res.dropped_entries or was_full != self.spool.status().full:
                    self._status_dirty.set()

    def _ack(self, ids: list[int]) -> None:
        was_full = self.spool.status().full
        self.acked += self.spool.ack(ids)
        if was_full and not self.spool.status().full:
            self._status_dirty.set()  # delivery freed room: say so at once

    # ---- status ---------------------------------------------------------------------------------------
    def status(self, online: bool = True) -> dict[str, Any]:
        return {"online": online, "gateway_id": self.cfg.gateway_id, "ts": to_iso(self.clock.now_ms()),
                "broker_connected": self.connected, "published": self.published, "acked": self.acked,
                "spool": self.spool.status().as_dict(), "ports": self.readers.status()}

    # ---- MQTT -----------------------------------------------------------------------------------------
    def _client(self, conn: _Connection) -> mqtt.Client:
        cid = self.cfg.client_id or f"coldtrace-gw-{self.cfg.gateway_id}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311, clean_session=True)
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password)
        if self.cfg.host_port_tls[2]:
            c.tls_set()
        c.max_inflight_messages_set(self.cfg.inflight + 2)
        c.will_set(status_topic(self.cfg.gateway_id),
                   json.dumps({"online": False, "gateway_id": self.cfg.gateway_id}), qos=1, retain=True)

        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                conn.refused = str(reason_code)
            else:
                conn.connected = True

        def on_disconnect(client, userdata, flags, reason_code, properties):
            conn.lost = True

        def on_publish(client, userdata, mid, reason_code, properties):
            entry = conn.inflight.pop(mid, None)
            if entry is None:
                return
            if reason_code.is_failure:
                log.error("broker refused message %d (%s); it stays spooled", entry, reason_code)
                conn.failed_puback = True
                return
            conn.acked.append(entry)

        c.on_connect, c.on_disconnect, c.on_publish = on_connect, on_disconnect, on_publish
        return c

    def _session(self, client: mqtt.Client, conn: _Connection) -> None:
        """Run one connection until it is lost or the gateway stops."""
        deadline = time.monotonic() + 10
        next_status = 0.0
        while not self._stop.is_set():
            rc = client.loop(timeout=0.02)
            if conn.acked:
                ids, conn.acked = conn.acked, []
                self._ack(ids)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or conn.lost or conn.refused or conn.failed_puback:
                if conn.refused:
                    log.error("broker refused the connection: %s", conn.refused)
                return
            if not conn.connected:
                if time.monotonic() > deadline:
                    log.warning("no CONNACK within 10 s")
                    return
                continue
            if not self.connected:
                self.connected = True
                self.connects += 1
                st = self.spool.status()
                log.info("connected to %s; %d spooled messages (%d readings) to send", self.cfg.mqtt_url,
                         st.entries, st.readings)
            room = self.cfg.inflight - len(conn.inflight)
            if room > 0:
                for e in self.spool.peek(after_id=conn.cursor, limit=room):
                    info = client.publish(readings_topic(e.device_id), e.payload, qos=1)
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        return
                    conn.inflight[info.mid] = e.id
                    conn.cursor = e.id
                    self.published += 1
            now = time.monotonic()
            if now >= next_status or self._status_dirty.is_set():
                self._status_dirty.clear()
                client.publish(status_topic(self.cfg.gateway_id), json.dumps(self.status()), qos=1, retain=True)
                next_status = now + self.cfg.status_interval_s
        self._goodbye(client, conn)

    def _goodbye(self, client: mqtt.Client, conn: _Connection) -> None:
        """Clean stop: say offline (retained) ourselves, finish what is in flight, disconnect (no will)."""
        info = client.publish(status_topic(self.cfg.gateway_id), json.dumps(self.status(online=False)), qos=1,
                              retain=True)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and (conn.inflight or not info.is_published()):
            if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if conn.acked:
                ids, conn.acked = conn.acked, []
                self._ack(ids)
        client.disconnect()

    def _publish_loop(self) -> None:
        host, port, _ = self.cfg.host_port_tls
        backoff = self.cfg.backoff_min_s
        failures = 0
        next_depth_log = 0.0
        while not self._stop.is_set():
            conn = _Connection()
            client = self._client(conn)
            try:
                client.connect(host, port, self.cfg.keepalive_s)
            except (OSError, ValueError) as exc:
                failures += 1
                now = time.monotonic()
                if failures == 1 or now >= next_depth_log:
                    st = self.spool.status()
                    log.warning("broker %s unreachable (%s); spool holds %d messages, %d readings%s",
                                self.cfg.mqtt_url, exc, st.entries, st.readings, " (FULL)" if st.full else "")
                    next_depth_log = now + self.cfg.status_interval_s
                self._stop.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.cfg.backoff_max_s)
                continue
            up = time.monotonic()
            failures = 0
            try:
                self._session(client, conn)
            finally:
                try:
                    client.socket() and client.socket().close()
                except OSError:
                    pass
                was = self.connected
                self.connected = False
            if self._stop.is_set():
                break
            if was:
                log.warning("lost the broker connection; %d messages were awaiting PUBACK (they stay spooled)",
                            len(conn.inflight))
            if time.monotonic() - up > 10:
                backoff = self.cfg.backoff_min_s
            self._stop.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.cfg.backoff_max_s)

    # ---- lifecycle ------------------------------------------------------------------------------------
    def run(self) -> int:
        log.info("gateway %s: %d instruments, spool %s (policy %s)", self.cfg.gateway_id,
                 len(self.cfg.instruments), self.cfg.spool_path, self.cfg.spool_policy)
        self.readers.start()
        try:
            self._publish_loop()
        finally:
            self.readers.stop()
            self.spool.close()
        log.info("gateway %s stopped", self.cfg.gateway_id)
        return 0

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    """``coldtrace gateway --config gateway.toml``: run until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(prog="coldtrace gateway", description="serial instruments -> spool -> MQTT")
    p.add_argument("--config", required=True, help="gateway.toml (see gateway.example.toml)")
    args = p.parse_args(argv)
    try:
        gw = Gateway(load_config(args.config))
    except ColdTraceError as exc:
        log.error("gateway: %s", exc)
        print(f"coldtrace gateway: error: {exc}", flush=True)
        return 2
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: gw.stop())
    return gw.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    raise SystemExit(main())

"""`coldtrace doctor`: what can be verified about the broker, the store and the clock, said plainly.

Each check gives a Finding (ok | warn | fail | info). The broker part connects as the collector would (MQTT 5,
falling back to 3.1.1), reads what the CONNACK tells (Receive Maximum is Mosquitto's max_inflight_messages,
maximum QoS, retain), reads the retained ``$SYS`` topics (version, uptime, messages dropped and stored), and
with ``probe_queue`` measures how many QoS 1 messages the broker keeps for an offline persistent session
(Mosquitto's max_queued_messages): the one setting that loses data silently when it is too small.
What no client can see (persistence, autosave) is said to be unverifiable, with the place to check it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coldtrace.services.data_loss import SYS_DROPPED, SYS_STORED, SYS_UPTIME, SYS_VERSION
from coldtrace.settings import Settings, parse_mqtt_url

MIN_QUEUE = 100_000  # docs/deployment.md: what a collector outage of hours needs at a busy site
MIN_FREE_BYTES = 1024**3


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | fail | info
    area: str  # broker | store | clock
    text: str


# ---------------------------------------------------------------- broker

def _client(url: str, settings: Settings, v5: bool, client_id: str, clean: bool = True):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else clean)
    m = settings.mqtt
    if m.username:
        c.username_pw_set(m.username, m.password.get_secret_value() if m.password else None)
    if parse_mqtt_url(url)[2]:
        c.tls_set()
    return c


class _Session:
    """One connection, waiting for CONNACK and collecting messages."""

    def __init__(self, url: str, settings: Settings, v5: bool, client_id: str, *, clean: bool = True,
                 session_expiry_s: int = 0) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.host, self.port, _ = parse_mqtt_url(url)
        self.connack = threading.Event()
        self.reason: Any = None
        self.props: dict[str, Any] = {}
        self.session_present = False
        self.messages: dict[str, bytes] = {}
        self.received = 0
        self.subscribed = threading.Event()
        self.client = _client(url, settings, v5, client_id, clean)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
        self.v5 = v5
        self.clean = clean
        self._props = props

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code
        self.session_present = bool(getattr(flags, "session_present", False))
        if properties is not None:
            self.props = {k: v for k, v in vars(properties).items() if not k.startswith("_") and v is not None}
        self.connack.set()

    def _on_message(self, client, userdata, msg) -> None:
        self.messages[msg.topic] = msg.payload
        self.received += 1

    def connect(self, timeout: float) -> None:
        if self.v5:
            self.client.connect(self.host, self.port, 30, clean_start=self.clean, properties=self._props)
        else:
            self.client.connect(self.host, self.port, 30)
        self.client.loop_start()
        if not self.connack.wait(timeout):
            self.close()
            raise TimeoutError(f"no CONNACK from {self.host}:{self.port} within {timeout:g} s")

    @property
    def ok(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def _connect(url: str, settings: Settings, timeout: float) -> tuple[_Session | None, list[Finding]]:
    out: list[Finding] = []
    last = None
    for v5 in (True, False):
        s = _Session(url, settings, v5, f"coldtrace-doctor-{uuid.uuid4().hex[:8]}")
        t0 = time.monotonic()
        try:
            s.connect(timeout if v5 else max(2.0, timeout / 2))
        except TimeoutError as exc:  # a 3.1.1-only broker (amqtt) may not answer an MQTT 5 CONNECT at all
            last = exc
            continue
        except OSError as exc:
            return None, [Finding("fail", "broker", f"cannot connect to {url}: {exc}")]
        if s.ok:
            ms = (time.monotonic() - t0) * 1000
            user = f" as {settings.mqtt.username}" if settings.mqtt.username else " without a username"
            out.append(Finding("ok", "broker", f"connected to {url} (MQTT {'5' if v5 else '3.1.1'}){user}"
                               f" in {ms:.0f} ms"))
            return s, out
        last = s.reason
        s.close()
        if "not authorized" in str(last).lower() or "bad user" in str(last).lower():
            break
    return None, [Finding("fail", "broker", f"{url} refused the connection: {last} (check COLDTRACE_MQTT__USERNAME"
                                            " / COLDTRACE_MQTT__PASSWORD and the broker's ACL)")]


def _sys_findings(s: _Session, wait_s: float, stored_dropped: int | None) -> list[Finding]:
    out: list[Finding] = []
    s.client.subscribe([("$SYS/broker/#", 0)])
    s.subscribed.wait(wait_s)
    deadline = time.monotonic() + wait_s
    wanted = {SYS_VERSION, SYS_DROPPED, SYS_STORED}
    while time.monotonic() < deadline and not wanted <= set(s.messages):
        time.sleep(0.05)
    msgs = {k: v.decode("utf-8", "replace").strip() for k, v in s.messages.items()}
    if not msgs:
        out.append(Finding("warn", "broker", "no $SYS topics: the broker publishes none (EMQX and HiveMQ report"
                           " drops in their own metrics: docs/deployment.md), or its ACL hides them from this"
                           " user. broker.messages_dropped cannot be raised: watch the broker's metrics."))
        return out
    out.append(Finding("ok", "broker", f"$SYS available ({len(msgs)} topics): broker.messages_dropped is watched"))
    if SYS_VERSION in msgs:
        out.append(Finding("info", "broker", f"version: {msgs[SYS_VERSION]}"))
    if SYS_UPTIME in msgs:
        out.append(Finding("info", "broker", f"uptime: {msgs[SYS_UPTIME]}"))
    if SYS_DROPPED in msgs:
        try:
            dropped = int(msgs[SYS_DROPPED].split()[0])
        except (ValueError, IndexError):
            dropped = None
        if dropped:
            since = "" if stored_dropped is None else f" (the collector last saw {stored_dropped})"
            out.append(Finding("warn", "broker", f"the broker has dropped {dropped} message(s) since it started"
                               f"{since}: a client's queue overflowed (max_queued_messages)"))
        elif dropped == 0:
            out.append(Finding("ok", "broker", "no message dropped since the broker started"))
    else:
        out.append(Finding("warn", "broker", f"{SYS_DROPPED} is not published (Mosquitto older than 2.0?):"
                           " drops cannot be seen"))
    if SYS_STORED in msgs:
        out.append(Finding("info", "broker", f"messages held by the broker (queued, retained, in flight):"
                           f" {msgs[SYS_STORED]}"))
    clients = msgs.get("$SYS/broker/clients/connected")
    if clients is not None:
        out.append(Finding("info", "broker", f"clients connected: {clients}"))
    return out


def _connack_findings(s: _Session) -> list[Finding]:
    out: list[Finding] = []
    p = s.props
    if not s.v5:
        out.append(Finding("info", "broker", "MQTT 3.1.1 only: the broker's inflight window is not announced;"
                           " set COLDTRACE_MQTT__BROKER_INFLIGHT_V311 to its max_inflight_messages"))
        return out
    rm = p.get("ReceiveMaximum")
    if rm is not None:
        level = "warn" if rm < 100 else "ok"
        out.append(Finding(level, "broker", f"inflight window (Receive Maximum, Mosquitto max_inflight_messages):"
                           f" {rm}" + (" - small: the collector commits at most half of it at a time; 1000 is"
                                       " recommended" if rm < 100 else "")))
    else:
        out.append(Finding("ok", "broker", "inflight window: 65535 (Receive Maximum not limited)"))
    if p.get("MaximumQoS") == 0:
        out.append(Finding("fail", "broker", "the broker offers QoS 0 only: readings are not acknowledged"))
    if "MaximumPacketSize" in p:
        size = p["MaximumPacketSize"]
        out.append(Finding("warn" if size < 262_144 + 1024 else "info", "broker",
                           f"maximum packet size {size} bytes (PROTOCOLS.md messages may reach 256 KiB)"))
    return out


def probe_queue(url: str, settings: Settings, n: int, timeout: float = 10.0) -> tuple[int | None, str | None]:
    """How many of ``n`` QoS 1 messages the broker keeps for an offline persistent session.
    Returns (kept, error). Uses a topic and client id of its own, removes its session afterwards."""
    cid = f"coldtrace-doctor-probe-{uuid.uuid4().hex[:8]}"
    topic = f"coldtrace/doctor/{cid}"
    v5 = True
    try:
        sub = _Session(url, settings, v5, cid, clean=False, session_expiry_s=300)
        sub.connect(timeout)
        if not sub.ok:
            v5 = False
            sub.close()
            sub = _Session(url, settings, v5, cid, clean=False)
            sub.connect(timeout)
        sub.client.subscribe(topic, qos=1)
        if not sub.subscribed.wait(timeout):
            sub.close()
            return None, "the broker did not confirm the probe's subscription"
        sub.close()
        pub = _Session(url, settings, v5, f"{cid}-pub")
        pub.connect(timeout)
        infos = [pub.client.publish(topic, b"probe", qos=1) for _ in range(n)]
        for i in infos:
            i.wait_for_publish(timeout)
        pub.close()
        if not all(i.is_published() for i in infos):
            return None, "the broker did not acknowledge the probe's messages (ACL: allow coldtrace/doctor/#)"
        back = _Session(url, settings, v5, cid, clean=False, session_expiry_s=0)
        back.connect(timeout)
        last, still = -1, time.monotonic()
        while time.monotonic() - still < 1.0:  # until nothing more arrives for a second
            if back.received != last:
                last, still = back.received, time.monotonic()
            time.sleep(0.05)
        kept = back.received
        back.close()
        if not v5:  # end the 3.1.1 session: connect once more with a clean session
            end = _Session(url, settings, False, cid, clean=True)
            end.connect(timeout)
            end.close()
        return kept, None
    except (OSError, TimeoutError) as exc:
        return None, str(exc)


def check_broker(url: str, settings: Settings, *, wait_s: float = 3.0, stored_dropped: int | None = None,
                 probe: int = 0) -> list[Finding]:
    s, out = _connect(url, settings, timeout=max(wait_s, 5.0))
    if s is None:
        return out
    try:
        out += _connack_findings(s)
        out += _sys_findings(s, wait_s, stored_dropped)
    finally:
        s.close()
    if probe:
        kept, err = probe_queue(url, settings, probe)
        if err:
            out.append(Finding("warn", "broker", f"queue probe failed: {err}"))
        elif kept is not None and kept < probe:
            out.append(Finding("fail", "broker", f"the broker kept only {kept} of {probe} QoS 1 messages for an"
                               f" offline session: max_queued_messages (or its equivalent) is {kept}; readings are"
                               f" dropped while the collector is down. Set it to {MIN_QUEUE} or more"
                               f" (docs/deployment.md). The probe's own {probe - kept} dropped messages count in"
                               " $SYS/broker/publish/messages/dropped: a collector watching this broker raises"
                               " broker.messages_dropped for them"))
        else:
            out.append(Finding("ok", "broker", f"the broker kept all {probe} QoS 1 messages for an offline session"
                               f" (max_queued_messages >= {probe})"))
    else:
        out.append(Finding("info", "broker", "queue limit not probed (--probe-queue N publishes N small messages to"
                           " measure what the broker keeps for an offline collector)"))
    out.append(Finding("info", "broker", "persistence (autosave_on_changes / autosave_interval) cannot be seen"
                       " from a client: check the broker's configuration against docs/deployment.md"))
    return out


# ---------------------------------------------------------------- store

def _check_postgres(settings: Settings) -> list[Finding]:
    from coldtrace.core.errors import StoreError
    from coldtrace.store import devices as device_store
    from coldtrace.store import meta as meta_store
    from coldtrace.store import open_store_database

    where = settings.store_display  # the password redacted
    try:
        db = open_store_database(settings, application_name="coldtrace-doctor")
    except StoreError as exc:
        return [Finding("fail", "store", str(exc))]
    try:
        c = db.conn()
        version = meta_store.postgresql_server_version(c)
        n_mig = meta_store.migrations_applied(c)
        n_dev = device_store.count_devices(c)
        n_q = device_store.count_quarantine(c)
    finally:
        db.close()
    return [Finding("ok", "store", f"PostgreSQL {version} at {where}"),
            Finding("info", "store", f"{n_mig} migrations applied; {n_dev} devices; {n_q} quarantined messages")]


def check_store(settings: Settings) -> list[Finding]:
    from coldtrace.store import devices as device_store
    from coldtrace.store import meta as meta_store
    from coldtrace.store.db import Database

    if not settings.store_is_sqlite:
        return _check_postgres(settings)
    out: list[Finding] = []
    d = settings.data_dir
    if not settings.db_path.exists():
        return [Finding("warn", "store", f"no store yet in {d.resolve()} (created at the first start)")]
    db = Database(settings.db_path, synchronous=settings.store.sqlite_synchronous)
    try:
        c = db.conn()
        qc = meta_store.sqlite_quick_check(c)
        out.append(Finding("ok" if qc == "ok" else "fail", "store", f"{settings.db_path.resolve()}: integrity"
                           f" {'ok' if qc == 'ok' else qc}"))
        mode = meta_store.sqlite_journal_mode(c)
        sync = settings.store.sqlite_synchronous
        out.append(Finding("ok" if mode == "wal" and sync == "FULL" else "warn", "store",
                           f"journal {mode}, synchronous {sync}" + ("" if sync == "FULL" else
                                                                    " (NORMAL may lose the last commits on power"
                                                                    " loss)")))
        n_mig = meta_store.migrations_applied(c)
        n_dev = device_store.count_devices(c)
        n_q = device_store.count_quarantine(c)
        out.append(Finding("info", "store", f"{n_mig} migrations applied; {n_dev} devices; {n_q} quarantined"
                           " messages"))
        dropped = meta_store.first_with_prefix(c, "broker.dropped.")
        if dropped is not None:
            out.append(Finding("info", "store", f"the collector last saw the broker's dropped counter at {dropped}"))
    finally:
        db.close()
    if settings.store.backend == "influx":
        out.append(Finding("info", "store", f"readings in InfluxDB at {settings.store.influx.url}"
                           f" (database {settings.store.influx.database})"))
    free = shutil.disk_usage(d).free
    out.append(Finding("ok" if free >= MIN_FREE_BYTES else "warn", "store",
                       f"{free / 1024**3:.1f} GiB free in {d.resolve()}"))
    return out


# ---------------------------------------------------------------- clock

TIME_ERROR = 5


def kernel_clock_state() -> tuple[int, float] | None:
    """(state, max error in s) from adjtimex(2), read-only; None where it is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    maxerror_us = struct.unpack_from("l", buf, 3 * ctypes.sizeof(ctypes.c_long))[0]
    return state, maxerror_us / 1e6


def check_clock(settings: Settings, now_ms: int, clock_state: Callable[[], tuple[int, float] | None] =
                kernel_clock_state) -> list[Finding]:
    from coldtrace.core.clock import to_iso

    out = [Finding("info", "clock", f"system time {to_iso(now_ms)} (UTC)")]
    st = clock_state()
    if st is None:
        out.append(Finding("info", "clock", "synchronisation state unknown (adjtimex not available)"))
    elif st[0] == TIME_ERROR:
        out.append(Finding("warn", "clock", f"the system clock is NOT synchronised (NTP/chrony); max error"
                           f" {st[1]:.1f} s. Readings in the future are refused beyond 5 min, and excursion"
                           " times are only as good as this clock"))
    else:
        out.append(Finding("ok", "clock", f"the system clock is synchronised (max error {st[1] * 1000:.0f} ms)"))
    if not settings.store_is_sqlite or settings.db_path.exists():
        from coldtrace.core.errors import StoreError
        from coldtrace.store import devices as device_store
        from coldtrace.store import open_store_database

        try:
            db = open_store_database(settings, application_name="coldtrace-doctor")
        except StoreError:  # reported by check_store
            return out
        try:
            fut = device_store.quarantined_for(db.conn(), "future_timestamp")
            ahead = device_store.count_devices_ahead(db.conn(), now_ms + 5 * 60_000)
        finally:
            db.close()
        if fut[0]:
            out.append(Finding("warn", "clock", f"{fut[0]} message(s) quarantined for future timestamps (last at"
                               f" {to_iso(fut[1])}): a device's clock, or this one, is wrong"))
        if ahead:
            out.append(Finding("warn", "clock", f"{ahead} device(s) have readings stamped more than 5 min after"
                               " this clock's now: is this clock behind?"))
    return out

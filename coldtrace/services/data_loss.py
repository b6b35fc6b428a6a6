"""Guards against data lost upstream of ColdTrace, where it cannot prevent the loss but must not stay silent.

* ``device.data_gap`` (warning): a device's message ``seq`` jumped: messages ``first..last`` never arrived
  (a logger's radio, a gateway spool that dropped its oldest entries, a broker queue that overflowed). Raised by
  the pipeline in the transaction that stores the message after the gap; the id is made of the device and the
  missing range, so a redelivered message raises nothing new.
* ``broker.messages_dropped`` (alarm): a broker ColdTrace does not control says, in its ``$SYS`` counters, that
  it dropped messages (Mosquitto: ``$SYS/broker/publish/messages/dropped`` grows when a client's queue is full,
  "Outgoing messages are being dropped"). The collector subscribes to the counters where the broker offers
  them (``BROKER_SYS_TOPICS``); the last value seen is kept in the store so drops that happened while the
  collector was down are noticed when it is back. One alarm per episode: while one is still unacknowledged,
  further growth is logged, not raised again (ISA-18.2: no alarm flood for one cause).

The decisions (``data_gap_alert``, ``DroppedCounter.update``) are pure; ``BrokerGuard`` is the thin adapter.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from coldtrace.core.model import Alert, newest_ts, reading_ts, stable_id
from coldtrace.store import alerts as alert_store
from coldtrace.store import meta as meta_store

log = logging.getLogger(__name__)

DATA_GAP = "device.data_gap"
MESSAGES_DROPPED = "broker.messages_dropped"

SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
SYS_STORED = "$SYS/broker/store/messages/count"
SYS_VERSION = "$SYS/broker/version"
SYS_UPTIME = "$SYS/broker/uptime"
BROKER_SYS_TOPICS: tuple[str, ...] = (SYS_DROPPED, SYS_STORED, SYS_VERSION, SYS_UPTIME)
# Mosquitto publishes $SYS every sys_interval (default 10 s): after this long connected without the dropped
# counter, the broker does not offer it (EMQX, HiveMQ, $SYS off, or an ACL hiding it) and the collector says so.
SYS_GRACE_S = 30.0

# the last values seen, in ``meta`` under these prefixes + "host:port" (kept across restarts, read by /metrics)
DROPPED_KEY = "broker.dropped."
STORED_KEY = "broker.stored."


def broker_counters(c: Any) -> dict[str, dict[str, int | None]]:
    """{broker: {"dropped_total": .., "stored_messages": ..}} as the collectors last saw them (GET /metrics)."""
    out: dict[str, dict[str, int | None]] = {}
    for prefix, name in ((DROPPED_KEY, "dropped_total"), (STORED_KEY, "stored_messages")):
        for key, value in meta_store.with_prefix(c, prefix):
            entry = out.setdefault(key[len(prefix):], {"dropped_total": None, "stored_messages": None})
            entry[name] = int(value)
    return out


# ---------------------------------------------------------------- seq gaps

def data_gap_alert(device_id: str, first_missing: int, last_missing: int, *, after_ts: int | None,
                   before_ts: int | None, now_ms: int, source: str | None = None) -> Alert:
    """Messages ``first_missing..last_missing`` of ``device_id`` are missing; the readings they carried lie
    between ``after_ts`` (the newest stored before) and ``before_ts`` (the first after)."""
    n = last_missing - first_missing + 1
    return Alert(
        id=stable_id(DATA_GAP, device_id, first_missing, last_missing), type=DATA_GAP, severity="warning",
        device_id=device_id, ts=before_ts if before_ts is not None else now_ms,
        data={"missing_seq": {"first": first_missing, "last": last_missing}, "missing_messages": n,
              "after_ts": after_ts, "before_ts": before_ts, "source": source,
              "message": f"{n} message(s) of {device_id} never arrived (seq {first_missing}"
                         f"{'' if n == 1 else f'..{last_missing}'}): readings between the two times are"
                         " missing unless the device or its gateway sends them again"})


# LoRaWAN loses single uplinks routinely (radio collisions): a warning for each would be noise nobody acts on.
# From this many consecutive lost frames on, something is wrong (the seq_gaps counter counts every one).
MIN_GAP_BY_SOURCE = {"lorawan": 3}


def _min_gap(source: str | None) -> int:
    return MIN_GAP_BY_SOURCE.get((source or "").split(":", 1)[0], 1)


def seq_gap_alerts(device_id: str, batches: Sequence[Any], last_seq: int | None, last_ts: int | None,
                   now_ms: int) -> list[Alert]:
    """The data-gap alerts of one device's batches in arrival order (the pipeline's seq bookkeeping)."""
    out = []
    for b in batches:
        if b.seq is None:
            continue
        if last_seq is not None and b.seq - last_seq - 1 >= _min_gap(getattr(b, "source", None)):
            before = min(reading_ts(b.readings), default=None)
            out.append(data_gap_alert(device_id, last_seq + 1, b.seq - 1, after_ts=last_ts, before_ts=before,
                                      now_ms=now_ms, source=getattr(b, "source", None)))
        last_seq = b.seq if last_seq is None else max(last_seq, b.seq)
        if b.readings:
            newest = newest_ts(b.readings)
            last_ts = newest if last_ts is None else max(last_ts, newest)
    return out


# ---------------------------------------------------------------- broker $SYS counters

@dataclass(frozen=True)
class DroppedDecision:
    baseline: int  # the value to remember
    new_drops: int  # messages dropped since the last value seen (0: nothing new)
    reset: bool  # the counter went down: the broker restarted


def decide_dropped(previous: int | None, value: int) -> DroppedDecision:
    """Compare a dropped-messages counter with the last value seen (None: never seen)."""
    if previous is None:
        return DroppedDecision(value, value, False)  # drops before we watched are drops all the same
    if value < previous:
        return DroppedDecision(value, value, True)
    return DroppedDecision(value, value - previous, False)


def dropped_alert(broker: str, decision: DroppedDecision, previous: int | None, now_ms: int) -> Alert:
    return Alert(
        id=stable_id(MESSAGES_DROPPED, broker, previous, decision.baseline), type=MESSAGES_DROPPED,
        severity="alarm", device_id=None, ts=now_ms,
        data={"broker": broker, "dropped_total": decision.baseline, "new_drops": decision.new_drops,
              "previous": previous, "broker_restarted": decision.reset,
              "message": f"the MQTT broker {broker} dropped {decision.new_drops} message(s)"
                         f" ({SYS_DROPPED} = {decision.baseline}): readings were lost before ColdTrace"
                         " received them. Check the broker's queue limits (max_queued_messages,"
                         " docs/deployment.md) and the devices' data_gap warnings for the ranges"})


def _int(payload: bytes) -> int | None:
    try:
        return int(payload.decode("ascii").strip().split()[0])
    except (UnicodeDecodeError, ValueError, IndexError):
        return None


class BrokerGuard:
    """The collector's side channel for ``$SYS``: counters kept in ``meta``, alarms through ``emit``.

    ``emit(alerts) -> int`` commits alerts (``Pipeline.emit_now``); ``db`` keeps the last value across
    restarts; ``clock`` stamps them."""

    filters = BROKER_SYS_TOPICS

    def __init__(self, broker: str, db: Any, emit: Callable[[list[Alert]], int], clock: Any) -> None:
        self.broker = broker
        self.db = db
        self.emit = emit
        self.clock = clock
        self._lock = threading.Lock()
        self.values: dict[str, str] = {}  # the latest of each $SYS topic seen by this process
        self.alarms = 0
        self._stored_written: int | None = None
        self.grace_s = SYS_GRACE_S
        self.sys_state = "waiting"  # then "watching" (the dropped counter arrives) or "absent" (said once)
        self._connected_since: float | None = None

    @property
    def _key(self) -> str:
        return f"{DROPPED_KEY}{self.broker}"

    def on_message(self, topic: str, payload: bytes) -> None:
        """paho's network thread: one $SYS message. Never raises (a failure is logged, retried next time)."""
        self.values[topic] = payload.decode("utf-8", "replace")[:200]
        if topic not in (SYS_DROPPED, SYS_STORED):
            return
        value = _int(payload)
        if value is None:
            return
        try:
            if topic == SYS_DROPPED:
                self._dropped(value)
            elif value != self._stored_written:  # the broker's backlog, for GET /api/v1/metrics (any process)
                with self.db.write() as c:
                    meta_store.put(c, f"{STORED_KEY}{self.broker}", str(value))
                self._stored_written = value
        except Exception:  # the network thread must go on; the next $SYS update tries again
            log.exception("could not record the broker's %s counter", topic)

    def check_available(self, connected: bool) -> None:
        """The collector's tick: say once whether this broker's dropped counter is watched (INFO) or, after
        ``grace_s`` connected without it, that drops there cannot be seen (WARNING: an operator must watch the
        broker's own metrics instead)."""
        if self.sys_state != "waiting" or not connected:
            return
        if SYS_DROPPED in self.values:
            self.sys_state = "watching"
            log.info("MQTT broker %s: watching its dropped-messages counter (%s = %s; %s)", self.broker,
                     SYS_DROPPED, self.values[SYS_DROPPED], self.values.get(SYS_VERSION, "version not published"))
            return
        now = time.monotonic()
        if self._connected_since is None:
            self._connected_since = now
        elif now - self._connected_since >= self.grace_s:
            self.sys_state = "absent"
            log.warning("MQTT broker %s published no %s in %.0f s (not Mosquitto, $SYS disabled, or the ACL hides"
                        " it from this user): messages it drops cannot be seen here and raise no %s; watch the"
                        " broker's own drop metrics (docs/deployment.md, 'Brokers ColdTrace does not control')",
                        self.broker, SYS_DROPPED, self.grace_s, MESSAGES_DROPPED)

    def _dropped(self, value: int) -> None:
        with self._lock:
            stored = meta_store.get(self.db.conn(), self._key)
            previous = int(stored) if stored is not None else None
            if previous == value:
                return
            d = decide_dropped(previous, value)
            now = self.clock.now_ms()
            if d.new_drops > 0:
                log.warning("MQTT broker %s dropped %d message(s) (counter %s -> %d)%s", self.broker, d.new_drops,
                            previous, value, " after a restart" if d.reset else "")
                open_alarm = self._open_alarm()
                if open_alarm is None:
                    self.alarms += self.emit([dropped_alert(self.broker, d, previous, now)])
                else:
                    log.warning("alarm %s is still unacknowledged: not raised again", open_alarm)
            with self.db.write() as c:
                meta_store.put(c, self._key, str(d.baseline))

    def _open_alarm(self) -> str | None:
        """The id of this broker's open dropped-messages alarm, if any."""
        for alert_id, data in alert_store.open_alerts_of_type(self.db.conn(), MESSAGES_DROPPED):
            try:
                broker = json.loads(data).get("broker")
            except (ValueError, AttributeError):
                continue
            if broker == self.broker:
                return alert_id
        return None

"""The one ingest path: payload -> quarantine | store (idempotent) -> excursion engine -> alerts + outbox.

Everything a message causes is committed in one SQLite transaction (readings when the store is SQLite, device
state, excursions, alerts and their webhook outbox rows), so a caller that acknowledges after ``ingest_*``
returns never loses data, and a redelivered message changes nothing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

from coldtrace.core.clock import Clock, to_iso
from coldtrace.core.errors import ColdTraceError, PayloadError
from coldtrace.core.model import (
    BUILTIN_PROFILES,
    Alert,
    Batch,
    ParseResult,
    Profile,
    Reading,
    ReadingColumns,
    Rejection,
    stable_id,
    ts_temps,
)
from coldtrace.core.payload import parse_payload, valid_device_id
from coldtrace.ports import Conflict, ReadingStore
from coldtrace.services import webhooks
from coldtrace.services.data_loss import seq_gap_alerts
from coldtrace.services.device_roles import on_bench, session_roles
from coldtrace.services.health_store import HealthTracker
from coldtrace.services.live_evaluation import LiveEvaluator
from coldtrace.store import alerts as alert_store
from coldtrace.store import devices as device_store
from coldtrace.store import meta as meta_store
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

RAW_CAP = 64 * 1024


def is_transient(exc: BaseException) -> bool:
    """A failure of the store itself (locked, disk full, InfluxDB or PostgreSQL unreachable): the message is
    kept unacknowledged and retried. Anything else that one message makes the pipeline raise is that
    message's doing: it is quarantined (``poison_reason``) and acknowledged, and the other messages go on.
    A ``PayloadError`` is a value the store refused (PostgreSQL's text holds no NUL): the message's doing,
    never retried (retrying it would stop every message behind it)."""
    if isinstance(exc, PayloadError):
        return False
    return isinstance(exc, ColdTraceError | sqlite3.OperationalError)


def poison_reason(exc: BaseException) -> str:
    if isinstance(exc, OverflowError):
        return "out_of_range"
    if isinstance(exc, PayloadError):
        return "schema"  # a value no store column can hold (PostgreSQL's text: a NUL character)
    return "internal_error"


def _clean(text: str, limit: int = 500) -> str:
    """Text any store can hold whatever a payload put in it (lone surrogates, NUL characters included)."""
    return text[:limit].replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(slots=True)
class RawMessage:
    data: bytes
    source: str = "mqtt"
    topic_device_id: str | None = None
    content_type: str | None = None
    topic: str | None = None


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    alerts: int = 0
    poisoned: bool = False  # a message was quarantined whole because ingesting it raised

    def add(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        self.alerts += other.alerts
        self.poisoned = self.poisoned or other.poisoned

    def to_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [{"index": r.index, "reason": r.reason, "detail": r.detail} for r in self.rejected],
        }


class Pipeline:
    def __init__(self, db: Database, readings: ReadingStore, clock: Clock, *,
                 default_profile: str = "2-8C", require_registration: bool = False) -> None:
        self.db = db
        self.readings = readings
        self.clock = clock
        self.default_profile = default_profile
        self.require_registration = require_registration
        self.judged = JudgedReadings(readings)  # bench readings are never judged by a profile (device roles)
        self.live = LiveEvaluator(self.judged)
        self._lock = threading.RLock()
        self.alerts_emitted = threading.Event()  # set after a commit that raised alerts (wakes the notifier)
        self.counters: Counter[str] = Counter()
        self._profiles: dict[str, Profile] = {}
        self._config_version: str | None = None  # meta.config_version seen by the last flush
        self.health = HealthTracker()  # device health (offline, battery, sensor faults), issue 3
        # (device, source) pairs known to be in device_sources: written once per process, not per flush
        self._sources_seen: set[tuple[str, str]] = set()
        # MQTT sources besides coldtrace/v1 (LoRaWAN network servers: coldtrace/core/lorawan.py), set by wiring
        self.topic_sources: list = []
        self._ensure_builtin_profiles()
        self._config_version = meta_store.get(self.db.conn(), meta_store.CONFIG_VERSION)

    # ---- profiles -------------------------------------------------------------------------------------
    def _ensure_builtin_profiles(self) -> None:
        now = self.clock.now_ms()
        with self.db.write() as c:
            for p in BUILTIN_PROFILES.values():
                device_store.ensure_builtin_profile(c, p.id, p.name, json.dumps(p.to_dict()), now)

    def profile(self, profile_id: str | None) -> Profile:
        pid = profile_id or self.default_profile
        p = self._profiles.get(pid)
        if p is None:
            body = device_store.profile_body(self.db.conn(), pid)
            if body is None:
                p = BUILTIN_PROFILES[self.default_profile]
            else:
                p = Profile.from_dict(json.loads(body))
            self._profiles[pid] = p
        return p

    def invalidate_profile(self, profile_id: str | None = None) -> None:
        """A profile or an assignment changed: forget cached profiles and engines (they rebuild from the store)."""
        with self._lock:
            self._profiles.clear()
            self.live.forget()

    def _follow_config(self, c: sqlite3.Connection) -> None:
        """Forget cached profiles and engines when another process changed a profile or an assignment.

        Every such change bumps ``meta.config_version`` (triggers, migration 1500); read inside the flush's
        write transaction, so a change committed before the flush is always seen by it."""
        version = meta_store.get(c, meta_store.CONFIG_VERSION)
        if version != self._config_version:
            self._profiles.clear()
            self.live.forget()
            self._config_version = version

    # ---- ingest ---------------------------------------------------------------------------------------
    def ingest_raw(self, data: bytes, *, source: str = "mqtt", topic_device_id: str | None = None,
                   content_type: str | None = None, topic: str | None = None) -> IngestResult:
        return self.ingest_raw_many([RawMessage(data, source, topic_device_id, content_type, topic)])

    def decode(self, m: RawMessage, now_ms: int | None = None) -> ParseResult:
        """Decode one message as the pipeline will (for a caller that must look before ingesting)."""
        return parse_payload(m.data, topic_device_id=m.topic_device_id,
                             now_ms=self.clock.now_ms() if now_ms is None else now_ms,
                             content_type=m.content_type, source=m.source)

    def ingest_raw_many(self, messages: Sequence[RawMessage],
                        decoded: Sequence[ParseResult] | None = None) -> IngestResult:
        """Decode and ingest several messages in one transaction. Returns the summed result.

        ``decoded``: the messages' ``decode()`` results when the caller already has them.
        Poison isolation: if the transaction fails for any reason but a store failure (``is_transient``),
        the messages are split in halves and each half committed on its own, down to single messages; one
        that fails alone is quarantined with the exception class (``internal_error``) in a transaction of its
        own. One poison in a flush of n costs about 2 log2(n) extra commits, not n, and the order of the
        others is kept. So this only raises a store failure, after which the caller retries the whole call
        (idempotent)."""
        now = self.clock.now_ms()
        if decoded is None:
            decoded = [self.decode(m, now) for m in messages]
        return self._ingest_isolating(messages, decoded, now)

    def _ingest_isolating(self, messages: Sequence[RawMessage], decoded: Sequence[ParseResult], now: int
                          ) -> IngestResult:
        try:
            return self._ingest_decoded(messages, decoded, now)
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(messages) == 1:
                return self._quarantine_poison(messages[0], exc, now)
            log.warning("a batch of %d messages failed (%s: %s); committing it in halves to find the message",
                        len(messages), type(exc).__name__, exc)
        half = len(messages) // 2
        result = self._ingest_isolating(messages[:half], decoded[:half], now)
        result.add(self._ingest_isolating(messages[half:], decoded[half:], now))
        return result

    def _ingest_decoded(self, messages: Sequence[RawMessage], decoded: Sequence[ParseResult], now: int
                        ) -> IngestResult:
        batches: list[Batch] = []
        quarantine: list[tuple] = []
        origins: dict[int, tuple[str | None, bytes]] = {}  # id(batch) -> (topic, raw): for its quarantine rows
        result = IngestResult()
        for m, pr in zip(messages, decoded, strict=True):
            dev = pr.batch.device_id if pr.batch else m.topic_device_id
            raw = m.data[:RAW_CAP]
            for i, rej in enumerate(pr.rejections):
                # the raw message once, with its first row: 10,000 rejected readings of one 200 KB message were
                # 10,000 copies (655 MB); the others name their reading (reading_index) in that message
                quarantine.append((now, m.source, m.topic, dev, rej.reason, rej.detail, rej.index,
                                   raw if i == 0 else None))
                result.rejected.append(rej)
            if pr.batch is not None:
                batches.append(pr.batch)
                origins[id(pr.batch)] = (m.topic, raw)
        self._commit(batches, quarantine, result, now, origins)
        return result

    def _quarantine_poison(self, m: RawMessage, exc: BaseException, now: int) -> IngestResult:
        """One message made the pipeline fail on its own: quarantine it (its own transaction)."""
        rej = Rejection(poison_reason(exc), _clean(f"{type(exc).__name__} while ingesting: {exc}"))
        log.warning("message from %s (%s) quarantined: it made the pipeline raise %s: %s", m.source,
                    m.topic_device_id, type(exc).__name__, exc, exc_info=exc)
        self.quarantine(source=m.source, reason=rej.reason, detail=rej.detail, raw=m.data, topic=m.topic,
                        device_id=m.topic_device_id)
        return IngestResult(rejected=[rej], poisoned=True)

    def ingest_batches(self, batches: Sequence[Batch], rejections: Iterable[tuple[str | None, Rejection]] = (),
                       source: str = "serial") -> IngestResult:
        """Already decoded batches (serial sources); ``rejections`` are (device_id, Rejection) to quarantine.
        Poison isolation as in ``ingest_raw_many``: a batch that fails alone is quarantined."""
        now = self.clock.now_ms()
        rejections = list(rejections)
        try:
            return self._ingest_batches(list(batches), rejections, source, now)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("%d %s batches failed (%s: %s); committing them one by one", len(batches), source,
                        type(exc).__name__, exc)
        result = self._ingest_batches([], rejections, source, now)
        for b in batches:
            try:
                result.add(self._ingest_batches([b], [], source, now))
            except Exception as exc:
                if is_transient(exc):
                    raise
                rej = Rejection(poison_reason(exc), _clean(f"{type(exc).__name__} while ingesting: {exc}"))
                self.quarantine(source=source, reason=rej.reason, detail=rej.detail, device_id=b.device_id)
                result.rejected.append(rej)
        return result

    def _ingest_batches(self, batches: list[Batch], rejections: list[tuple[str | None, Rejection]], source: str,
                        now: int) -> IngestResult:
        result = IngestResult()
        quarantine = []
        for dev, rej in rejections:
            quarantine.append((now, source, None, dev, rej.reason, rej.detail, rej.index, None))
            result.rejected.append(rej)
        self._commit(batches, quarantine, result, now)
        return result

    def _commit(self, batches: list[Batch], quarantine: list[tuple], result: IngestResult, now: int,
                origins: dict[int, tuple[str | None, bytes]] | None = None) -> None:
        try:
            new_sources = self._commit_locked(batches, quarantine, result, now, origins or {})
        except BaseException:
            self.live.forget()  # engines may have moved past what the rolled-back transaction stored
            raise
        self._sources_seen |= new_sources  # only once committed: a rolled-back pair is written again
        # counted after the commit, so a counter never runs ahead of what a reader can see
        self.counters["readings.accepted"] += result.accepted
        self.counters["readings.duplicates"] += result.duplicates
        self.counters["messages"] += len(batches)
        if result.alerts:
            self.alerts_emitted.set()

    def _commit_locked(self, batches: list[Batch], quarantine: list[tuple], result: IngestResult, now: int,
                       origins: dict[int, tuple[str | None, bytes]]) -> set[tuple[str, str]]:
        with self._lock, self.db.write() as c:
            self._follow_config(c)
            if batches:  # every source (MQTT, HTTP, serial, gateways) meets the one anchored id pattern here
                bad_ids = {d for d in {b.device_id for b in batches} if not valid_device_id(d)}
                if bad_ids:
                    for b in batches:
                        if b.device_id in bad_ids:
                            rej = Rejection("schema", f"device id {str(b.device_id)[:100]!r} does not match"
                                                      " ^[A-Za-z0-9._-]{1,64}$")
                            topic, raw = origins.get(id(b), (None, None))
                            quarantine.append((now, b.source, topic, None, rej.reason, rej.detail, None, raw))
                            result.rejected.append(rej)
                    batches = [b for b in batches if b.device_id not in bad_ids]
            if self.require_registration and batches:
                known = self._known_devices(c, {b.device_id for b in batches})
                kept = []
                for b in batches:
                    if b.device_id in known:
                        kept.append(b)
                    else:
                        rej = Rejection("unknown_device", f"device {b.device_id!r} is not registered")
                        topic, raw = origins.get(id(b), (None, None))
                        quarantine.append((now, b.source, topic, b.device_id, rej.reason, rej.detail, None, raw))
                        result.rejected.append(rej)
                batches = kept
            if quarantine:
                device_store.add_quarantine_many(c, quarantine)
                for q in quarantine:
                    self.counters[f"quarantined.{q[4]}"] += 1
                    log.warning("quarantined from %s (%s): %s: %s", q[1], q[3], q[4], q[5])
            if any(type(b.readings) is ReadingColumns for b in batches):  # decoded in bulk: stays columns
                all_readings: Sequence[Reading] = ReadingColumns.concat([b.readings for b in batches])
            else:
                all_readings = list(chain.from_iterable(b.readings for b in batches))
            conflict_alerts: list[Alert] = []
            if all_readings:
                wr = self.readings.write(all_readings)
                result.accepted += wr.accepted
                result.duplicates += wr.duplicates - len(wr.conflicts)
                if wr.conflicts:
                    conflict_alerts = self._record_conflicts(c, wr.conflicts, batches, origins, result, now)
            alerts, health_items, bench = self._update_devices(c, batches, now)
            alerts += conflict_alerts
            # which sources deliver each device's readings (a conflict names the stored value's source)
            new_sources = {(b.device_id, b.source) for b in batches if b.readings} - self._sources_seen
            if new_sources:
                device_store.record_sources(c, new_sources, now)
            oor = Counter(q[3] for q in quarantine if q[4] == "out_of_range" and q[3])
            alerts += self.health.on_flush(c, health_items, oor, now, bench=bench)
            if alerts:
                result.alerts += self.emit(c, alerts, now)
        return new_sources

    def _record_conflicts(self, c: sqlite3.Connection, conflicts: Sequence[Conflict], batches: list[Batch],
                          origins: dict[int, tuple[str | None, bytes]], result: IngestResult, now: int
                          ) -> list[Alert]:
        """Readings for an existing (device, ts) with another value: quarantined ``conflicting_duplicate``
        with both values (the stored, first one stays in the series), counted, and one ``device.data_conflict``
        warning per device and flush (a message contradicting 5,000 stored readings is one alarm to act on, not
        5,000: ISA-18.2 alarm flood; every reading keeps its own quarantine row). The device's evaluation is
        flagged "conflicting data" while such a row is open
        (resolved_at NULL; RULES.md)."""
        where: dict[tuple[str, int, float], Batch] = {}
        for b in batches:
            for r in b.readings:
                where.setdefault((r.device_id, r.ts, r.temp_c), b)
        rows, alerts = [], []
        per_device: dict[str, list[tuple]] = {}  # device -> its conflicts of this flush, in arrival order
        raw_kept: set[int] = set()  # id(batch) whose raw message a conflict row of this flush already holds
        # the stored value came from a source that delivered this device's readings before (device_sources),
        # or from another message of this very flush
        known = device_store.sources_of(c, sorted({cf.reading.device_id for cf in conflicts}))
        for cf in conflicts:
            r = cf.reading
            if device_store.open_conflict_exists(c, r.device_id, r.ts, r.temp_c):
                result.duplicates += 1  # the same conflicting message redelivered: already open
                continue
            b = where.get((r.device_id, r.ts, r.temp_c))
            topic, raw = origins.get(id(b), (None, None)) if b is not None else (None, None)
            if id(b) in raw_kept:
                raw = None  # the message's raw is kept once, with its first conflict (as for rejected readings)
            raw_kept.add(id(b))
            source = b.source if b is not None else "unknown"
            stored_from = known.get(r.device_id, set()) | {
                o.source for o in batches if o is not b and o.device_id == r.device_id and o.readings}
            stored_source = " or ".join(sorted(stored_from)) or None
            detail = (f"a second reading for {r.device_id} at {to_iso(r.ts)} with another value: stored"
                      f" {cf.stored_temp_c:g} °C (seq {cf.stored_seq}, from {stored_source or 'unknown'}), received"
                      f" {r.temp_c:g} °C (seq {r.seq}) from {source}; the stored value is kept until QA resolves"
                      " the conflict")
            rows.append((now, source, topic, r.device_id, detail, raw, r.ts, cf.stored_temp_c, cf.stored_seq,
                         r.temp_c, r.seq, stored_source))
            result.rejected.append(Rejection("conflicting_duplicate", detail))
            per_device.setdefault(r.device_id, []).append((r, cf, stored_source, source, topic, detail))
        if not rows:
            return []
        for dev, group in per_device.items():
            r, cf, stored_source, source, topic, detail = group[0]  # the first conflict names both values
            last = max(g[0].ts for g in group)
            first = min(g[0].ts for g in group)
            # one conflict: the id of before (per reading and value); several: made of their range and count
            extra = () if len(group) == 1 else ("n", len(group), first, last)
            alerts.append(Alert(id=stable_id("alert", dev, "device.data_conflict", r.ts, r.temp_c, *extra),
                                type="device.data_conflict", severity="warning", device_id=dev, ts=r.ts,
                                data={"reading_ts": to_iso(r.ts), "stored_temp_c": cf.stored_temp_c,
                                      "stored_seq": cf.stored_seq, "stored_source": stored_source,
                                      "received_temp_c": r.temp_c,
                                      "received_seq": r.seq, "source": source, "topic": topic,
                                      "conflicts": len(group), "first_reading_ts": to_iso(first),
                                      "last_reading_ts": to_iso(last)}))
            log.warning("conflicting duplicate from %s (%s): %s%s", source, dev, detail,
                        f" (and {len(group) - 1} more conflicting readings of {dev} up to {to_iso(last)})"
                        if len(group) > 1 else "")
            for g in group[1:]:
                log.debug("conflicting duplicate from %s (%s): %s", g[3], dev, g[5])
        device_store.add_conflicts(c, rows)
        self.counters["quarantined.conflicting_duplicate"] += len(rows)
        self.counters["readings.conflicts"] += len(rows)
        return alerts

    @staticmethod
    def _known_devices(c: sqlite3.Connection, ids: set[str]) -> set[str]:
        return device_store.known_devices(c, ids)

    def _update_devices(self, c: sqlite3.Connection, batches: list[Batch], now: int
                        ) -> tuple[list[Alert], list[tuple], set[str]]:
        """Device state (last reading, seq gaps, battery) and excursion evaluation, a few statements per flush.
        Returns the alerts, per device (device, ts, temps, battery) for the health rules, and the devices on
        a calibration bench (judged by calibration rules, not by a profile: coldtrace/services/device_roles.py)."""
        groups = _group(batches)
        if not groups:
            return [], [], set()
        ids = list(groups)
        device_store.ensure_devices(c, ids, now)
        state = device_store.device_states(c, ids)
        sroles = session_roles(c)
        bench: set[str] = set()
        alerts: list[Alert] = []
        updates = []
        health_items: list[tuple] = []  # (device, ts, temps, battery) for the health rules
        for dev, dev_batches in groups.items():
            _, last_ts, last_seq, profile_id, evaluated_ts, role, kind, judged_from = state[dev]
            if on_bench(role, kind, sroles.get(dev)):
                bench.add(dev)
            ts, temps = ts_temps([b.readings for b in dev_batches])  # columns: no Reading tuple built here
            alerts.extend(seq_gap_alerts(dev, dev_batches, last_seq, last_ts, now))  # device.data_gap
            gaps = 0
            for b in dev_batches:
                if b.seq is not None:
                    if last_seq is not None and b.seq > last_seq + 1:
                        gaps += b.seq - last_seq - 1
                    last_seq = b.seq if last_seq is None else max(last_seq, b.seq)
            battery = next((b.battery_pct for b in reversed(dev_batches) if b.battery_pct is not None), None)
            health_items.append((dev, ts, temps, battery))
            new_ts = new_temp = None
            if ts:
                newest = max(ts)
                if last_ts is None or newest >= last_ts:
                    new_ts, new_temp = newest, temps[ts.index(newest)]  # the first reading at the newest ts
            if judged_from is not None:
                keep = [i for i, t in enumerate(ts) if t >= judged_from]
                ts, temps = [ts[i] for i in keep], [temps[i] for i in keep]
            if ts and dev not in bench:
                self.judged.floor[dev] = judged_from
                alerts.extend(self.live.evaluate_columns(c, dev, self.profile(profile_id), ts, temps, evaluated_ts,
                                                         now))
                evaluated_ts = self.live.last_ts(dev)
            updates.append((now, last_seq, gaps, battery, new_ts, new_ts, new_temp, evaluated_ts, dev))
        self.live.write_checkpoints(c)
        device_store.update_device_states(c, updates)
        return alerts, health_items, bench

    # ---- alerts ---------------------------------------------------------------------------------------
    def emit(self, c: sqlite3.Connection, alerts: Sequence[Alert], now: int | None = None) -> int:
        """Insert alerts (idempotent by id) and, for each new one, its webhook outbox row. Caller's txn."""
        now = self.clock.now_ms() if now is None else now
        new = 0
        for a in alerts:
            if alert_store.insert_alert(c, a, now, json.dumps(a.data)):
                new += 1
                alert_store.insert_outbox(c, webhooks.outbox_row(a, created_at=now))
                self.counters[f"alerts.{a.type}"] += 1
                log.debug("alert %s %s device=%s", a.type, a.severity, a.device_id)  # per alert: DEBUG
        return new

    def emit_now(self, alerts: Sequence[Alert]) -> int:
        """Emit alerts in a transaction of their own (clock-driven checks, API actions)."""
        with self.db.write() as c:
            n = self.emit(c, alerts)
        if n:
            self.alerts_emitted.set()
        return n

    def record_status(self, device_id: str, online: bool | None, raw: str, *, topic: str | None = None,
                      source: str = "mqtt") -> bool:
        """A device's birth message or last will (retained status topic). With ``require_registration`` a
        status message never registers a device: one for an unregistered device is quarantined
        ``unknown_device`` (returns False). Without it, a status registers its device as a reading would."""
        now = self.clock.now_ms()
        if not valid_device_id(device_id):
            self.quarantine(source=source, reason="schema", topic=topic, raw=raw.encode("utf-8", "replace"),
                            detail=f"status message for device id {device_id[:100]!r}, which does not match"
                                   " ^[A-Za-z0-9._-]{1,64}$")
            return False
        with self.db.write() as c:
            if not self.require_registration:
                device_store.ensure_device(c, device_id, now)
            if device_store.set_status(c, device_id, raw[:4096], online):
                return True
        self.quarantine(source=source, reason="unknown_device", topic=topic, device_id=device_id,
                        raw=raw.encode("utf-8", "replace"),
                        detail=f"status message of device {device_id!r}, which is not registered")
        return False

    def quarantine(self, *, source: str, reason: str, detail: str, raw: bytes | None = None,
                   topic: str | None = None, device_id: str | None = None) -> None:
        """Quarantine something that never reached the decoder (bad topic, serial line...)."""
        now = self.clock.now_ms()
        row = (now, _clean(source, 100), None if topic is None else _clean(topic, 1000),
               None if device_id is None else _clean(device_id, 200), reason, _clean(detail, 2000),
               None if raw is None else bytes(raw[:RAW_CAP]))
        with self.db.write() as c:
            device_store.add_quarantine(c, row)
        self.counters[f"quarantined.{reason}"] += 1
        log.warning("quarantined from %s (%s): %s: %s", source, device_id or topic, reason, detail)

    def tick(self, now_ms: int | None = None) -> int:
        """Clock-driven checks (device health, escalation...). Returns the number of new alerts."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        with self._lock, self.db.write() as c:
            alerts = self.health.tick(c, now, lambda pid: self.profile(pid).offline_after_ms)
            n = self.emit(c, alerts, now) if alerts else 0
        if n:
            self.alerts_emitted.set()
        return n


class JudgedReadings:
    """The reading store as the excursion engine sees it: a device's readings before its ``judged_from``
    (taken on a calibration bench) are left out, so a re-evaluation never judges them by a profile."""

    def __init__(self, inner: ReadingStore) -> None:
        self.inner = inner
        self.floor: dict[str, int | None] = {}

    def arrays(self, device_id: str, start: int | None = None, end: int | None = None):
        f = self.floor.get(device_id)
        if f is not None and (start is None or start < f):
            start = f
        return self.inner.arrays(device_id, start, end)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def _group(batches: Iterable[Batch]) -> dict[str, list[Batch]]:
    out: dict[str, list[Batch]] = {}
    for b in batches:
        out.setdefault(b.device_id, []).append(b)
    return out

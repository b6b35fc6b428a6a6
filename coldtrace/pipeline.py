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

from . import webhooks
from .clock import Clock
from .data_loss import seq_gap_alerts
from .device_roles import on_bench, session_roles
from .health_store import HealthTracker
from .live_evaluation import LiveEvaluator
from .model import BUILTIN_PROFILES, Alert, Batch, ParseResult, Profile, Reading, Rejection
from .payload import parse_payload
from .ports import ReadingStore
from .store.db import Database

log = logging.getLogger(__name__)

RAW_CAP = 64 * 1024


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
        # MQTT sources besides coldtrace/v1 (LoRaWAN network servers: coldtrace/lorawan.py), set by wiring
        self.topic_sources: list = []
        self._ensure_builtin_profiles()
        row = self.db.query_one("SELECT value FROM meta WHERE key = 'config_version'")
        self._config_version = row[0] if row else None

    # ---- profiles -------------------------------------------------------------------------------------
    def _ensure_builtin_profiles(self) -> None:
        now = self.clock.now_ms()
        with self.db.write() as c:
            for p in BUILTIN_PROFILES.values():
                c.execute("INSERT OR IGNORE INTO profiles (id, name, body, builtin, updated_at, updated_by)"
                          " VALUES (?,?,?,1,?,'system')", (p.id, p.name, json.dumps(p.to_dict()), now))

    def profile(self, profile_id: str | None) -> Profile:
        pid = profile_id or self.default_profile
        p = self._profiles.get(pid)
        if p is None:
            row = self.db.query_one("SELECT body FROM profiles WHERE id = ?", (pid,))
            if row is None:
                p = BUILTIN_PROFILES[self.default_profile]
            else:
                p = Profile.from_dict(json.loads(row[0]))
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
        row = c.execute("SELECT value FROM meta WHERE key = 'config_version'").fetchone()
        version = row[0] if row else None
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

        ``decoded``: the messages' ``decode()`` results when the caller already has them."""
        now = self.clock.now_ms()
        batches: list[Batch] = []
        quarantine: list[tuple] = []
        result = IngestResult()
        for i, m in enumerate(messages):
            pr = decoded[i] if decoded is not None else self.decode(m, now)
            dev = pr.batch.device_id if pr.batch else m.topic_device_id
            raw = m.data[:RAW_CAP]
            for rej in pr.rejections:
                quarantine.append((now, m.source, m.topic, dev, rej.reason, rej.detail, rej.index, raw))
                result.rejected.append(rej)
            if pr.batch is not None:
                batches.append(pr.batch)
        self._commit(batches, quarantine, result, now)
        return result

    def ingest_batches(self, batches: Sequence[Batch], rejections: Iterable[tuple[str | None, Rejection]] = (),
                       source: str = "serial") -> IngestResult:
        """Already decoded batches (serial sources); ``rejections`` are (device_id, Rejection) to quarantine."""
        now = self.clock.now_ms()
        result = IngestResult()
        quarantine = []
        for dev, rej in rejections:
            quarantine.append((now, source, None, dev, rej.reason, rej.detail, rej.index, None))
            result.rejected.append(rej)
        self._commit(list(batches), quarantine, result, now)
        return result

    def _commit(self, batches: list[Batch], quarantine: list[tuple], result: IngestResult, now: int) -> None:
        try:
            self._commit_locked(batches, quarantine, result, now)
        except BaseException:
            self.live.forget()  # engines may have moved past what the rolled-back transaction stored
            raise
        # counted after the commit, so a counter never runs ahead of what a reader can see
        self.counters["readings.accepted"] += result.accepted
        self.counters["readings.duplicates"] += result.duplicates
        self.counters["messages"] += len(batches)
        if result.alerts:
            self.alerts_emitted.set()

    def _commit_locked(self, batches: list[Batch], quarantine: list[tuple], result: IngestResult, now: int
                       ) -> None:
        with self._lock, self.db.write() as c:
            self._follow_config(c)
            if self.require_registration and batches:
                known = self._known_devices(c, {b.device_id for b in batches})
                kept = []
                for b in batches:
                    if b.device_id in known:
                        kept.append(b)
                    else:
                        rej = Rejection("unknown_device", f"device {b.device_id!r} is not registered")
                        quarantine.append((now, b.source, None, b.device_id, rej.reason, rej.detail, None, None))
                        result.rejected.append(rej)
                batches = kept
            if quarantine:
                c.executemany("INSERT INTO quarantine (received_at, source, topic, device_id, reason, detail,"
                              " reading_index, raw) VALUES (?,?,?,?,?,?,?,?)", quarantine)
                for q in quarantine:
                    self.counters[f"quarantined.{q[4]}"] += 1
                    log.warning("quarantined from %s (%s): %s: %s", q[1], q[3], q[4], q[5])
            all_readings = [r for b in batches for r in b.readings]
            if all_readings:
                wr = self.readings.write(all_readings)
                result.accepted += wr.accepted
                result.duplicates += wr.duplicates
            alerts, health_items, bench = self._update_devices(c, batches, now)
            oor = Counter(q[3] for q in quarantine if q[4] == "out_of_range" and q[3])
            alerts += self.health.on_flush(c, health_items, oor, now, bench=bench)
            if alerts:
                result.alerts += self.emit(c, alerts, now)

    @staticmethod
    def _known_devices(c: sqlite3.Connection, ids: set[str]) -> set[str]:
        marks = ",".join("?" * len(ids))
        return {r[0] for r in c.execute(f"SELECT id FROM devices WHERE id IN ({marks})", tuple(ids))}

    def _update_devices(self, c: sqlite3.Connection, batches: list[Batch], now: int
                        ) -> tuple[list[Alert], list[tuple], set[str]]:
        """Device state (last reading, seq gaps, battery) and excursion evaluation, a few statements per flush.
        Returns the alerts, per device (device, ts, temps, battery) for the health rules, and the devices on
        a calibration bench (judged by calibration rules, not by a profile: coldtrace/device_roles.py)."""
        groups = _group(batches)
        if not groups:
            return [], [], set()
        ids = list(groups)
        c.executemany("INSERT OR IGNORE INTO devices (id, registered_at) VALUES (?,?)", [(d, now) for d in ids])
        state: dict[str, tuple] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for r in c.execute(f"SELECT id, last_ts, last_seq, profile_id, evaluated_ts, role, kind, judged_from"
                               f" FROM devices WHERE id IN ({marks})", chunk):
                state[r[0]] = tuple(r)
        sroles = session_roles(c)
        bench: set[str] = set()
        alerts: list[Alert] = []
        updates = []
        health_items: list[tuple] = []  # (device, ts, temps, battery) for the health rules
        for dev, dev_batches in groups.items():
            _, last_ts, last_seq, profile_id, evaluated_ts, role, kind, judged_from = state[dev]
            if on_bench(role, kind, sroles.get(dev)):
                bench.add(dev)
            readings = [r for b in dev_batches for r in b.readings]
            alerts.extend(seq_gap_alerts(dev, dev_batches, last_seq, last_ts, now))  # device.data_gap
            gaps = 0
            for b in dev_batches:
                if b.seq is not None:
                    if last_seq is not None and b.seq > last_seq + 1:
                        gaps += b.seq - last_seq - 1
                    last_seq = b.seq if last_seq is None else max(last_seq, b.seq)
            battery = next((b.battery_pct for b in reversed(dev_batches) if b.battery_pct is not None), None)
            health_items.append((dev, [r.ts for r in readings], [r.temp_c for r in readings], battery))
            newest = max(readings, key=lambda r: r.ts) if readings else None
            new_ts = new_temp = None
            if newest is not None and (last_ts is None or newest.ts >= last_ts):
                new_ts, new_temp = newest.ts, newest.temp_c
            judged = readings if judged_from is None else [r for r in readings if r.ts >= judged_from]
            if judged and dev not in bench:
                self.judged.floor[dev] = judged_from
                alerts.extend(self._evaluate(c, dev, profile_id, judged, evaluated_ts, now))
                evaluated_ts = self.live.last_ts(dev)
            updates.append((now, last_seq, gaps, battery, new_ts, new_ts, new_temp, evaluated_ts, dev))
        self.live.write_checkpoints(c)
        c.executemany(
            "UPDATE devices SET last_seen_at = ?, last_seq = ?, seq_gaps = seq_gaps + ?,"
            " battery_pct = COALESCE(?, battery_pct), last_ts = COALESCE(?, last_ts),"
            " last_temp_c = CASE WHEN ? IS NULL THEN last_temp_c ELSE ? END, evaluated_ts = ? WHERE id = ?",
            updates)
        return alerts, health_items, bench

    # ---- excursions -----------------------------------------------------------------------------------
    def _evaluate(self, c: sqlite3.Connection, dev: str, profile_id: str | None, readings: list[Reading],
                  evaluated_ts: int | None, now: int) -> list[Alert]:
        return self.live.evaluate(c, dev, self.profile(profile_id), readings, evaluated_ts, now)

    # ---- alerts ---------------------------------------------------------------------------------------
    def emit(self, c: sqlite3.Connection, alerts: Sequence[Alert], now: int | None = None) -> int:
        """Insert alerts (idempotent by id) and, for each new one, its webhook outbox row. Caller's txn."""
        now = self.clock.now_ms() if now is None else now
        new = 0
        for a in alerts:
            cur = c.execute(
                "INSERT OR IGNORE INTO alerts (id, type, severity, device_id, shipment_id, excursion_id, ts,"
                " created_at, data) VALUES (?,?,?,?,?,?,?,?,?)",
                (a.id, a.type, a.severity, a.device_id, a.shipment_id, a.excursion_id, a.ts, now,
                 json.dumps(a.data)),
            )
            if cur.rowcount == 1:
                new += 1
                c.execute(webhooks.OUTBOX_INSERT_SQL, webhooks.outbox_row(a, created_at=now))
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

    def record_status(self, device_id: str, online: bool | None, raw: str) -> None:
        """A device's birth message or last will (retained status topic)."""
        now = self.clock.now_ms()
        with self.db.write() as c:
            c.execute("INSERT OR IGNORE INTO devices (id, registered_at) VALUES (?,?)", (device_id, now))
            c.execute("UPDATE devices SET status_json = ?, online = COALESCE(?, online) WHERE id = ?",
                      (raw[:4096], None if online is None else int(online), device_id))

    def quarantine(self, *, source: str, reason: str, detail: str, raw: bytes | None = None,
                   topic: str | None = None, device_id: str | None = None) -> None:
        """Quarantine something that never reached the decoder (bad topic, serial line...)."""
        now = self.clock.now_ms()
        with self.db.write() as c:
            c.execute("INSERT INTO quarantine (received_at, source, topic, device_id, reason, detail,"
                      " reading_index, raw) VALUES (?,?,?,?,?,?,NULL,?)",
                      (now, source, topic, device_id, reason, detail, None if raw is None else raw[:RAW_CAP]))
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

"""The gateway's store-and-forward spool: messages wait here until the broker acknowledged them.

Contract (``Spool``, one test suite for both implementations, tests/unit/test_spool.py):
- ``put`` appends a message and gives it the next ``seq`` of its device (persisted, so the collector's gap
  count sees what an edge lost: a message rejected by a full spool still consumes its seq number).
- ``peek`` returns the oldest messages, in order; ``ack`` deletes them (only after the broker's PUBACK).
- A size limit (bytes and/or readings) with an explicit policy when full: ``reject-new`` refuses the new
  message (loud warning, counters), ``drop-oldest`` deletes the oldest until it fits (warning, counters).
  Messages are kept or lost whole, so a full spool may hold up to one message's worth less than its limit;
  every reading offered is either spooled or counted as rejected/dropped.
- ``full`` turns true when a put had to reject or drop, and stays true until an ``ack`` frees room (delivery
  resumed): a smaller message that still fits afterwards does not make a spool at its limit look healthy.
- ``SqliteSpool`` is its own SQLite file (WAL, synchronous FULL by default): a committed ``put`` survives
  SIGKILL and power loss; an ``ack`` lost to a crash only means one more (idempotent) delivery.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from coldtrace.core.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

POLICIES = ("reject-new", "drop-oldest")
Encode = Callable[[int], bytes]  # seq -> payload


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    device_id: str
    seq: int
    payload: bytes
    readings: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class PutResult:
    accepted: bool
    id: int | None
    seq: int
    dropped_entries: int = 0
    dropped_readings: int = 0


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    entries: int
    readings: int
    bytes: int
    max_bytes: int | None
    max_readings: int | None
    policy: str
    full: bool  # a put had to reject or drop, and no ack has freed room since
    rejected_entries: int
    rejected_readings: int
    dropped_entries: int
    dropped_readings: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Spool(Protocol):
    def put(self, device_id: str, encode: Encode, readings: int, now_ms: int) -> PutResult: ...
    def peek(self, after_id: int = 0, limit: int = 100) -> list[Entry]: ...
    def ack(self, ids: Iterable[int]) -> int: ...
    def status(self) -> SpoolStatus: ...
    def close(self) -> None: ...


class _Limits:
    """The size/policy bookkeeping both implementations share."""

    def __init__(self, max_bytes: int | None, max_readings: int | None, policy: str) -> None:
        if policy not in POLICIES:
            raise ConfigError(f"spool policy must be one of {POLICIES}, not {policy!r}")
        for name, v in (("max_bytes", max_bytes), ("max_readings", max_readings)):
            if v is not None and v <= 0:
                raise ConfigError(f"spool {name} must be positive")
        self.max_bytes, self.max_readings, self.policy = max_bytes, max_readings, policy
        self.entries = self.readings = self.bytes = 0
        self.full = False
        self.counters = {"rejected_entries": 0, "rejected_readings": 0, "dropped_entries": 0,
                         "dropped_readings": 0}

    def fits(self, extra_bytes: int, extra_readings: int, base_bytes: int, base_readings: int) -> bool:
        return ((self.max_bytes is None or base_bytes + extra_bytes <= self.max_bytes)
                and (self.max_readings is None or base_readings + extra_readings <= self.max_readings))

    def status(self) -> SpoolStatus:
        return SpoolStatus(self.entries, self.readings, self.bytes, self.max_bytes, self.max_readings,
                           self.policy, self.full, **self.counters)

    def warn_rejected(self, device_id: str, readings: int) -> None:
        log.warning("SPOOL FULL (policy reject-new): %d readings of %s REJECTED; spool holds %d readings, "
                    "%d bytes; %d readings rejected so far", readings, device_id, self.readings, self.bytes,
                    self.counters["rejected_readings"])

    def warn_dropped(self, entries: int, readings: int) -> None:
        log.warning("SPOOL FULL (policy drop-oldest): dropped the %d oldest messages (%d readings); %d readings "
                    "dropped so far", entries, readings, self.counters["dropped_readings"])


class MemorySpool:
    """In-memory spool (tests, and a gateway explicitly configured to trade durability for no disk)."""

    def __init__(self, max_bytes: int | None = None, max_readings: int | None = None,
                 policy: str = "reject-new") -> None:
        self._lim = _Limits(max_bytes, max_readings, policy)
        self._items: OrderedDict[int, Entry] = OrderedDict()
        self._seq: dict[str, int] = {}
        self._next = 1
        self._lock = threading.Lock()

    def put(self, device_id: str, encode: Encode, readings: int, now_ms: int) -> PutResult:
        with self._lock:
            lim = self._lim
            seq = self._seq[device_id] = self._seq.get(device_id, 0) + 1
            payload = encode(seq)
            dropped_e = dropped_r = 0
            if not lim.fits(len(payload), readings, lim.bytes, lim.readings):
                if lim.policy == "reject-new" or not lim.fits(len(payload), readings, 0, 0):
                    return self._reject(device_id, seq, readings)
                while self._items and not lim.fits(len(payload), readings, lim.bytes, lim.readings):
                    _, old = self._items.popitem(last=False)
                    lim.entries, lim.readings, lim.bytes = (lim.entries - 1, lim.readings - old.readings,
                                                            lim.bytes - len(old.payload))
                    dropped_e, dropped_r = dropped_e + 1, dropped_r + old.readings
                lim.counters["dropped_entries"] += dropped_e
                lim.counters["dropped_readings"] += dropped_r
                lim.warn_dropped(dropped_e, dropped_r)
                lim.full = True
            e = Entry(self._next, device_id, seq, payload, readings, now_ms)
            self._next += 1
            self._items[e.id] = e
            lim.entries, lim.readings, lim.bytes = lim.entries + 1, lim.readings + readings, lim.bytes + len(payload)
            return PutResult(True, e.id, seq, dropped_e, dropped_r)

    def _reject(self, device_id: str, seq: int, readings: int) -> PutResult:
        lim = self._lim
        lim.full = True
        lim.counters["rejected_entries"] += 1
        lim.counters["rejected_readings"] += readings
        lim.warn_rejected(device_id, readings)
        return PutResult(False, None, seq)

    def peek(self, after_id: int = 0, limit: int = 100) -> list[Entry]:
        with self._lock:
            out = []
            for k, e in self._items.items():
                if k > after_id:
                    out.append(e)
                    if len(out) >= limit:
                        break
            return out

    def ack(self, ids: Iterable[int]) -> int:
        n = 0
        with self._lock:
            for i in ids:
                e = self._items.pop(i, None)
                if e is not None:
                    n += 1
                    lim = self._lim
                    lim.entries, lim.readings, lim.bytes = (lim.entries - 1, lim.readings - e.readings,
                                                            lim.bytes - len(e.payload))
                    lim.full = False
        return n

    def status(self) -> SpoolStatus:
        with self._lock:
            return self._lim.status()

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL,
    seq INTEGER NOT NULL, created_ms INTEGER NOT NULL, readings INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class SqliteSpool:
    """The durable spool: one SQLite file, owned by one gateway (an flock on ``<path>.lock`` says so)."""

    def __init__(self, path: str | Path, max_bytes: int | None = None, max_readings: int | None = None,
                 policy: str = "reject-new", synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._lim = _Limits(max_bytes, max_readings, policy)
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ConfigError("spool synchronous must be NORMAL, FULL or EXTRA (OFF would lose data)")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lockfd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create spool {self.path}: {exc}") from exc
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lockfd)
            raise StoreError(f"spool {self.path} is in use by another gateway") from exc
        try:
            self._c = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                      timeout=30)
            self._c.execute("PRAGMA journal_mode=WAL")
            self._c.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._c.executescript(_SCHEMA)
            row = self._c.execute("SELECT count(*), coalesce(sum(readings),0), "
                                  "coalesce(sum(length(payload)),0) FROM spool").fetchone()
            self._lim.entries, self._lim.readings, self._lim.bytes = row
            for k in self._lim.counters:
                v = self._c.execute("SELECT value FROM meta WHERE key = ?", (k,)).fetchone()
                self._lim.counters[k] = v[0] if v else 0
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot open spool {self.path}: {exc}") from exc
        if self._lim.entries:
            log.info("spool %s: %d messages (%d readings) waiting from before", self.path, self._lim.entries,
                     self._lim.readings)

    def _bump(self, key: str, by: int) -> int:
        return self._c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                               "value = value + excluded.value RETURNING value", (key, by)).fetchone()[0]

    def put(self, device_id: str, encode: Encode, readings: int, now_ms: int) -> PutResult:
        lim = self._lim
        with self._lock:
            try:
                self._c.execute("BEGIN IMMEDIATE")
                try:
                    seq = self._bump(f"seq:{device_id}", 1)
                    payload = encode(seq)
                    result = self._put_locked(device_id, seq, payload, readings, now_ms)
                    self._c.execute("COMMIT")
                except BaseException:
                    self._c.execute("ROLLBACK")
                    self._reload_totals()
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"spool write failed: {exc}") from exc
        if not result.accepted:
            lim.warn_rejected(device_id, readings)
        elif result.dropped_entries:
            lim.warn_dropped(result.dropped_entries, result.dropped_readings)
        return result

    def _put_locked(self, device_id: str, seq: int, payload: bytes, readings: int, now_ms: int) -> PutResult:
        lim = self._lim
        dropped_e = dropped_r = 0
        if not lim.fits(len(payload), readings, lim.bytes, lim.readings):
            if lim.policy == "reject-new" or not lim.fits(len(payload), readings, 0, 0):
                lim.full = True
                lim.counters["rejected_entries"] = self._bump("rejected_entries", 1)
                lim.counters["rejected_readings"] = self._bump("rejected_readings", readings)
                return PutResult(False, None, seq)
            cur = self._c.execute("SELECT id, readings, length(payload) FROM spool ORDER BY id")
            victims = []
            b, r = lim.bytes, lim.readings
            for vid, vr, vb in cur:
                if lim.fits(len(payload), readings, b, r):
                    break
                victims.append(vid)
                b, r, dropped_r = b - vb, r - vr, dropped_r + vr
            cur.close()
            dropped_e = len(victims)
            self._c.executemany("DELETE FROM spool WHERE id = ?", [(v,) for v in victims])
            lim.entries, lim.readings, lim.bytes = lim.entries - dropped_e, r, b
            lim.counters["dropped_entries"] = self._bump("dropped_entries", dropped_e)
            lim.counters["dropped_readings"] = self._bump("dropped_readings", dropped_r)
            lim.full = True
        cur = self._c.execute("INSERT INTO spool (device_id, seq, created_ms, readings, payload) "
                              "VALUES (?,?,?,?,?)", (device_id, seq, now_ms, readings, payload))
        lim.entries, lim.readings, lim.bytes = lim.entries + 1, lim.readings + readings, lim.bytes + len(payload)
        return PutResult(True, cur.lastrowid, seq, dropped_e, dropped_r)

    def _reload_totals(self) -> None:
        row = self._c.execute("SELECT count(*), coalesce(sum(readings),0), coalesce(sum(length(payload)),0) "
                              "FROM spool").fetchone()
        self._lim.entries, self._lim.readings, self._lim.bytes = row

    def peek(self, after_id: int = 0, limit: int = 100) -> list[Entry]:
        with self._lock:
            try:
                rows = self._c.execute("SELECT id, device_id, seq, payload, readings, created_ms FROM spool "
                                       "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"spool read failed: {exc}") from exc
        return [Entry(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    def ack(self, ids: Iterable[int]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        lim = self._lim
        with self._lock:
            try:
                self._c.execute("BEGIN IMMEDIATE")
                gone = []
                for i in ids:
                    gone += self._c.execute("DELETE FROM spool WHERE id = ? RETURNING readings, "
                                            "length(payload)", (i,)).fetchall()
                self._c.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._c.in_transaction:
                    self._c.execute("ROLLBACK")
                raise StoreError(f"spool delete failed: {exc}") from exc
            lim.entries -= len(gone)
            lim.readings -= sum(g[0] for g in gone)
            lim.bytes -= sum(g[1] for g in gone)
            if gone:
                lim.full = False
        return len(gone)

    def status(self) -> SpoolStatus:
        with self._lock:
            return self._lim.status()

    def close(self) -> None:
        c = getattr(self, "_c", None)
        if c is not None:
            try:
                c.close()
            except sqlite3.Error:
                pass
            self._c = None  # type: ignore[assignment]
        fd = getattr(self, "_lockfd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            self._lockfd = None


def read_depth(path: str | Path) -> tuple[int, int]:
    """(messages, readings) waiting in a spool file, read without taking it over (monitoring, tests)."""
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = c.execute("SELECT count(*), coalesce(sum(readings),0) FROM spool").fetchone()
        finally:
            c.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read spool {path}: {exc}") from exc
    return int(row[0]), int(row[1])

"""ReadingStore in the metadata database, one statement text for both dialects (docs/CONVENTIONS.md).

The ``readings`` table is keyed (device_id, ts): SQLite's is a WITHOUT ROWID table (the key is the storage
order), PostgreSQL's a heap with the primary key's b-tree and a BRIN index on ts (docs/ARCHITECTURE.md, "Store").
``INSERT ... ON CONFLICT (device_id, ts) DO NOTHING`` keeps the first value of a key, and its row count says
how many were new; the duplicates whose value differs are looked up afterwards and reported as conflicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from coldtrace.core.model import Reading
from coldtrace.ports import Bucket, Conflict, WriteResult
from coldtrace.store import rollup
from coldtrace.store.db import Database, insert_many

_INSERT_HEAD = "INSERT INTO readings (device_id, ts, temp_c, seq) VALUES"
_INSERT_TAIL = "ON CONFLICT (device_id, ts) DO NOTHING"


class SqlReadingStore:
    """The readings of ``db`` (a SQLite ``Database`` or a ``PostgresDatabase``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        if not readings:
            return WriteResult(0, 0)
        rows = readings  # Reading is the row tuple (device_id, ts, temp_c, seq)
        with self.db.write() as c:  # a failure is a StoreError (the database's write())
            accepted = insert_many(c, _INSERT_HEAD, rows, 4, _INSERT_TAIL)
            if accepted:
                rollup.record_inserts(c, rows, all_new=accepted == len(rows))
            conflicts = self._conflicts(c, rows) if accepted < len(rows) else ()
        return WriteResult(accepted, len(rows) - accepted, conflicts)

    @staticmethod
    def _conflicts(c: Any, rows: Sequence[Reading]) -> tuple[Conflict, ...]:
        """Some rows were not inserted: those whose stored value differs (one range query per device; only
        when a write had duplicates, so the common path pays nothing)."""
        ranges: dict[str, tuple[int, int]] = {}
        for r in rows:
            lo, hi = ranges.get(r.device_id, (r.ts, r.ts))
            ranges[r.device_id] = (min(lo, r.ts), max(hi, r.ts))
        stored: dict[tuple[str, int], tuple[float, int | None]] = {}
        for dev, (lo, hi) in ranges.items():
            for ts, temp, seq in c.execute("SELECT ts, temp_c, seq FROM readings WHERE device_id = ? AND ts >= ?"
                                           " AND ts <= ?", (dev, lo, hi)):
                stored[(dev, ts)] = (temp, seq)
        out = []
        for r in rows:
            s = stored.get((r.device_id, r.ts))
            if s is not None and s[0] != r.temp_c:
                out.append(Conflict(r, s[0], s[1]))
        return tuple(out)

    @staticmethod
    def _range(device_id: str, start: int | None, end: int | None) -> tuple[str, list]:
        where, params = "device_id = ?", [device_id]
        if start is not None:
            where += " AND ts >= ?"
            params.append(start)
        if end is not None:
            where += " AND ts < ?"
            params.append(end)
        return where, params

    def query(self, device_id: str, start: int | None = None, end: int | None = None,
              limit: int | None = None, descending: bool = False) -> list[Reading]:
        where, params = self._range(device_id, start, end)
        sql = f"SELECT device_id, ts, temp_c, seq FROM readings WHERE {where} ORDER BY ts"
        if descending:
            sql += " DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [Reading(r[0], r[1], r[2], r[3]) for r in self.db.query(sql, tuple(params))]

    def arrays(self, device_id: str, start: int | None = None, end: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        where, params = self._range(device_id, start, end)
        rows = self.db.query(f"SELECT ts, temp_c FROM readings WHERE {where} ORDER BY ts", tuple(params))
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        arr = np.array(rows, dtype=np.float64)
        return arr[:, 0].astype(np.int64), arr[:, 1].copy()

    def downsample(self, device_id: str, start: int, end: int, interval_ms: int) -> list[Bucket]:
        interval_ms = max(1, int(interval_ms))
        if rollup.covers(start, end, interval_ms):  # long aligned charts: the 10-minute rollup, same answer
            return rollup.downsample(self.db, device_id, start, end, interval_ms)
        rows = self.db.query(
            "SELECT (ts - ?) / ? AS b, MIN(temp_c), MAX(temp_c), AVG(temp_c), COUNT(*) FROM readings"
            " WHERE device_id = ? AND ts >= ? AND ts < ? GROUP BY b ORDER BY b",
            (start, interval_ms, device_id, start, end),
        )
        return [Bucket(start + r[0] * interval_ms, r[1], r[2], r[3], r[4]) for r in rows]

    def count(self, device_id: str | None = None) -> int:
        if device_id is None:
            row = self.db.query_one("SELECT COUNT(*) FROM readings")
        else:
            row = self.db.query_one("SELECT COUNT(*) FROM readings WHERE device_id = ?", (device_id,))
        return int(row[0]) if row else 0

    def close(self) -> None:
        pass

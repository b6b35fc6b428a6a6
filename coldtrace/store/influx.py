"""ReadingStore on InfluxDB (1.x, 2.x through the v1 compatibility API, 3.x): line protocol in, InfluxQL out.

Schema (PROTOCOLS.md): measurement ``reading``, tag ``device_id``, field ``temp_c`` (float), optional field
``seq`` (integer), millisecond timestamps. A point's identity in InfluxDB is (measurement, tags, time), i.e.
exactly our key (device_id, ts), so a redelivered reading overwrites itself and the series never doubles.

Duplicates are reported honestly, the same way SQLite reports them: before writing, one InfluxQL query per
device asks which timestamps of the batch's time range already exist; those readings are not re-sent (the
first stored value wins, as with SQLite's INSERT OR IGNORE) and are counted as duplicates. Within one
process writes are serialised so the check and the write do not race; across processes two collectors can
only both count the same reading as new if the broker delivered it to both, and the stored series is still
right because the point overwrites itself.

Batching: ``write()`` is synchronous because the pipeline acknowledges an MQTT message only once its
readings are stored; it sends gzip POSTs of at most ``batch_size`` lines and returns when all succeeded.
Lingering for ``flush_interval_s`` there would cap a single-threaded collector at one message a second,
so the linger applies to :meth:`InfluxReadingStore.buffered`, the fire-and-forget writer for bulk loads
(backfills, benchmarks) that flushes at ``batch_size`` lines or every ``flush_interval_s``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from coldtrace.core.errors import StoreError
from coldtrace.core.model import Reading
from coldtrace.ports import Bucket, Conflict, WriteResult
from coldtrace.store.influx_http import DatabaseNotFound, InfluxHTTP, quote_string

log = logging.getLogger(__name__)

MEASUREMENT = "reading"
_TAG_ESCAPE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STATEMENTS_PER_QUERY = 100


def line(r: Reading) -> str:
    """One reading as line protocol with ms timestamp (escaping as influxdb-client's Point does)."""
    if not math.isfinite(r.temp_c):
        raise StoreError(f"cannot store a non-finite temperature for {r.device_id} at {r.ts}")
    if not r.device_id or any(ch in r.device_id for ch in "\\\n\r\t"):
        # InfluxDB 1.x does not unescape backslashes in tag values: such an id would not read back.
        # PROTOCOLS.md restricts device ids to [A-Za-z0-9._-], so only a hand-made id can get here.
        raise StoreError(f"device id {r.device_id!r} cannot be stored as an InfluxDB tag")
    fields = f"temp_c={float(r.temp_c)!r}"  # fields sorted by key, as Point writes them
    if r.seq is not None:
        fields = f"seq={int(r.seq)}i," + fields
    return f"{MEASUREMENT},device_id={r.device_id.translate(_TAG_ESCAPE)} {fields} {int(r.ts)}"


def _where(device_id: str, start: int | None, end: int | None) -> str:
    w = f"device_id = {quote_string(device_id)}"
    if start is not None:
        w += f" AND time >= {int(start)}ms"
    if end is not None:
        w += f" AND time < {int(end)}ms"
    return w


def _rows(results: Iterable[dict[str, Any]], statement_id: int = 0) -> list[list[Any]]:
    """The values of one statement, concatenated over chunks and series (columns start with time)."""
    out: list[list[Any]] = []
    for res in results:
        if res.get("statement_id", 0) != statement_id:
            continue
        for series in res.get("series", []):
            out.extend(series.get("values", []))
    return out


class InfluxReadingStore:
    """The time series in InfluxDB. Construct from settings with ``coldtrace.store.open_reading_store``."""

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, batch_size: int = 5000, flush_interval_s: float = 1.0,
                 create_database: bool = True, timeout_s: float = 10.0, retry_budget_s: float = 60.0,
                 http: InfluxHTTP | None = None) -> None:
        if not 1 <= batch_size <= 100_000:
            raise StoreError(f"InfluxDB batch_size must be 1..100000, got {batch_size}")
        self.http = http or InfluxHTTP(url, database, username=username, password=password, token=token,
                                       timeout_s=timeout_s, retry_budget_s=retry_budget_s)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._create = create_database
        self._db_ready = False
        self._write_lock = threading.Lock()

    def _ensure_database(self) -> None:
        if not self._db_ready and self._create:
            self.http.create_database()
        self._db_ready = True

    # -- writes -------------------------------------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        if not readings:
            return WriteResult(0, 0)
        with self._write_lock:
            self._ensure_database()
            fresh: dict[tuple[str, int], Reading] = {}
            conflicts: list[Conflict] = []
            for r in readings:  # first one wins inside a batch, as with INSERT OR IGNORE
                first = fresh.setdefault((r.device_id, int(r.ts)), r)
                if first is not r and first.temp_c != r.temp_c:
                    conflicts.append(Conflict(r, first.temp_c, first.seq))
            for key, (temp, seq) in self._existing(fresh.values()).items():
                r = fresh.pop(key, None)
                if r is not None and r.temp_c != temp:
                    conflicts.append(Conflict(r, temp, seq))
            self._post(fresh.values())
            return WriteResult(len(fresh), len(readings) - len(fresh), tuple(conflicts))

    def _post(self, readings: Iterable[Reading]) -> None:
        chunk: list[str] = []
        for r in readings:
            chunk.append(line(r))
            if len(chunk) >= self.batch_size:
                self.http.write_lines("\n".join(chunk).encode())
                chunk = []
        if chunk:
            self.http.write_lines("\n".join(chunk).encode())

    def _existing(self, readings: Iterable[Reading]) -> dict[tuple[str, int], tuple[float, int | None]]:
        """(device_id, ts) keys of the batch already stored, with their (temp_c, seq): one statement per
        device over its range."""
        ranges: dict[str, tuple[int, int]] = {}
        for r in readings:
            lo, hi = ranges.get(r.device_id, (r.ts, r.ts))
            ranges[r.device_id] = (min(lo, r.ts), max(hi, r.ts))
        found: dict[tuple[str, int], tuple[float, int | None]] = {}
        items = list(ranges.items())
        for i in range(0, len(items), _STATEMENTS_PER_QUERY):
            group = items[i:i + _STATEMENTS_PER_QUERY]
            q = "; ".join(f"SELECT temp_c, seq FROM {MEASUREMENT} WHERE {_where(dev, lo, hi + 1)}"
                          for dev, (lo, hi) in group)
            try:
                results = list(self.http.query(q, budget_s=self.http.retry_budget_s))
            except DatabaseNotFound:
                return {}
            for sid, (dev, _) in enumerate(group):
                for row in _rows(results, sid):
                    found[(dev, int(row[0]))] = (float(row[1]), None if row[2] is None else int(row[2]))
        return found

    def buffered(self) -> BufferedWriter:
        """A background writer for bulk loads; see :class:`BufferedWriter`."""
        self._ensure_database()
        return BufferedWriter(self)

    # -- reads --------------------------------------------------------------------------------------

    def query(self, device_id: str, start: int | None = None, end: int | None = None,
              limit: int | None = None, descending: bool = False) -> list[Reading]:
        q = (f"SELECT temp_c, seq FROM {MEASUREMENT} WHERE {_where(device_id, start, end)}"
             f" ORDER BY time {'DESC' if descending else 'ASC'}")
        if limit is not None:
            q += f" LIMIT {max(0, int(limit))}"
            if int(limit) <= 0:
                return []
        return [Reading(device_id, int(t), float(v), None if s is None else int(s))
                for t, v, s in self._read(q)]

    def arrays(self, device_id: str, start: int | None = None, end: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        rows = self._read(f"SELECT temp_c FROM {MEASUREMENT} WHERE {_where(device_id, start, end)}")
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        arr = np.asarray(rows, dtype=np.float64)
        return arr[:, 0].astype(np.int64), arr[:, 1].copy()

    def downsample(self, device_id: str, start: int, end: int, interval_ms: int) -> list[Bucket]:
        """Buckets [start + k*interval, ...) as SQLite makes them: GROUP BY time with an offset = start."""
        interval_ms = max(1, int(interval_ms))
        if end <= start:
            return []
        q = (f"SELECT min(temp_c), max(temp_c), mean(temp_c), count(temp_c) FROM {MEASUREMENT}"
             f" WHERE {_where(device_id, start, end)}"
             f" GROUP BY time({interval_ms}ms, {int(start) % interval_ms}ms) fill(none)")
        return [Bucket(int(t), float(lo), float(hi), float(mean), int(n))
                for t, lo, hi, mean, n in self._read(q) if n]

    def count(self, device_id: str | None = None) -> int:
        q = f"SELECT count(temp_c) FROM {MEASUREMENT}"
        if device_id is not None:
            q += f" WHERE device_id = {quote_string(device_id)}"
        rows = self._read(q)
        return int(sum(row[1] or 0 for row in rows))

    def _read(self, q: str) -> list[list[Any]]:
        try:
            return _rows(self.http.query(q))
        except DatabaseNotFound:
            return []

    def close(self) -> None:
        self.http.close()


class BufferedWriter:
    """Fire-and-forget writes for bulk loads: flushed at ``batch_size`` lines or every ``flush_interval_s``.

    Not for the live pipeline (it cannot tell a caller that its readings are stored, and re-sent points
    overwrite rather than being counted as duplicates). ``close()`` flushes the rest and raises the first
    StoreError any flush met, so a bulk load never ends silently short.
    """

    def __init__(self, store: InfluxReadingStore) -> None:
        self.store = store
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._error: StoreError | None = None
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="influx-buffered-writer", daemon=True)
        self._thread.start()

    def add(self, readings: Iterable[Reading]) -> None:
        lines = [line(r) for r in readings]
        with self._cond:
            if self._closed:
                raise StoreError("buffered writer is closed")
            self._lines.extend(lines)
            if len(self._lines) >= self.store.batch_size:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and len(self._lines) < self.store.batch_size:
                    self._cond.wait(self.store.flush_interval_s)
                batch = self._lines[:self.store.batch_size]
                del self._lines[:self.store.batch_size]
                done = self._closed and not self._lines
            if batch:
                try:
                    self.store.http.write_lines("\n".join(batch).encode())
                    self.written += len(batch)
                except StoreError as exc:
                    log.error("buffered InfluxDB write of %d lines failed: %s", len(batch), exc)
                    self._error = self._error or exc
            if done:
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BufferedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

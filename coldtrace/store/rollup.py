"""Chart downsampling (SQLite and PostgreSQL) from the 10-minute rollup table (migration 0900_chart_rollup.sql).

Why: a chart of a year of one-minute readings groups 525,600 rows per request (~250 ms on SQLite); the rollup
holds 52,560 rows for the same year, already reduced to min/max/sum/count, so the same chart costs ~15 ms.
The result is exact (not an approximation): a rollup bucket is used only when it lies entirely inside one
chart bucket, which ``chart_grid`` guarantees by aligning long-range charts to 10-minute multiples; the part
of the range after the last whole 10-minute bucket is read from the raw readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import numpy as np

from coldtrace.core.model import Reading
from coldtrace.ports import Bucket
from coldtrace.store.db import Database, insert_many

ROLLUP_MS = 600_000
MIN_SPAN_MS = 2 * 86_400_000  # below two days the raw readings (<= 2,880 per minute logger) are as fast


def chart_grid(start: int, end: int, points: int, *, min_interval_ms: int = 1000) -> tuple[int, int]:
    """(first bucket start, interval) of a chart of [start, end) with at most ``points`` buckets.

    Short ranges keep ``start`` and an interval of ceil(span / points). Once the interval reaches 10 minutes
    it is rounded up to a multiple of 10 minutes and the grid starts at the 10-minute boundary at or before
    ``start`` (as InfluxDB's GROUP BY time() aligns to the epoch). The chart endpoint passes that start on, so
    its first bucket may hold up to 10 minutes of readings before ``from``: each bucket is honest about its
    own span [ts, ts + interval), which is what a chart draws."""
    span = max(1, end - start)
    interval = max(min_interval_ms, -(-span // max(1, points)))
    if interval < ROLLUP_MS:
        return start, interval
    interval = -(-interval // ROLLUP_MS) * ROLLUP_MS
    return start - start % ROLLUP_MS, interval


def covers(start: int, end: int, interval_ms: int) -> bool:
    """Whether ``downsample`` here gives the exact answer for this request (and is worth it)."""
    return (start >= 0 and start % ROLLUP_MS == 0 and interval_ms % ROLLUP_MS == 0
            and end - start >= MIN_SPAN_MS)


def downsample(db: Database, device_id: str, start: int, end: int, interval_ms: int) -> list[Bucket]:
    """Buckets [start + k*interval, ...) like ``SqliteReadingStore.downsample``; needs ``covers(...)``."""
    if not covers(start, end, interval_ms):
        raise ValueError("the rollup needs a 10-minute aligned start and interval")
    whole_end = end - end % ROLLUP_MS  # rollup buckets [b, b + 10 min) with b < whole_end lie before end
    acc: dict[int, list[float]] = {}
    rows = db.query(
        "SELECT (bucket - ?) / ? AS b, MIN(min_c), MAX(max_c), SUM(sum_c), SUM(n) FROM readings_rollup"
        " WHERE device_id = ? AND bucket >= ? AND bucket < ? GROUP BY b",
        (start, interval_ms, device_id, start, whole_end))
    tail = db.query(
        "SELECT (ts - ?) / ? AS b, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*) FROM readings"
        " WHERE device_id = ? AND ts >= ? AND ts < ? GROUP BY b",
        (start, interval_ms, device_id, max(start, whole_end), end))
    for b, lo, hi, total, n in [*rows, *tail]:
        cur = acc.get(b)
        if cur is None:
            acc[b] = [lo, hi, total, n]
        else:
            cur[0], cur[1], cur[2], cur[3] = min(cur[0], lo), max(cur[1], hi), cur[2] + total, cur[3] + n
    return [Bucket(start + b * interval_ms, v[0], v[1], v[2] / v[3], int(v[3])) for b, v in sorted(acc.items()) if v[3]]


_UPSERT_HEAD = "INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n) VALUES"
# portable SQL: CASE rather than SQLite's scalar MIN(a, b) (PostgreSQL's is LEAST)
_UPSERT_TAIL = ("ON CONFLICT (device_id, bucket) DO UPDATE SET"
                " min_c = CASE WHEN excluded.min_c < readings_rollup.min_c THEN excluded.min_c"
                " ELSE readings_rollup.min_c END,"
                " max_c = CASE WHEN excluded.max_c > readings_rollup.max_c THEN excluded.max_c"
                " ELSE readings_rollup.max_c END,"
                " sum_c = readings_rollup.sum_c + excluded.sum_c, n = readings_rollup.n + excluded.n")
_RECOMPUTE = ("INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)"
              " SELECT device_id, ?, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*) FROM readings"
              " WHERE device_id = ? AND ts >= ? AND ts < ? GROUP BY device_id"
              " ON CONFLICT (device_id, bucket) DO UPDATE SET min_c = excluded.min_c, max_c = excluded.max_c,"
              " sum_c = excluded.sum_c, n = excluded.n")


def _merge(out: list[tuple]) -> list[tuple]:
    acc: dict[tuple[str, int], list] = {}
    for dev, b, lo, hi, total, n in out:
        a = acc.get((dev, b))
        if a is None:
            acc[(dev, b)] = [lo, hi, total, n]
        else:
            a[0], a[1], a[2], a[3] = min(a[0], lo), max(a[1], hi), a[2] + total, a[3] + n
    return [(dev, b, *a) for (dev, b), a in acc.items()]


def record_inserts(c: Any, rows: Sequence[Reading], all_new: bool) -> None:
    """Fold a batch just written into the rollup, in the writer's transaction.

    ``all_new``: every row was inserted (the common case), so the batch is aggregated here and merged with
    one upsert per (device, bucket). Otherwise some rows were duplicates that changed nothing, and the
    touched buckets are recomputed from the readings table (exact, and rare: redeliveries)."""
    if all_new:
        out: list[tuple] = []
        # rows come grouped by message, so by device: aggregate each run of one device with numpy
        for dev, group in groupby(rows, key=itemgetter(0)):
            g = list(group)
            if len(g) < 64:  # numpy's per-call cost exceeds a small loop
                agg: dict[int, list] = {}
                for _, t, v, _ in g:
                    a = agg.get(t - t % ROLLUP_MS)
                    if a is None:
                        agg[t - t % ROLLUP_MS] = [v, v, v, 1]
                    else:
                        a[0], a[1], a[2], a[3] = min(a[0], v), max(a[1], v), a[2] + v, a[3] + 1
                out.extend((dev, b, a[0], a[1], a[2], a[3]) for b, a in agg.items())
                continue
            ts = np.fromiter(map(itemgetter(1), g), np.int64, len(g))
            vals = np.fromiter(map(itemgetter(2), g), np.float64, len(g))
            buckets = ts - ts % ROLLUP_MS
            order = np.argsort(buckets, kind="stable")
            buckets, vals = buckets[order], vals[order]
            firsts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
            counts = np.diff(np.r_[firsts, len(buckets)])
            out.extend(zip([dev] * len(firsts), buckets[firsts].tolist(), np.minimum.reduceat(vals, firsts).tolist(),
                           np.maximum.reduceat(vals, firsts).tolist(), np.add.reduceat(vals, firsts).tolist(),
                           counts.tolist(), strict=True))
        if len({(r[0], r[1]) for r in out}) < len(out):  # a device in several runs: one row per key, as
            out = _merge(out)  # PostgreSQL's upsert may not touch a row twice in one statement
        insert_many(c, _UPSERT_HEAD, out, 6, _UPSERT_TAIL)
        return
    keys = {(dev, ts - ts % ROLLUP_MS) for dev, ts, _, _ in rows}
    c.executemany(_RECOMPUTE, [(b, d, b, b + ROLLUP_MS) for d, b in keys])

"""The 10-minute rollup behind long charts gives exactly the buckets of the raw readings."""

from __future__ import annotations

import numpy as np
import pytest

from coldtrace.core.model import Reading
from coldtrace.store import rollup
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore

MINUTE = 60_000
DAY = 1440 * MINUTE
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, a 10-minute boundary


@pytest.fixture
def store(tmp_path):
    db = Database(tmp_path / "r.db", synchronous="OFF")
    yield SqliteReadingStore(db)
    db.close()


def expected(ts: np.ndarray, v: np.ndarray, start: int, end: int, step: int) -> list[tuple]:
    out = []
    for b in range(start, end, step):
        sel = v[(ts >= b) & (ts < min(b + step, end))]
        if len(sel):
            out.append((b, float(sel.min()), float(sel.max()), float(sel.mean()), len(sel)))
    return out


def check(got, want) -> None:
    assert [(b.ts, b.min_c, b.max_c, b.count) for b in got] == [(w[0], w[1], w[2], w[4]) for w in want]
    assert [b.mean_c for b in got] == pytest.approx([w[3] for w in want], rel=1e-9)


def test_rollup_equals_raw_grouping_with_gaps_duplicates_and_a_ragged_end(store):
    rng = np.random.default_rng(3)
    ts = T0 + np.sort(rng.choice(20 * 1440, 15_000, replace=False)).astype(np.int64) * MINUTE + 17_000
    v = np.round(5 + 3 * rng.standard_normal(len(ts)), 2)
    rs = [Reading("L", int(t), float(x)) for t, x in zip(ts, v, strict=True)]
    store.write(rs[::2])
    store.write(rs)  # redelivery of half of them: ignored rows must not count twice
    end = T0 + 19 * DAY + 7 * MINUTE + 3_000  # not on a 10-minute boundary: the tail comes from raw readings
    start, step = rollup.chart_grid(T0 + 4 * MINUTE, end, 500)
    assert start == T0 and step % rollup.ROLLUP_MS == 0 and rollup.covers(start, end, step)
    got = store.downsample("L", start, end, step)
    assert len(got) <= 500
    check(got, expected(ts, v, start, end, step))
    assert store.downsample("nobody", start, end, step) == []


def test_rollup_follows_deletes_and_updates(store):
    ts = T0 + np.arange(3 * 1440, dtype=np.int64) * MINUTE
    v = np.sin(np.arange(len(ts)) / 50.0) * 4 + 5
    store.write([Reading("D", int(t), float(x)) for t, x in zip(ts, v, strict=True)])
    with store.db.write() as c:
        c.execute("DELETE FROM readings WHERE device_id = 'D' AND ts = ?", (int(ts[100]),))
        c.execute("UPDATE readings SET temp_c = 42.0 WHERE device_id = 'D' AND ts = ?", (int(ts[2000]),))
    keep = np.ones(len(ts), bool)
    keep[100] = False
    v2 = v.copy()
    v2[2000] = 42.0
    end = T0 + 3 * DAY
    got = store.downsample("D", T0, end, 6 * rollup.ROLLUP_MS)
    check(got, expected(ts[keep], v2[keep], T0, end, 6 * rollup.ROLLUP_MS))


def test_short_ranges_keep_their_start_and_exact_interval():
    assert rollup.chart_grid(T0 + 5, T0 + 5 + DAY, 1000) == (T0 + 5, 86_400)
    start, step = rollup.chart_grid(T0 + 5, T0 + 365 * DAY, 1000)
    assert (start, step) == (T0, 53 * rollup.ROLLUP_MS)
    assert -(-(T0 + 365 * DAY - start) // step) <= 1000
    assert not rollup.covers(T0 + 5, T0 + 365 * DAY, step)

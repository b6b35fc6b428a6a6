"""The ReadingStore contract: one suite, run unchanged against SQLite, a real PostgreSQL and a real influxd."""

from __future__ import annotations

import numpy as np
import pytest

from coldtrace.core.excursions import evaluate, normalise_series
from coldtrace.core.model import BUILTIN_PROFILES, MINUTE, Reading
from coldtrace.ports import Bucket, WriteResult
from coldtrace.store.db import Database
from coldtrace.store.influx import InfluxReadingStore
from coldtrace.store.postgres import PostgresDatabase
from coldtrace.store.postgres_readings import PostgresReadingStore
from coldtrace.store.sqlite import SqliteReadingStore

T0 = 1_795_687_200_000  # 2026-11-26T08:00:00Z


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration),
                        pytest.param("influx", marks=pytest.mark.integration)])
def store(request, tmp_path):
    if request.param == "sqlite":
        db = Database(tmp_path / "contract.db")
        yield SqliteReadingStore(db)
        db.close()
    elif request.param == "postgresql":
        db = PostgresDatabase(request.getfixturevalue("postgres_url"))
        yield PostgresReadingStore(db)
        db.close()
    else:
        server = request.getfixturevalue("influxd_server")
        s = InfluxReadingStore(server.url, request.getfixturevalue("influx_db"), retry_budget_s=10)
        yield s
        s.close()


def series(device: str, n: int, start: int = T0, step: int = MINUTE, base: float = 5.0) -> list[Reading]:
    return [Reading(device, start + i * step, round(base + 0.01 * (i % 300), 2), i) for i in range(n)]


def test_round_trip_keeps_value_seq_and_absent_seq(store):
    rs = [Reading("LOG-0001", T0, 4.52, 7), Reading("LOG-0001", T0 + 1, -79.125, None),
          Reading("LOG-0001", T0 + 2, 100.0, 0)]
    assert store.write(rs) == WriteResult(3, 0)
    assert store.query("LOG-0001") == rs


def test_device_ids_that_need_escaping_stay_apart(store):
    odd = ["a b", "a,b", "a=b", "a'b", 'a"b', "Kühlschrank-3", "a"]
    store.write([Reading(d, T0 + i, float(i)) for i, d in enumerate(odd)])
    for i, d in enumerate(odd):
        assert store.query(d) == [Reading(d, T0 + i, float(i))]
        assert store.count(d) == 1
    assert store.count() == len(odd)


def test_redelivery_is_idempotent_and_reported_as_duplicates(store):
    rs = series("LOG-1", 100)
    assert store.write(rs) == WriteResult(100, 0)
    assert store.write(rs) == WriteResult(0, 100)
    assert store.count("LOG-1") == 100
    # overlapping redelivery: half old, half new
    assert store.write(series("LOG-1", 150)) == WriteResult(50, 100)
    assert store.count() == 150


def test_same_key_again_changes_nothing_first_value_wins(store):
    store.write([Reading("D", T0, 4.0, 1)])
    wr = store.write([Reading("D", T0, 9.0, 2)])
    assert (wr.accepted, wr.duplicates, len(wr.conflicts)) == (0, 1, 1)
    # duplicates inside one batch as well
    wr = store.write([Reading("D", T0 + 1, 5.0), Reading("D", T0 + 1, 6.0)])
    assert (wr.accepted, wr.duplicates, len(wr.conflicts)) == (1, 1, 1)
    assert [(r.ts, r.temp_c) for r in store.query("D")] == [(T0, 4.0), (T0 + 1, 5.0)]


def test_ranges_are_half_open_and_per_device(store):
    store.write(series("A", 10) + series("AB", 10, base=20.0))
    got = store.query("A", T0 + 2 * MINUTE, T0 + 5 * MINUTE)
    assert [r.ts for r in got] == [T0 + 2 * MINUTE, T0 + 3 * MINUTE, T0 + 4 * MINUTE]
    assert all(r.device_id == "A" for r in got)
    assert [r.ts for r in store.query("A", start=T0 + 8 * MINUTE)] == [T0 + 8 * MINUTE, T0 + 9 * MINUTE]
    assert [r.ts for r in store.query("A", end=T0 + MINUTE)] == [T0]
    assert store.query("A", T0 + 5 * MINUTE, T0 + 5 * MINUTE) == []
    assert store.query("nobody") == []
    assert store.count("nobody") == 0
    ts, temps = store.arrays("nobody")
    assert ts.dtype == np.int64 and temps.dtype == np.float64 and len(ts) == 0


def test_ordering_limit_and_descending(store):
    store.write(series("A", 20))
    assert [r.seq for r in store.query("A", limit=3)] == [0, 1, 2]
    assert [r.seq for r in store.query("A", limit=3, descending=True)] == [19, 18, 17]
    assert [r.seq for r in store.query("A", end=T0 + 10 * MINUTE, descending=True, limit=1)] == [9]


def test_late_and_out_of_order_data_reads_back_sorted(store):
    rs = series("L", 60)
    shuffled = rs[30:] + rs[:10][::-1] + rs[10:30]
    for i in range(0, 60, 7):
        store.write(shuffled[i:i + 7])
    assert store.query("L") == rs
    ts, temps = store.arrays("L")
    assert ts.tolist() == [r.ts for r in rs]
    assert temps.tolist() == [r.temp_c for r in rs]


def test_downsample_buckets_start_at_start_and_skip_empty_ones(store):
    rs = [Reading("D", T0 + i * MINUTE, float(i)) for i in range(30) if not 10 <= i < 20]
    store.write(rs)
    start = T0 + 3 * MINUTE  # not aligned to the interval: buckets still start at `start`
    got = store.downsample("D", start, T0 + 28 * MINUTE, 5 * MINUTE)
    assert [b.ts for b in got] == [start, start + 5 * MINUTE, start + 15 * MINUTE, start + 20 * MINUTE]
    b0 = got[0]
    assert (b0.min_c, b0.max_c, b0.count) == (3.0, 7.0, 5)
    assert b0.mean_c == pytest.approx(5.0)
    assert got[-1] == Bucket(start + 20 * MINUTE, 23.0, 27.0, pytest.approx(25.0), 5)
    assert store.downsample("D", start, start, MINUTE) == []
    assert store.downsample("nobody", T0, T0 + MINUTE, MINUTE) == []


@pytest.mark.parametrize("offset_min, end_extra_ms", [(17, 0), (0, 0), (0, 7 * MINUTE + 123)],
                         ids=["unaligned", "aligned", "aligned-ragged-end"])
def test_downsample_agrees_with_the_raw_series(store, offset_min, end_extra_ms):
    """Unaligned and 10-minute aligned requests (SQLite answers the latter from its rollup)."""
    rng = np.random.default_rng(7)
    ts = T0 + np.sort(rng.choice(10 * 24 * 60, 5000, replace=False)) * MINUTE
    temps = np.round(5 + 3 * rng.standard_normal(len(ts)), 3)
    store.write([Reading("R", int(t), float(v)) for t, v in zip(ts, temps, strict=True)])
    start, step = T0 + offset_min * MINUTE, 6 * 60 * MINUTE
    end = T0 + 9 * 24 * 60 * MINUTE + end_extra_ms
    got = store.downsample("R", start, end, step)
    expect = []
    for b in range(start, end, step):
        sel = temps[(ts >= b) & (ts < min(b + step, end))]
        if len(sel):
            expect.append((b, sel.min(), sel.max(), sel.mean(), len(sel)))
    assert [(b.ts, b.min_c, b.max_c, b.count) for b in got] == [(e[0], e[1], e[2], e[4]) for e in expect]
    assert [b.mean_c for b in got] == pytest.approx([e[3] for e in expect], rel=1e-9)


def test_large_batch_of_50k(store):
    rs = series("BIG", 50_000, step=30_000)
    assert store.write(rs) == WriteResult(50_000, 0)
    assert store.count("BIG") == 50_000
    ts, temps = store.arrays("BIG")
    assert len(ts) == 50_000 and bool(np.all(np.diff(ts) == 30_000))
    assert temps[12_345] == rs[12_345].temp_c
    mixed = series("BIG", 25_000, start=T0 + 25_000 * 30_000, step=30_000) + series("BIG2", 25_000)
    wr = store.write(mixed)
    assert (wr.accepted, wr.duplicates) == (25_000, 25_000)
    assert store.count() == 75_000


def test_engines_run_unchanged_on_the_store(store):
    """The excursion engine sees the same series whichever store holds it (and whatever arrival order)."""
    temps = [5.0] * 10 + [9.0] * 40 + [5.0] * 10 + [-0.5] * 3 + [5.0] * 10
    rs = [Reading("X", T0 + i * MINUTE, t) for i, t in enumerate(temps)]
    store.write(rs[40:])
    store.write(rs[:40])
    ts, vals = store.arrays("X")
    profile = BUILTIN_PROFILES["2-8C"]
    expected = evaluate("X", profile, *normalise_series([r.ts for r in rs], temps))
    assert evaluate("X", profile, ts, vals) == expected
    assert {e.limit_id for e in expected} >= {"high", "high-warn", "freeze"}


def test_a_duplicate_with_another_value_is_reported_as_a_conflict_and_the_first_value_kept(store):
    first = [Reading("LOG-C", T0, 5.0, 1), Reading("LOG-C", T0 + MINUTE, 5.5, 2)]
    assert store.write(first) == WriteResult(2, 0)
    again = store.write([Reading("LOG-C", T0, 5.0, 9), Reading("LOG-C", T0 + MINUTE, 9.25, 3),
                         Reading("LOG-C", T0 + 2 * MINUTE, 6.0, 4), Reading("LOG-C", T0 + 2 * MINUTE, 7.0, 5)])
    assert (again.accepted, again.duplicates) == (1, 3)
    assert {(c.reading, c.stored_temp_c, c.stored_seq) for c in again.conflicts} == {
        (Reading("LOG-C", T0 + MINUTE, 9.25, 3), 5.5, 2),  # against the stored series
        (Reading("LOG-C", T0 + 2 * MINUTE, 7.0, 5), 6.0, 4),  # against the first of the same write
    }
    assert [r.temp_c for r in store.query("LOG-C")] == [5.0, 5.5, 6.0]

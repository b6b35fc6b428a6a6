"""Readings decoded in bulk stay columns (model.ReadingColumns): the same readings, the same stored rows, the
same rollup, device state, excursions and alerts as readings decoded one by one into ``Reading`` tuples."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldtrace.core.clock import ManualClock, to_iso
from coldtrace.core.model import (
    MINUTE,
    Reading,
    ReadingColumns,
    newest_ts,
    reading_temps,
    reading_ts,
    ts_temps,
)
from coldtrace.core.payload import parse_payload
from coldtrace.services.pipeline import Pipeline, RawMessage
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore

T0 = 1_795_600_000_000
DAY = 1440 * MINUTE


def test_a_bulk_message_decodes_to_columns_equal_to_the_tuples():
    doc = {"v": 1, "device_id": "LOG-1", "seq": 7,
           "readings": [{"ts": T0 + i * MINUTE, "temp_c": 4 + i % 3 if i % 2 else 4.25 + i} for i in range(6)]}
    pr = parse_payload(json.dumps(doc).encode(), topic_device_id="LOG-1", now_ms=T0 + DAY)
    cols = pr.batch.readings
    assert isinstance(cols, ReadingColumns) and not pr.rejections
    want = tuple(Reading("LOG-1", r["ts"], float(r["temp_c"]), 7) for r in doc["readings"])
    assert cols == want and cols == list(want) and hash(cols) == hash(want)
    assert all(type(t) is float for t in cols.temps)  # integers in the JSON are stored as REAL, as before
    assert len(cols) == 6 and cols[2] == want[2] and cols[-1] == want[-1] and cols[1:3] == want[1:3]
    assert list(reversed(cols)) == list(reversed(want)) and want[3] in cols and bool(cols)
    assert reading_ts(cols) == [r.ts for r in want] and reading_temps(want) == [r.temp_c for r in want]
    assert cols.flat() == [x for r in want for x in r]
    one = (Reading("LOG-1", T0 + DAY, 9.0, 8),)
    assert ts_temps([cols, one, want[:2]]) == ([*cols.ts, T0 + DAY, *cols.ts[:2]], [*cols.temps, 9.0, *cols.temps[:2]])
    assert newest_ts(cols) == newest_ts(want) == T0 + 5 * MINUTE and newest_ts(one) == T0 + DAY


def test_concat_keeps_values_order_and_device_runs():
    a = ReadingColumns("A", [1, 2, 3], [1.0, 2.0, 3.0], 5)
    one = (Reading("A", 4, 4.0, 6),)
    b = ReadingColumns("B", [1, 2], [7.0, 8.0], None)
    many = (Reading("C", 9, 1.5, None), Reading("C", 10, 2.5, None))
    both = ReadingColumns.concat([a, one, b, many, ()])
    assert both == tuple(a) + one + tuple(b) + many
    assert both.runs == [("A", 0, 4), ("B", 4, 6), ("C", 6, 8)]  # a one-reading message joins its device's run
    mixed = ReadingColumns.concat([(Reading("A", 1, 1.0), Reading("B", 1, 1.0)), a])
    assert mixed.runs is None and mixed == (Reading("A", 1, 1.0), Reading("B", 1, 1.0), *a)
    with pytest.raises(ValueError):
        ReadingColumns(["A"], [1, 2], [1.0, 2.0])



def _messages(seed: int, devices: int, n: int, per: int) -> list[tuple[str, list[tuple[int, float]], int]]:
    """Messages of 1 or ``per`` readings (device, [(ts, temp)], seq) with excursions, gaps, repeats and late ones."""
    rng = random.Random(seed)
    out = []
    t = {d: T0 for d in range(devices)}
    v = {d: 5.0 for d in range(devices)}
    for k in range(n):
        d = rng.randrange(devices)
        pairs = []
        for _ in range(rng.choice([1, per])):  # one-reading messages too, in the same flushes
            t[d] += rng.choice([1, 1, 5, 11, 45]) * MINUTE
            v[d] = min(30.0, max(-3.0, v[d] + rng.choice([-1.5, -0.5, 0, 0.5, 1.5, 4.0, -4.0])))
            pairs.append((t[d], round(v[d], 2)))
        out.append((f"D-{d}", pairs, k))
    if len(out) > 3:  # a redelivery, and an older message arriving after newer ones
        out.append(out[1])
        out.insert(rng.randrange(len(out)), out.pop(0))
    return out


def _ingest(path, msgs, as_iso: bool, batch: int):
    """Through the real Pipeline; ``as_iso``: timestamps as RFC 3339 strings, which the decoder takes one by
    one into Reading tuples (the bulk path wants epoch-ms integers)."""
    clock = ManualClock(T0 + 400 * DAY)
    db = Database(path, synchronous="OFF")
    pipe = Pipeline(db, SqliteReadingStore(db), clock)
    raws = []
    for dev, pairs, seq in msgs:
        rs = [{"ts": to_iso(ts) if as_iso else ts, "temp_c": temp} for ts, temp in pairs]
        raws.append(json.dumps({"v": 1, "device_id": dev, "seq": seq, "readings": rs}).encode())
    for i in range(0, len(raws), batch):
        pipe.ingest_raw_many([RawMessage(r, "mqtt", None, None, "t") for r in raws[i:i + batch]])
    q = db.query
    state = {
        "readings": [tuple(r) for r in q("SELECT device_id, ts, temp_c, seq FROM readings ORDER BY device_id, ts")],
        "rollup": [tuple(r) for r in q("SELECT device_id, bucket, min_c, max_c, sum_c, n FROM readings_rollup"
                                       " ORDER BY device_id, bucket")],
        "devices": [tuple(r) for r in q("SELECT id, last_ts, last_temp_c, last_seq, seq_gaps, evaluated_ts"
                                        " FROM devices ORDER BY id")],
        "excursions": [tuple(r) for r in q("SELECT series_id, limit_id, start_ts, end_ts, peak_c, degree_minutes,"
                                           " alarm_ts, superseded FROM excursions ORDER BY series_id, start_ts, id")],
        "alerts": sorted(tuple(r) for r in q("SELECT id, type, device_id, ts FROM alerts")),
        "health": [tuple(r) for r in q("SELECT device_id, state FROM device_health ORDER BY device_id")],
    }
    db.close()
    return state


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), devices=st.integers(1, 4), n=st.integers(1, 30), per=st.integers(2, 40),
       batch=st.integers(1, 12))
def test_bulk_columns_and_one_by_one_tuples_store_and_judge_alike(tmp_path_factory, seed, devices, n, per, batch):
    msgs = _messages(seed, devices, n, per)
    tmp = tmp_path_factory.mktemp("cols")
    columns = _ingest(tmp / "columns.db", msgs, as_iso=False, batch=batch)
    tuples = _ingest(tmp / "tuples.db", msgs, as_iso=True, batch=batch)
    assert columns["readings"] and columns["rollup"]
    for key in columns:
        assert columns[key] == tuples[key], key

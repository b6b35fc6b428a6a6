"""The bulk path of device health (a buffer or a dump at once) equals reading-by-reading observation."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from coldtrace.core import health
from coldtrace.core.health import DeviceHealth
from coldtrace.core.model import MINUTE

T0 = 1_795_600_000_000


def one_by_one(h: DeviceHealth, ts, temps, now):
    out = []
    for t, v in zip(ts, temps, strict=True):
        out += health.observe_readings(h, [t], [v], now_ms=now)
    return out


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(st.sampled_from([1, 10, 60, 300, 600, 3600]),
                             st.sampled_from([0.0, 0.0, 0.0, 0.1, -0.1, 2.0, -3.0, 12.0])),
                   min_size=health.VECTOR_MIN + 60, max_size=400),
    prefix=st.integers(0, 60), start=st.floats(-5, 10, allow_nan=False).map(lambda x: round(x, 1)),
)
def test_bulk_equals_one_by_one(steps, prefix, start):
    ts, temps, t, v = [], [], T0, start
    for dt_s, dv in steps:
        t += dt_s * 1000
        v = round(v + dv, 1)
        ts.append(t)
        temps.append(v)
    now = t + MINUTE
    # some history first (so runs and jumps continue across the two calls), then the rest in one message
    a, b = copy.deepcopy(DeviceHealth("D")), copy.deepcopy(DeviceHealth("D"))
    k = min(prefix, len(ts))
    one_by_one(a, ts[:k], temps[:k], now)
    one_by_one(b, ts[:k], temps[:k], now)
    expected = one_by_one(a, ts[k:], temps[k:], now)
    assert len(ts) - k >= health.VECTOR_MIN  # the bulk path runs
    got = health.observe_readings(b, ts[k:], temps[k:], now_ms=now)
    assert sorted(x.id for x in got) == sorted(x.id for x in expected)
    assert {x.id: x.data for x in got} == {x.id: x.data for x in expected}
    assert a.to_dict() == b.to_dict()

"""Property tests: arrival order and batching never change the answer (docs/RULES.md).

- the vectorised engine equals the literal reference (tests/unit/excursion_oracle.py), on any profile;
- streaming in any batching (with JSON checkpoints in between) equals batch evaluation;
(Any permutation and batching of a series through the production incremental evaluator, on any profile, is
tests/integration/test_pipeline_arrival_order.py.)
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from coldtrace.core import excursions as ex
from coldtrace.core.excursions import SeriesEngine, evaluate
from coldtrace.core.model import HOUR, MINUTE, Limit, Profile
from tests.unit.excursion_oracle import oracle

T0 = 1_795_687_200_000
VALUES = [-1.0, 0.0, 1.9, 2.0, 2.1, 2.2, 5.0, 7.8, 7.9, 8.0, 8.1, 9.0, 12.0, 24.9, 25.0, 26.0]

limits_st = st.builds(
    Limit,
    id=st.sampled_from(["a", "b", "c", "d", "e", "f"]),
    direction=st.sampled_from(["above", "below"]),
    threshold_c=st.sampled_from([0.0, 2.0, 8.0, 25.0]),
    severity=st.sampled_from(["warning", "alarm", "critical"]),
    delay_ms=st.sampled_from([0, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, 2 * HOUR]),
    cumulative_ms=st.sampled_from([None, 10 * MINUTE, 30 * MINUTE, 4 * HOUR]),
    hysteresis_c=st.sampled_from([0.0, 0.2, 0.5]),
)


@st.composite
def profiles(draw) -> Profile:
    lims = draw(st.lists(limits_st, min_size=1, max_size=5, unique_by=lambda lim: lim.id))
    return Profile("p", "p", tuple(lims),
                   mkt_max_c=draw(st.sampled_from([None, None, 5.0, 6.0, 8.0])),
                   max_gap_ms=draw(st.sampled_from([10 * MINUTE, 30 * MINUTE, 6 * HOUR])))


@st.composite
def series(draw, max_size: int = 80) -> tuple[list[int], list[float]]:
    minutes = draw(st.lists(st.integers(0, 60 * 60), min_size=1, max_size=max_size, unique=True))
    minutes.sort()
    vals = draw(st.lists(st.one_of(st.sampled_from(VALUES), st.floats(-5, 30, allow_nan=False)),
                         min_size=len(minutes), max_size=len(minutes)))
    return [T0 + x * MINUTE for x in minutes], vals


def chunks(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    pts = sorted({0, n, *(c % (n + 1) for c in cuts)})
    return list(zip(pts[:-1], pts[1:], strict=True))


@settings(max_examples=150, deadline=None)
@given(profiles(), series(), st.one_of(st.none(), st.integers(1, 12 * 60)), st.booleans())
def test_engine_equals_the_literal_reference(p, s, end_after_min, force_numpy):
    ts, vs = s
    end = None if end_after_min is None else ts[-1] + end_after_min * MINUTE
    saved = ex.SCALAR_FEED_MAX
    ex.SCALAR_FEED_MAX = 0 if force_numpy else 10_000  # one path or the other for the whole series
    try:
        got = evaluate("S", p, ts, vs, end)
    finally:
        ex.SCALAR_FEED_MAX = saved
    assert got == oracle("S", p, ts, vs, end)


@settings(max_examples=150, deadline=None)
@given(profiles(), series(max_size=120), st.lists(st.integers(0, 200), max_size=12), st.data())
def test_streaming_in_any_batching_with_checkpoints_equals_batch(p, s, cuts, data):
    ts, vs = s
    expected = evaluate("S", p, ts, vs)
    eng = SeriesEngine("S", p)
    history = []
    for a, b in chunks(len(ts), cuts):
        history.extend(eng.feed(ts[a:b], vs[a:b]))
        if data.draw(st.booleans(), label="checkpoint"):
            kept = eng.history
            eng = SeriesEngine.restore("S", p, json.loads(json.dumps(eng.snapshot())))
            eng.history = kept
    assert eng.excursions() == expected
    # the touched excursions reported along the way end in the batch result
    last = {e.id: e for e in history}
    assert sorted(last.values(), key=lambda e: (e.start_ts, e.limit_id)) == expected

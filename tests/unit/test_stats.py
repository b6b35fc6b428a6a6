"""Per-series summary with hand-worked numbers (minutes from T0), 2-8 °C profile, max_gap 30 min."""

from __future__ import annotations

import pytest

from coldtrace.core.model import BUILTIN_PROFILES, MINUTE
from coldtrace.core.stats import summarise

T0 = 1_795_687_200_000
P = BUILTIN_PROFILES["2-8C"]


def m(x: float) -> int:
    return T0 + int(x * MINUTE)


SERIES = [(0, 5.0), (60, 9.0), (90, 5.0), (300, 1.0), (310, 5.0)]


def test_summary_numbers_by_hand():
    # holds: 0->30 (capped), 60->90, 90->120 (capped), 300->310, 310->320 (end) = 30+30+30+10+10 = 110 min
    # gaps: 30->60 and 120->300 = 30 + 180 = 210 min
    # beyond 8 (high, high-warn): 30 min (9.0); below 2 (low): 10 min (1.0); below 0: none; in range 70 min
    # time-weighted mean = (30x5 + 30x9 + 30x5 + 10x1 + 10x5) / 110 = 630 / 110 = 5.7273
    s = summarise([m(a) for a, _ in SERIES], [v for _, v in SERIES], P, start=m(0), end=m(320))
    assert (s.count, s.min_c, s.max_c, s.covered_ms) == (5, 1.0, 9.0, 110 * MINUTE)
    assert s.gaps == [(m(30), m(60)), (m(120), m(300))] and s.gap_ms == 210 * MINUTE
    assert s.beyond_ms == {"high-warn": 30 * MINUTE, "high": 30 * MINUTE, "high-crit": 0, "low": 10 * MINUTE,
                           "freeze": 0}
    assert s.in_range_ms == 70 * MINUTE and s.in_range_pct == pytest.approx(63.636, abs=1e-3)
    assert s.mean_c == pytest.approx(5.7273, abs=1e-4)
    assert s.mkt_c is not None and s.mkt_c > s.mean_c  # warm time weighs more
    d = s.to_dict()
    assert d["gaps"][0] == {"from": m(30), "to": m(60)} and d["gap_ms"] == 210 * MINUTE


def test_window_starting_between_readings_counts_the_previous_hold():
    # window [20, 320): the reading at 0 (5.0) still holds 20->30: 10 min covered, then the gap 30->60
    rest = SERIES[1:]
    s = summarise([m(a) for a, _ in rest], [v for _, v in rest], P, start=m(20), end=m(320), prev=(m(0), 5.0))
    assert s.covered_ms == 90 * MINUTE and s.count == 4
    assert s.gaps[0] == (m(30), m(60))
    # without it the window start is a gap up to the first reading
    s2 = summarise([m(a) for a, _ in rest], [v for _, v in rest], P, start=m(20), end=m(320))
    assert s2.gaps[0] == (m(20), m(60)) and s2.covered_ms == 80 * MINUTE


def test_empty_window_is_one_gap():
    s = summarise([], [], P, start=m(0), end=m(60))
    assert (s.count, s.min_c, s.mean_c, s.mkt_c, s.gaps) == (0, None, None, None, [(m(0), m(60))])

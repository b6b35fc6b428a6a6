"""Shipment statistics worked by hand: coverage with max_gap, gaps, time in range, time beyond limits, MKT."""

from __future__ import annotations

import numpy as np
import pytest

from coldtrace.core.model import BUILTIN_PROFILES, MINUTE
from coldtrace.core.shipment_stats import coverage, mkt_c, series_stats

P = BUILTIN_PROFILES["2-8C"]  # max_gap 30 min


def test_rules_md_mkt_example():
    v = np.array([5.0] * 20 + [12.0] * 4)
    assert round(mkt_c(v, np.ones(24)), 2) == 6.65


def test_coverage_holds_each_value_until_the_next_reading_at_most_max_gap():
    ts = np.array([0, 10, 60, 70]) * MINUTE
    assert list(coverage(ts, 0, 80 * MINUTE, 30 * MINUTE) // MINUTE) == [10, 30, 10, 10]
    assert list(coverage(ts, 0, None, 30 * MINUTE) // MINUTE) == [10, 30, 10, 0]


def test_series_stats_by_hand():
    # window [0, 100 min): readings at 5, 15, 25 (9.0), 75 (1.0), 85 min
    ts = np.array([5, 15, 25, 75, 85]) * MINUTE
    v = np.array([4.0, 6.0, 9.0, 1.0, 5.0])
    s = series_stats(ts, v, P, 0, 100 * MINUTE)
    # covered: 10 + 10 + 30 (capped) + 10 + 15 = 75 min; gaps: [0,5) [55,75) -> 25 min
    assert s.covered_ms == 75 * MINUTE and s.gap_ms == 25 * MINUTE
    assert s.gaps == [(0, 5 * MINUTE), (55 * MINUTE, 75 * MINUTE)]
    assert s.in_range_ms == 35 * MINUTE  # 4.0, 6.0, 5.0 are in [2, 8]
    assert s.beyond_ms["high"] == 30 * MINUTE and s.beyond_ms["low"] == 10 * MINUTE
    assert s.beyond_ms["freeze"] == 0
    assert s.mean_c == pytest.approx((40 + 60 + 270 + 10 + 75) / 75, abs=1e-4)
    assert (s.min_c, s.max_c, s.count) == (1.0, 9.0, 5)
    assert s.time_in_range_pct == pytest.approx(100 * 35 / 75)


def test_no_readings_is_all_gap():
    s = series_stats(np.empty(0, np.int64), np.empty(0), P, 0, 60 * MINUTE)
    assert (s.count, s.covered_ms, s.gap_ms, s.mkt_c, s.gaps) == (0, 0, 60 * MINUTE, None, [(0, 60 * MINUTE)])

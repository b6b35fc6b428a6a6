"""MKT (docs/RULES.md "Mean kinetic temperature") with hand-worked expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coldtrace.core.mkt import covered_weights, mkt, ratio_for, series_mkt, time_weighted_mean
from coldtrace.core.model import HOUR, MINUTE

T0 = 1_795_687_200_000


def test_rules_example_twenty_hours_at_5_and_four_at_12():
    # mean = (20 x 5.0 + 4 x 12.0) / 24 = 148 / 24 = 6.1667; MKT (dH 83.144 kJ/mol) = 6.65 as RULES.md states
    ts = [T0 + i * HOUR for i in range(24)]
    temps = [5.0] * 20 + [12.0] * 4
    end = T0 + 24 * HOUR
    assert time_weighted_mean(ts, temps, max_gap_ms=2 * HOUR, end_ts=end) == pytest.approx(6.1667, abs=5e-5)
    assert round(series_mkt(ts, temps, max_gap_ms=2 * HOUR, end_ts=end), 2) == 6.65
    assert round(mkt(temps), 2) == 6.65  # equal weights, same answer


def test_weights_are_covered_time_and_gaps_weigh_nothing():
    # 5.0 held 3 h and 12.0 held 1 h equals three readings at 5.0 and one at 12.0;
    # with max_gap 1 h, 5.0 at 0 followed by 12.0 at 3 h covers 1 h only (2 h gap): equal weights.
    ts = [T0, T0 + 3 * HOUR]
    assert series_mkt(ts, [5.0, 12.0], max_gap_ms=4 * HOUR, end_ts=T0 + 4 * HOUR) == pytest.approx(
        mkt([5.0, 5.0, 5.0, 12.0]), abs=1e-12)
    assert covered_weights(ts, HOUR, T0 + 4 * HOUR).tolist() == [HOUR, HOUR]
    assert series_mkt(ts, [5.0, 12.0], max_gap_ms=HOUR, end_ts=T0 + 4 * HOUR) == pytest.approx(
        mkt([5.0, 12.0]), abs=1e-12)


def test_two_point_mkt_by_hand_and_activation_energy_is_configurable():
    # equal weights at 0 °C and 20 °C, dH = 83.144 kJ/mol -> k = dH/R = 83144 / 8.3144598 = 9999.93 K:
    # ratio = (exp(-k/273.15) + exp(-k/293.15)) / 2; MKT = k / -ln(ratio) - 273.15 = 14.816 °C
    k = 83144 / 8.3144598
    a = math.exp(-k / 273.15)
    b = math.exp(-k / 293.15)
    hand = k / -math.log((a + b) / 2) - 273.15
    assert mkt([0.0, 20.0]) == pytest.approx(hand, abs=1e-9)
    assert round(hand, 3) == 14.816  # above the arithmetic mean of 10 °C: warm time weighs more
    # a higher activation energy weighs the warm time more
    assert mkt([0.0, 20.0], activation_energy_kj=120.0) > mkt([0.0, 20.0])
    assert mkt([7.0] * 5) == pytest.approx(7.0, abs=1e-9)  # a constant series is its own MKT
    assert ratio_for(7.0, 10000.0) == pytest.approx(math.exp(-10000 / 280.15))


def test_no_weight_is_nan_and_mismatched_lengths_raise():
    assert math.isnan(mkt([5.0], [0.0]))
    assert math.isnan(mkt([]))
    with pytest.raises(ValueError):
        mkt([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        mkt([1.0], activation_energy_kj=0)


def test_large_series_is_vectorised():
    n = 200_000
    ts = T0 + np.arange(n, dtype=np.int64) * MINUTE
    v = np.where(np.arange(n) % 6 == 5, 12.0, 5.0)  # 1 in 6 at 12.0: the 20 h / 4 h example is 1 in 6 too
    assert round(series_mkt(ts, v, max_gap_ms=HOUR, end_ts=int(ts[-1]) + MINUTE), 2) == 6.65

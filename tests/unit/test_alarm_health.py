"""Alarm-system health metrics (coldtrace/services/alarm_health.py) on hand-worked timelines (seconds from T0)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coldtrace.core.model import MINUTE
from coldtrace.services.alarm_health import chattering, floods, rate_buckets, source_key

T0 = 1_795_687_200_000  # a multiple of 10 minutes


def s(*secs: float) -> np.ndarray:
    return np.array([T0 + int(x * 1000) for x in secs], dtype=np.int64)


def test_rate_per_10_minutes_on_the_epoch_grid_counts_only_the_range():
    edges, counts = rate_buckets(s(-1, 0, 1, 599, 600, 1800, 3599, 3600), T0, T0 + 3600_000)
    assert list(edges) == [T0 + k * 10 * MINUTE for k in range(6)]
    assert list(counts) == [3, 1, 0, 1, 0, 1]  # -1 s and 3600 s are outside [from, to)
    edges, _ = rate_buckets(s(), T0 + 5 * MINUTE, T0 + 25 * MINUTE)  # the grid starts before an unaligned from
    assert list(edges) == [T0, T0 + 10 * MINUTE, T0 + 20 * MINUTE]


def test_a_flood_is_more_than_10_alarms_within_10_minutes():
    assert floods(s(*range(0, 600, 60))) == []  # 10 in 10 min: not a flood
    assert floods(s(*range(0, 660, 60))) == [  # the 11th, at 600 s, has 10 before it within 10 min
        {"start": T0, "end": T0 + 600_000, "peak": 11, "alarms": 11, "duration_ms": 600_000}]
    assert floods(s(*range(0, 1100, 100))) == []  # 11 alarms, but spread over 1000 s
    # two bursts an hour apart are two floods; a burst's alarms all count
    two = floods(s(*range(0, 24, 2), *range(3600, 3615)))
    assert [(f["start"], f["alarms"], f["peak"]) for f in two] == [(T0, 12, 12), (T0 + 3600_000, 15, 15)]


def test_chattering_is_three_activations_within_one_minute():
    assert chattering(s(0, 30, 61)) == (2, 0, None)  # 61 s from first to third: not within a minute
    assert chattering(s(0, 30, 60)) == (3, 1, T0)
    most, episodes, first = chattering(s(100, 110, 120, 130, 1000, 1001, 1002))
    assert (most, episodes, first) == (4, 2, T0 + 100_000)


def test_source_names_the_device_the_type_and_what_it_is_about():
    assert source_key("LOG-1", "excursion.alarm", "high") == "LOG-1 · excursion.alarm · high"
    assert source_key(None, "lot.stability_low", None) == "- · lot.stability_low"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 7200), min_size=0, max_size=120))
def test_floods_and_chattering_equal_their_definitions_counted_by_brute_force(secs):
    t = np.sort(s(*secs))
    win = 10 * MINUTE
    # every alarm with more than 10 alarms in the 10 minutes up to it marks [first of them, it]
    marks = []
    for ti in t:
        inside = [x for x in t if ti - win <= x <= ti]
        if len(inside) > 10:
            marks.append([int(min(inside)), int(ti), len(inside)])
    merged: list[list[int]] = []
    for a, b, n in sorted(marks):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
            merged[-1][2] = max(merged[-1][2], n)
        else:
            merged.append([a, b, n])
    got = floods(t)
    assert [(f["start"], f["end"], f["peak"]) for f in got] == [tuple(m) for m in merged]
    for f in got:
        assert f["alarms"] == sum(1 for x in t if f["start"] <= x <= f["end"])
    # chattering: most activations within one minute, and whether any 3 fall within one minute
    most, episodes, first = chattering(t)
    brute_most = max((sum(1 for x in t if ti - MINUTE <= x <= ti) for ti in t), default=0)
    assert most == brute_most
    assert (episodes > 0) == (brute_most >= 3)
    if episodes:
        starts = [int(t[i]) for i in range(len(t) - 2) if t[i + 2] - t[i] <= MINUTE]
        assert first == starts[0]

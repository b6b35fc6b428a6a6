"""One test (or more) per rule of docs/RULES.md "Series and time" / "Excursions", with the expected numbers
worked out by hand in the comments. Times are minutes from T0 unless said otherwise."""

from __future__ import annotations

import json

import pytest

from coldtrace.core.excursions import (
    SeriesEngine,
    alerts_for,
    data_gaps,
    diff_excursions,
    evaluate,
    in_window,
    normalise_series,
    reevaluate,
)
from coldtrace.core.model import BUILTIN_PROFILES, HOUR, MINUTE, Limit, Profile, stable_id

T0 = 1_795_687_200_000


def m(minutes: float) -> int:
    return T0 + int(minutes * MINUTE)


def prof(*limits: Limit, max_gap_min: float = 30, mkt_max_c: float | None = None) -> Profile:
    return Profile("p", "test", tuple(limits), mkt_max_c=mkt_max_c, max_gap_ms=int(max_gap_min * MINUTE))


def above(threshold: float, delay_min: float = 0, cum_min: float | None = None, lid: str = "high",
          severity: str = "alarm", hysteresis: float = 0.2) -> Limit:
    return Limit(lid, "above", threshold, severity, int(delay_min * MINUTE),  # type: ignore[arg-type]
                 None if cum_min is None else int(cum_min * MINUTE), hysteresis)


def below(threshold: float, delay_min: float = 0, lid: str = "low", hysteresis: float = 0.2) -> Limit:
    return Limit(lid, "below", threshold, "alarm", int(delay_min * MINUTE), None, hysteresis)


def run(p: Profile, series: list[tuple[float, float]], end_min: float | None = None):
    ts = [m(a) for a, _ in series]
    vs = [v for _, v in series]
    return evaluate("LOG-1", p, ts, vs, None if end_min is None else m(end_min))


# ---- Series and time -------------------------------------------------------------------------------------

def test_a_reading_holds_until_the_next_for_at_most_max_gap_and_gaps_count_neither_way():
    # 9.0 at 0, 10 and 60 min, back to 5.0 at 70 min; max_gap 30 min.
    # covered while above: 0->10 (10 min) + 10->40 (capped at 30 min, 40->60 is a gap) + 60->70 (10) = 50 min
    # degree-minutes: 50 min x 1.0 °C = 50.0; the gap is reported as (40 min, 60 min).
    p = prof(above(8.0))
    (e,) = run(p, [(0, 9.0), (10, 9.0), (60, 9.0), (70, 5.0)])
    assert (e.start_ts, e.end_ts, e.duration_ms) == (m(0), m(70), 50 * MINUTE)
    assert e.degree_minutes == pytest.approx(50.0, abs=1e-6)
    assert data_gaps([m(0), m(10), m(60), m(70)], 30 * MINUTE) == [(m(40), m(60))]


def test_the_last_reading_covers_nothing_until_a_series_end_is_given():
    # 9.0 at 0 and 10: open episode; without an end 10 min covered, with end at 25 min 10 + 15 = 25 min,
    # with an end at 100 min the last hold is capped by max_gap: 10 + 30 = 40 min.
    p = prof(above(8.0))
    assert run(p, [(0, 9.0), (10, 9.0)])[0].duration_ms == 10 * MINUTE
    assert run(p, [(0, 9.0), (10, 9.0)], end_min=25)[0].duration_ms == 25 * MINUTE
    (e,) = run(p, [(0, 9.0), (10, 9.0)], end_min=100)
    assert e.duration_ms == 40 * MINUTE and e.end_ts is None


def test_normalise_sorts_and_keeps_the_first_reading_of_a_timestamp():
    t, v = normalise_series([m(2), m(1), m(2), m(0)], [2.0, 1.0, 99.0, 0.0])
    assert t.tolist() == [m(0), m(1), m(2)] and v.tolist() == [0.0, 1.0, 2.0]


# ---- Episodes, hysteresis, peak, duration, degree-minutes ------------------------------------------------

def test_episode_starts_above_threshold_continues_in_the_hysteresis_band_and_ends_at_exit_level():
    # above 8.0, hysteresis 0.2 (exit at <= 7.8); one reading a minute:
    # 0: 5.0 in range | 1: 8.5 start | 2: 7.9 band, continues | 3: 8.2 | 4: 7.8 = exit level -> ends at 4
    # | 5: 8.0 is not above 8.0 (strict) | 6: 9.0 second episode, still open.
    # first: duration = 3 covered minutes (1, 2, 3); peak 8.5; degree-minutes = 1x0.5 + 0 (7.9) + 1x0.2 = 0.7
    p = prof(above(8.0))
    first, second = run(p, [(0, 5.0), (1, 8.5), (2, 7.9), (3, 8.2), (4, 7.8), (5, 8.0), (6, 9.0)])
    assert (first.start_ts, first.end_ts, first.duration_ms, first.peak_c) == (m(1), m(4), 3 * MINUTE, 8.5)
    assert first.degree_minutes == pytest.approx(0.7, abs=1e-6)
    assert (second.start_ts, second.end_ts, second.duration_ms, second.peak_c) == (m(6), None, 0, 9.0)


def test_without_hysteresis_the_first_reading_at_or_below_threshold_ends_it():
    p = prof(above(8.0, hysteresis=0.0))
    (e,) = run(p, [(0, 8.5), (1, 8.0), (2, 8.4)])[:1]
    assert (e.start_ts, e.end_ts, e.duration_ms) == (m(0), m(1), MINUTE)


def test_below_limit_is_the_mirror_image():
    # below 2.0, exit at >= 2.2: 0: 3.0 | 10: 1.5 start | 20: 2.1 band | 30: 2.2 exit -> ends at 30.
    # duration 20 min, peak (lowest) 1.5, degree-minutes 10 x 0.5 (2.1 is not beyond 2.0) = 5.0
    p = prof(below(2.0))
    (e,) = run(p, [(0, 3.0), (10, 1.5), (20, 2.1), (30, 2.2)])
    assert (e.start_ts, e.end_ts, e.duration_ms, e.peak_c, e.direction) == (m(10), m(30), 20 * MINUTE, 1.5,
                                                                            "below")
    assert e.degree_minutes == pytest.approx(5.0, abs=1e-6)


# ---- Alarms -----------------------------------------------------------------------------------------------

def test_consecutive_alarm_at_the_first_reading_where_covered_duration_reaches_the_delay():
    # delay 30 min, readings every 10 min at 9.0: covered so far at 0, 10, 20, 30 = 0, 10, 20, 30 -> alarm at 30
    p = prof(above(8.0, delay_min=30))
    (e,) = run(p, [(0, 9.0), (10, 9.0), (20, 9.0), (30, 9.0), (40, 9.0)])
    assert (e.alarm_ts, e.alarm_kind) == (m(30), "consecutive")


def test_delay_zero_alarms_at_the_first_reading_above():
    p = prof(above(8.0, delay_min=0))
    (e,) = run(p, [(0, 5.0), (7, 8.1)])
    assert (e.alarm_ts, e.alarm_kind) == (m(7), "consecutive")


def test_the_end_reading_counts_for_the_consecutive_alarm():
    # delay 30: 9.0 at 0, 10, 20 then 5.0 at 30: at the end reading 30 min are covered -> alarm at 30
    p = prof(above(8.0, delay_min=30))
    (e,) = run(p, [(0, 9.0), (10, 9.0), (20, 9.0), (30, 5.0)])
    assert (e.alarm_ts, e.end_ts) == (m(30), m(30))
    # one minute shorter: ends at 29 with 29 min covered: no alarm
    (e,) = run(p, [(0, 9.0), (10, 9.0), (20, 9.0), (29, 5.0)])
    assert e.alarm_ts is None


def test_a_gap_does_not_count_towards_the_delay():
    # delay 30, max_gap 10: 9.0 at 0 then 9.0 at 60: covered at 60 is 10 min only; 9.0 at 70 (20), 80 (30)
    p = prof(above(8.0, delay_min=30), max_gap_min=10)
    (e,) = run(p, [(0, 9.0), (60, 9.0), (70, 9.0), (80, 9.0)])
    assert e.alarm_ts == m(80)


def test_cumulative_budget_alarms_even_when_no_single_episode_is_long():
    # delay 60 (never reached), budget 30 min beyond 8.0 over the series:
    # ep1 0-10 (10 min above, cum 10) | ep2 20-30 (cum 20) | ep3 starts 40: cum 20 at 40, 30 at 50 -> alarm 50
    # ep4 starts 70: the budget is exhausted, so it alarms at its first reading.
    p = prof(above(8.0, delay_min=60, cum_min=30))
    e1, e2, e3, e4 = run(p, [(0, 9.0), (10, 5.0), (20, 9.0), (30, 5.0), (40, 9.0), (50, 9.0), (60, 5.0),
                             (70, 9.0), (80, 5.0)])
    assert e1.alarm_ts is None and e2.alarm_ts is None
    assert (e3.alarm_ts, e3.alarm_kind) == (m(50), "cumulative")
    assert (e4.alarm_ts, e4.alarm_kind) == (m(70), "cumulative")


def test_cumulative_counts_only_time_beyond_the_threshold_not_the_hysteresis_band():
    # budget 20: ep 0..30 with 9.0 at 0 (10 min beyond), 7.9 at 10 (band, 10 min not beyond), 9.0 at 20
    # (beyond), 5 at 30 -> cum 20 only reached at the end reading 30
    p = prof(above(8.0, delay_min=60, cum_min=20))
    (e,) = run(p, [(0, 9.0), (10, 7.9), (20, 9.0), (30, 5.0)])
    assert (e.alarm_ts, e.alarm_kind, e.duration_ms) == (m(30), "cumulative", 30 * MINUTE)


def test_finish_gives_an_open_episode_its_alarm_at_the_series_end():
    # delay 30: 9.0 at 0 and 10, shipment ends at 40: 40 min covered (10 + 30 capped) -> alarm at 40
    p = prof(above(8.0, delay_min=30))
    (e,) = run(p, [(0, 9.0), (10, 9.0)], end_min=40)
    assert (e.alarm_ts, e.end_ts) == (m(40), None)


def test_two_limits_on_one_threshold_share_episodes_but_not_alarms():
    # the 2-8 °C profile: high-warn (8.0, 15 min) and high (8.0, 30 min, 4 h budget), high-crit 25.0 delay 0
    p = BUILTIN_PROFILES["2-8C"]
    excs = run(p, [(0, 5.0), (5, 9.0), (10, 26.0), (15, 9.0), (20, 9.0), (25, 9.0), (30, 9.0), (35, 9.0),
                   (40, 5.0)])
    by = {e.limit_id: e for e in excs}
    assert set(by) == {"high-warn", "high", "high-crit"}
    # covered since 5: at 20 -> 15 min (high-warn), at 35 -> 30 min (high)
    assert (by["high-warn"].alarm_ts, by["high"].alarm_ts) == (m(20), m(35))
    assert by["high-warn"].start_ts == by["high"].start_ts == m(5)
    assert by["high-warn"].peak_c == by["high"].peak_c == 26.0
    # high-crit (exit at 24.8): 26.0 at 10, ended by 9.0 at 15; delay 0 -> alarm at 10, critical
    assert (by["high-crit"].start_ts, by["high-crit"].end_ts, by["high-crit"].alarm_ts) == (m(10), m(15), m(10))
    assert by["high-crit"].severity == "critical" and by["high-warn"].severity == "warning"


# ---- Alerts -------------------------------------------------------------------------------------------------

def test_alerts_opened_alarm_closed_with_limit_severity_and_ids_derived_from_device_limit_start_type():
    p = prof(above(8.0, delay_min=10, severity="critical"))
    (e,) = run(p, [(0, 9.0), (10, 9.0), (20, 5.0)])
    alerts = alerts_for(e, "LOG-1", "SHIP-1")
    assert [(a.type, a.severity, a.ts) for a in alerts] == [
        ("excursion.opened", "info", m(0)), ("excursion.alarm", "critical", m(10)),
        ("excursion.closed", "info", m(20))]
    assert alerts[1].id == stable_id("alert", "LOG-1", "high", m(0), "excursion.alarm")
    assert e.id == stable_id("exc", "LOG-1", "high", m(0))
    assert [a.id for a in alerts_for(e, "LOG-1", "SHIP-1")] == [a.id for a in alerts]  # recomputing


# ---- MKT limit ----------------------------------------------------------------------------------------------

def test_mkt_limit_judged_at_the_series_end_for_a_short_shipment():
    # RULES.md example: 20 h at 5.0 then 4 h at 12.0 (hourly readings, each covering 1 h, max_gap 2 h):
    # MKT 6.65 °C. With mkt_max_c 6.5 the end (24 h) raises limit "mkt"; with 6.7 nothing.
    series = [(60 * i, 5.0 if i < 20 else 12.0) for i in range(24)]
    p = prof(above(30.0), max_gap_min=120, mkt_max_c=6.5)
    (e,) = run(p, series, end_min=24 * 60)
    # the whole window's MKT: from the first reading to the end, closed (never "ongoing, 0 s" at arrival),
    # alarmed at the end where it was judged
    assert (e.limit_id, e.start_ts, e.end_ts, e.duration_ms, e.alarm_ts, e.alarm_kind, e.severity) == (
        "mkt", m(0), m(1440), 24 * HOUR, m(1440), "mkt", "alarm")
    assert e.peak_c == pytest.approx(6.65, abs=0.005)
    assert run(prof(above(30.0), max_gap_min=120, mkt_max_c=6.7), series, end_min=24 * 60) == []


def test_mkt_limit_on_the_running_mkt_once_24_hours_are_covered():
    # hourly readings: 5.0 for 24 h, 12.0 from 24 h to 30 h, 5.0 again. The running MKT at the reading of hour
    # k covers hours 0..k-1: MKT_k = (dH/R) / -ln((n5 e5 + n12 e12) / k) - 273.15, e_T = exp(-(dH/R)/(T+273.15)),
    # worked out by hand (dH/R = 83144 / 8.3144598 K): k=28: 6.434 | 29: 6.702 | 30: 6.944 (peak) | 31: 6.888 | ...
    # | 39: 6.534 | 40: 6.499. With mkt_max_c 6.5: starts (and alarms) at 29 h, peak 6.944, ends at 40 h,
    # covering 11 h.
    series = [(60 * i, 5.0 if i < 24 or i >= 30 else 12.0) for i in range(60)]
    p = prof(above(30.0), max_gap_min=120, mkt_max_c=6.5)
    (e,) = run(p, series)
    assert (e.limit_id, e.start_ts, e.alarm_ts, e.alarm_kind) == ("mkt", m(29 * 60), m(29 * 60), "mkt")
    assert e.peak_c == pytest.approx(6.944, abs=0.001)
    assert (e.end_ts, e.duration_ms, e.degree_minutes) == (m(40 * 60), 11 * HOUR, 0.0)
    # before 24 h covered the running MKT is not judged: 12.0 from the first hour raises nothing until 24 h
    hot = [(60 * i, 12.0) for i in range(30)]
    (e,) = run(p, hot)
    assert e.start_ts == m(24 * 60)


# ---- Streaming, checkpoints, late data ----------------------------------------------------------------------

def test_feed_rejects_readings_not_after_the_last_one():
    eng = SeriesEngine("LOG-1", prof(above(8.0)))
    eng.feed([m(1)], [5.0])
    with pytest.raises(ValueError):
        eng.feed([m(1)], [5.0])
    with pytest.raises(ValueError):
        eng.feed([m(3), m(2)], [5.0, 5.0])


def test_snapshot_round_trips_through_json_mid_episode():
    p = BUILTIN_PROFILES["2-8C"]
    series = [(i * 5, 9.0 if 3 <= i < 12 else 5.0) for i in range(20)]
    whole = run(p, series)
    eng = SeriesEngine("LOG-1", p)
    eng.feed([m(a) for a, _ in series[:6]], [v for _, v in series[:6]])
    snap = json.loads(json.dumps(eng.snapshot()))
    excs, _ = reevaluate("LOG-1", p, [m(a) for a, _ in series[6:]], [v for _, v in series[6:]], checkpoint=snap)
    assert excs == [e for e in whole if in_window(e, m(25))]


def test_late_reading_revises_an_alarmed_excursion_and_supersedes_a_split_one():
    # delay 0 limit: 9.0 at 0..30 (every 10 min), 5.0 at 40: one alarmed excursion 0-40.
    # A late 5.0 at 15 splits it: [0, 15) and [20, 40): the first keeps the id (start 0) but changes -> revised;
    # the second is new -> opened/alarm/closed alerts.
    p = prof(above(8.0))
    old = run(p, [(0, 9.0), (10, 9.0), (20, 9.0), (30, 9.0), (40, 5.0)])
    new = run(p, [(0, 9.0), (10, 9.0), (15, 5.0), (20, 9.0), (30, 9.0), (40, 5.0)])
    d = diff_excursions(old, new, device_id="LOG-1", now_ms=m(60))
    assert [(e.start_ts, e.end_ts) for e in d.upserts] == [(m(0), m(15)), (m(20), m(40))]
    assert d.superseded == []
    revised = [a for a in d.alerts if a.type == "excursion.revised"]
    assert len(revised) == 1 and revised[0].data["after"]["end_ts"] == m(15)
    # a late reading above at -5 moves the start: the old excursion is superseded (and revised), a new one opens
    new2 = run(p, [(-5, 9.0), (0, 9.0), (10, 9.0), (20, 9.0), (30, 9.0), (40, 5.0)])
    d2 = diff_excursions(old, new2, device_id="LOG-1", now_ms=m(60))
    assert d2.superseded == [old[0].id]
    assert [a.data["superseded"] for a in d2.alerts if a.type == "excursion.revised"] == [True]
    assert not diff_excursions(old, old, device_id="LOG-1", now_ms=m(60))


def test_a_long_series_steps_through_numpy_and_agrees_with_per_reading_feeding():
    p = BUILTIN_PROFILES["2-8C"]
    series = [(i, 9.0 if (i // 37) % 3 == 0 else (1.0 if (i // 37) % 3 == 1 else 5.0)) for i in range(400)]
    ts, vs = [m(a) for a, _ in series], [v for _, v in series]
    eng = SeriesEngine("LOG-1", p)
    for t, v in zip(ts, vs, strict=True):
        eng.feed([t], [v])
    assert eng.excursions() == evaluate("LOG-1", p, ts, vs)
    assert len(eng.excursions()) > 10
    assert HOUR == 60 * MINUTE

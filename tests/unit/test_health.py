"""Device health rules of docs/RULES.md with hand-worked timelines (minutes from T0)."""

from __future__ import annotations

import json

from coldtrace.core import health
from coldtrace.core.health import DeviceHealth, HealthConfig, observe_readings, observe_rejections, tick
from coldtrace.core.model import HOUR, MINUTE, stable_id

T0 = 1_795_687_200_000
OFF = 30 * MINUTE


def m(x: float) -> int:
    return T0 + int(x * MINUTE)


def types(alerts) -> list[str]:
    return [a.type for a in alerts]


def test_offline_is_decided_by_the_clock_once_per_outage_and_online_follows_data():
    h = DeviceHealth("LOG-1")
    assert tick(h, m(100), offline_after_ms=OFF) == []  # never heard from: not offline
    assert observe_readings(h, [m(0)], [5.0], now_ms=m(0)) == []
    assert tick(h, m(30), offline_after_ms=OFF) == []  # exactly 30 min: not yet
    (off,) = tick(h, m(31), offline_after_ms=OFF)
    # deadline = last message (0) + 30 min; id from the outage's last-seen time
    assert (off.type, off.ts, off.severity) == ("device.offline", m(30), "alarm")
    assert off.id == stable_id("alert", "LOG-1", "device.offline", m(0))
    assert tick(h, m(90), offline_after_ms=OFF) == []  # once per outage
    (on,) = observe_readings(h, [m(95)], [5.0], now_ms=m(95))
    assert (on.type, on.ts) == ("device.online", m(95))
    assert tick(h, m(100), offline_after_ms=OFF) == []
    assert types(tick(h, m(126), offline_after_ms=OFF)) == ["device.offline"]  # a new outage, new id


def test_unmonitored_devices_and_longer_per_device_offline_after_are_respected():
    h = DeviceHealth("LOG-1")
    observe_readings(h, [m(0)], [5.0], now_ms=m(0))
    assert tick(h, m(45), offline_after_ms=OFF, monitored=False) == []
    assert tick(h, m(45), offline_after_ms=HOUR) == []  # an hourly logger
    assert types(tick(h, m(61), offline_after_ms=HOUR)) == ["device.offline"]


def test_battery_low_once_per_crossing_with_hysteresis():
    h = DeviceHealth("LOG-1")
    # 30 -> 19 raises; 18, 22, 25 do not (not above 25); 26 re-arms; 19.5 raises again
    seq = [(30, []), (19, ["device.battery_low"]), (18, []), (22, []), (25, []), (26, []),
           (19.5, ["device.battery_low"]), (20, [])]
    for i, (pct, expected) in enumerate(seq):
        got = observe_readings(h, [m(i)], [5.0], now_ms=m(i), battery_pct=pct)
        assert types(got) == expected, (pct, got)
    assert h.battery_pct == 20


def test_out_of_range_rejections_in_a_row_raise_a_sensor_fault_and_a_valid_reading_resets():
    h = DeviceHealth("LOG-1")
    assert observe_rejections(h, 2, now_ms=m(0)) == []
    observe_readings(h, [m(1)], [5.0], now_ms=m(1))  # resets the run
    assert observe_rejections(h, 2, now_ms=m(2)) == []  # run 2
    (f,) = observe_rejections(h, 1, now_ms=m(3))  # run 3 = N
    assert (f.type, f.data["kind"], f.data["rejected_in_a_row"]) == ("device.sensor_fault", "out_of_range", 3)
    assert observe_rejections(h, 5, now_ms=m(4)) == []  # once per run


def test_stuck_value_for_six_hours_and_36_readings():
    cfg = HealthConfig()
    h = DeviceHealth("LOG-1")
    # every 10 min at exactly 4.2: the 36th reading is at 350 min (< 6 h); 6 h is reached by the reading at
    # 360 min (the 37th) -> fault there, once.
    alerts = []
    for i in range(50):
        alerts += observe_readings(h, [m(10 * i)], [4.2], now_ms=m(10 * i), config=cfg)
    (f,) = alerts
    assert (f.data["kind"], f.ts, f.data["readings"]) == ("stuck", m(360), 37)
    # every 30 min: 6 h reached after 13 readings, but 36 readings take 17.5 h -> fault at 1050 min
    h2 = DeviceHealth("LOG-2")
    alerts = []
    for i in range(40):
        alerts += observe_readings(h2, [m(30 * i)], [4.2], now_ms=m(30 * i))
    assert [a.ts for a in alerts] == [m(1050)]
    # a changed value re-arms
    observe_readings(h2, [m(30 * 40)], [4.3], now_ms=m(1200))
    assert h2.stuck_count == 1 and not h2.stuck_alerted


def test_jump_faster_than_5_c_per_minute_judged_over_at_least_a_minute():
    h = DeviceHealth("LOG-1")
    # 5.0 -> 9.0 in 1 min = 4 °C/min: fine; 9.0 -> 20.0 in 2 min = 5.5 °C/min: fault at 3 min;
    assert observe_readings(h, [m(0), m(1)], [5.0, 9.0], now_ms=m(1)) == []
    (f,) = observe_readings(h, [m(3)], [20.0], now_ms=m(3))
    assert (f.data["kind"], f.ts, f.data["rate_c_per_min"]) == ("jump", m(3), 5.5)
    assert (f.data["from_ts"], f.data["over_ms"], f.data["from_c"]) == (m(1), 2 * MINUTE, 9.0)
    # 5 s later: judged against the reading at least a minute older (9.0 at 1 min): 11.8 °C in 2.08 min is
    # still too fast, but within the hour of the last jump: no second alert
    assert observe_readings(h, [m(3) + 5000], [20.8], now_ms=m(4)) == []
    assert observe_readings(h, [m(10)], [0.0], now_ms=m(10)) == []  # 20.8 -> 0 in 6.9 min: 3 °C/min
    assert observe_readings(h, [m(80)], [0.4], now_ms=m(80)) == []
    assert types(observe_readings(h, [m(81)], [20.0], now_ms=m(81))) == ["device.sensor_fault"]  # 78 min later


def sampled(h, start_min, values, every_s=5, config=health.DEFAULT_CONFIG):
    out = []
    for i, v in enumerate(values):
        t = m(start_min) + i * every_s * 1000
        out += observe_readings(h, [t], [v], now_ms=t, config=config)
    return out


def test_a_door_opening_sampled_every_5_s_is_not_a_sensor_fault():
    # the simulator's door: +2.5 °C at once, then back with an 8-min time constant. Between two 5 s samples
    # that is 30 °C/min; over one minute of data it is at most 2.5 °C/min.
    h = DeviceHealth("LOG-1")
    base = [5.0] * 24
    door = [round(5.0 + 2.5 * 2.718281828 ** (-(i * 5) / 480), 2) for i in range(200)]
    assert sampled(h, 0, base + door) == []
    assert len(h.recent) <= 14  # a minute of 5 s readings and the reference before it: the state stays small


def test_a_real_jump_sampled_every_5_s_is_a_fault_at_its_first_wrong_reading():
    h = DeviceHealth("LOG-1")
    alerts = sampled(h, 0, [5.0] * 24 + [85.0] * 3 + [5.0] * 24)  # a probe that loses contact
    (f,) = alerts
    assert (f.ts, f.data["from_c"], f.data["to_c"]) == (m(0) + 24 * 5000, 5.0, 85.0)
    assert f.data["over_ms"] >= MINUTE and f.data["rate_c_per_min"] == round(80 / (f.data["over_ms"] / MINUTE), 3)


def test_the_rate_window_is_configurable_and_a_state_saved_before_it_existed_still_works():
    h = DeviceHealth("LOG-1")
    # over a 10-minute window, 8 °C in 1 min settles into 0.8 °C/min: not a fault
    slow = HealthConfig(rate_window_ms=10 * MINUTE)
    assert sampled(h, 0, [5.0] * 120 + [13.0] * 12, config=slow) == []
    old = DeviceHealth("LOG-2", last_ts=m(0), last_temp_c=5.0)  # no "recent" in an old stored state
    (f,) = observe_readings(old, [m(1)], [15.0], now_ms=m(1))
    assert f.data["from_ts"] == m(0)


def test_late_readings_do_not_feed_stuck_or_jump_and_state_round_trips_through_json():
    h = DeviceHealth("LOG-1")
    observe_readings(h, [m(10)], [5.0], now_ms=m(10))
    assert observe_readings(h, [m(5)], [40.0], now_ms=m(11)) == []  # late, huge jump: ignored
    assert h.last_ts == m(10) and h.last_temp_c == 5.0
    again = DeviceHealth.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again == h
    assert health.DEFAULT_CONFIG.battery_low_pct == 20.0

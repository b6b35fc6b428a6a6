"""The simulated fleet for a few hours through the real pipeline (the fast version of bench/alarm_flood.py):
normal operation raises no alarm, every faulty scenario raises the alarm it is about."""

from __future__ import annotations

import pytest

from firmware_sim.fleet_day import BENCH_DRIFTING, FAULTY, QUIET, simulate

pytestmark = pytest.mark.integration


def test_four_simulated_hours_of_the_whole_fleet_alarm_only_where_something_is_wrong(tmp_path):
    day = simulate(tmp_path, hours=4, loggers_per_scenario=1, interval_s=5)
    assert set(day.devices.values()) == set(QUIET) | set(FAULTY)
    assert day.readings > 4 * 720 * 6  # six loggers at 5 s for 4 h, plus the bench
    for s in QUIET:  # normal loggers, a fridge opened 3 times an hour, the bench's sound devices and reference
        assert day.alarm_count(s) == 0, (s, day.alarms[s])
    assert day.info["door-openings"] > 0  # the door openings were seen (information), not alarmed
    kinds = {s: {k.split(" ")[0] for k in day.alarms[s]} for s in FAULTY}
    assert "excursion.alarm" in kinds["failing-cooler"]
    assert "device.offline" in kinds["flaky-network"]
    assert "device.battery_low" in kinds["low-battery"]
    assert "device.sensor_fault" in kinds["probe-fault"]  # a real jump is still a fault at 5 s sampling
    assert "calibration.failed" in kinds[BENCH_DRIFTING]
    assert all(day.alarm_count(s) >= 1 for s in FAULTY)
    assert day.alarms_per_10_min < 1.0

"""Stopping the simulated fleet while it is not connected (Ctrl-C during `coldtrace run --simulate`'s start, or
a broker gone) stops cleanly: it used to raise "The client is not currently connected" from the "offline"
status publish and end `coldtrace run` with a traceback and exit code 1."""

from __future__ import annotations

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import HOUR, MINUTE
from firmware_sim.mqtt_loggers import LoggerFleet, build_fleet

T0 = 1_795_600_000_000


def test_a_fleet_that_never_connected_stops_without_raising():
    fleet = LoggerFleet("mqtt://127.0.0.1:9", build_fleet(3, "mixed", T0, HOUR, MINUTE), history_ms=HOUR,
                        clock=ManualClock(T0))
    assert not fleet.client.is_connected()
    fleet.stop()  # no publish is attempted, nothing raises
    assert not fleet.client.is_connected()

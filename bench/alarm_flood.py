"""Alarm load of the simulated fleet (issue 13 item 7): a simulated day through the real pipeline.

    .venv/bin/python bench/alarm_flood.py [--hours 24] [--loggers-per-scenario 2] [--interval 5]

Every logger scenario of firmware_sim (normal, door openings, failing cooler, flaky network, low battery, a
probe that loses contact) and the calibration bench (three loggers, one drifting, against a reference) run for
the span on a ManualClock; the readings go through Pipeline.ingest_raw_many into SQLite, and the clock-driven
parts (deadman, calibration sessions, alert lifecycle) tick every simulated minute (firmware_sim/fleet_day.py).

Prints the alarms (alerts of severity warning and above: what a person must act on) per scenario, and checks
what ISA-18.2 / IEC 62682 asks of a rationalised alarm system: normal operation (normal loggers, door
openings, the sound bench devices) raises no alarm, every faulty scenario at least one, and the whole fleet
fewer than 1 alarm per 10 min on average (the "very likely acceptable" rate for one operator). Exit code 1
when a check fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from firmware_sim.fleet_day import FAULTY, QUIET, simulate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0, help="simulated span (default 24)")
    ap.add_argument("--loggers-per-scenario", type=int, default=2)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between a logger's readings (default 5)")
    ap.add_argument("--data-dir", type=Path, default=None, help="keep the store here (default: a temp dir)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="alarm-flood-") as tmp:
        t0 = time.perf_counter()
        day = simulate(args.data_dir or Path(tmp), hours=args.hours, loggers_per_scenario=args.loggers_per_scenario,
                       interval_s=args.interval)
        wall = time.perf_counter() - t0
    per = {s: sorted(d for d, sc in day.devices.items() if sc == s) for s in (*QUIET, *FAULTY)}
    print(f"Simulated {args.hours:g} h: {len(day.devices)} devices, {day.readings:,} readings in {day.messages:,}"
          f" messages through the pipeline ({wall:.1f} s wall clock).\n")
    print(f"{'scenario':<16} {'devices':>7} {'alarms':>6} {'info':>5}  alarms by type (severity)")
    failures = []
    for s in (*QUIET, *FAULTY):
        n = day.alarm_count(s)
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(day.alarms[s].items())) or "-"
        expect = "expected 0" if s in QUIET else "expected >= 1"
        ok = n == 0 if s in QUIET else n >= 1
        if not ok:
            failures.append(f"{s}: {n} alarms, {expect}")
        print(f"{s:<16} {len(per[s]):>7} {n:>6} {day.info[s]:>5}  {kinds}{'' if ok else '   <-- ' + expect}")
    rate = day.alarms_per_10_min
    print(f"\nWhole fleet: {day.total_alarms} alarms in {args.hours:g} h = {rate:.3f} per 10 min"
          f" (ISA-18.2 'very likely acceptable': ~1 per 10 min per operator; floods are > 10 in 10 min).")
    if rate >= 1.0:
        failures.append(f"{rate:.3f} alarms per 10 min (>= 1)")
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("OK: normal operation and the sound bench devices raised no alarm; every faulty scenario raised one.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The whole simulated fleet through the real pipeline in simulated time: how many alarms does a day give?

Every logger scenario of ``mqtt_loggers`` and the calibration bench of ``bench`` run side by side for a span of
simulated time on a ``ManualClock``: each simulated minute, every logger's due messages (native v1 payloads, as
they would arrive over MQTT, buffered while a logger's network is down) go through ``Pipeline.ingest_raw_many``
into a SQLite store, then the clock-driven parts run as the collector runs them: ``Pipeline.tick`` (deadman),
the calibration service's tick (the bench session, due dates, predicted drift) and the alert lifecycle's tick
(escalation). Nothing is mocked; nothing waits.

An alarm here is an alert a person must act on (ISA-18.2): severity warning, alarm or critical. Information
alerts (an excursion that began and ended within its delay, a logger back online) are counted apart.
``bench/alarm_flood.py`` prints the result for a day; tests/integration/test_alarm_flood.py asserts it for a
few hours.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import HOUR, MINUTE
from coldtrace.services import alerts as alert_lifecycle
from coldtrace.services.calibration_service import CalibrationService, SessionSpec
from coldtrace.services.pipeline import Pipeline, RawMessage
from coldtrace.store import alerts as alert_store
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore

from .bench import BenchSpec, bench_series, native_payloads, register_bench_devices
from .mqtt_loggers import FAULTY_SCENARIOS, QUIET_SCENARIOS, SimLogger, build_fleet

ALARM_SEVERITIES = ("warning", "alarm", "critical")
LOGGER_SCENARIOS = QUIET_SCENARIOS + FAULTY_SCENARIOS
BENCH_SOUND, BENCH_DRIFTING = "bench", "bench-drifting"
QUIET = (*QUIET_SCENARIOS, BENCH_SOUND)  # must raise no alarm
FAULTY = (*FAULTY_SCENARIOS, BENCH_DRIFTING)  # must raise at least one
START_MS = 1_795_687_200_000  # 2026-11-26T10:00:00Z
STEP_MS = MINUTE


@dataclass
class FleetDay:
    hours: float
    devices: dict[str, str]  # device id -> scenario
    alarms: dict[str, Counter] = field(default_factory=dict)  # scenario -> Counter of "type (severity)"
    info: Counter = field(default_factory=Counter)  # scenario -> information alerts
    readings: int = 0
    messages: int = 0

    def alarm_count(self, scenario: str) -> int:
        return sum(self.alarms.get(scenario, Counter()).values())

    @property
    def total_alarms(self) -> int:
        return sum(self.alarm_count(s) for s in self.alarms)

    @property
    def alarms_per_10_min(self) -> float:
        return self.total_alarms / (self.hours * 6)


def simulate(data_dir: Path, *, hours: float = 24.0, loggers_per_scenario: int = 2, interval_s: float = 5.0,
             bench_at_h: float = 0.25) -> FleetDay:
    """Run the fleet and the bench for ``hours`` of simulated time; the store is ``data_dir/fleet.db``.

    Scenario timings scale with the span: the cooler fails a quarter in (for 2 h), the network goes down
    half-way (for 45 min), the bench starts ``bench_at_h`` in and runs its 2.5 h of set points."""
    data_dir.mkdir(parents=True, exist_ok=True)
    span = int(hours * HOUR)
    end = START_MS + span
    clock = ManualClock(START_MS)
    db = Database(data_dir / "fleet.db", synchronous="OFF")
    try:
        readings = SqliteReadingStore(db)
        pipeline = Pipeline(db, readings, clock)
        calibration = CalibrationService(db, readings, pipeline, clock)
        fleet: list[tuple[str, SimLogger]] = []
        for scenario in LOGGER_SCENARIOS:
            prefix = "SIM-" + scenario.upper()
            for lg in build_fleet(loggers_per_scenario, scenario, end, span, int(interval_s * 1000), prefix=prefix,
                                  outage_at_ms=START_MS + span // 2):
                fleet.append((scenario, lg))
        spec = BenchSpec()
        bench_start = START_MS + int(bench_at_h * HOUR)
        bench = {dev: (ts, temp, 0) for dev, (ts, temp) in bench_series(spec, bench_start).items()}
        register_bench_devices(db, spec, START_MS)
        calibration.create_session(SessionSpec(
            reference_id=spec.reference_id, duts={lg.device_id: lg.resolution_c for lg in spec.loggers},
            set_points=spec.set_points, mpe_c=0.5, u_ref_c=spec.reference_U_c, start_ms=bench_start,
            created_by="simulator", notes="bench/alarm_flood.py"))
        devices = {lg.device_id: s for s, lg in fleet}
        devices.update({d: BENCH_DRIFTING if d in spec.drifting else BENCH_SOUND for d in bench})
        result = FleetDay(hours, devices)
        seq = Counter()
        for now in range(START_MS + STEP_MS, end + 1, STEP_MS):
            clock.set(now)
            msgs: list[RawMessage] = []
            for _, lg in fleet:
                for body, n in lg.due_messages(now, START_MS):
                    msgs.append(RawMessage(body, "mqtt", lg.device_id))
                    result.readings += n
            for dev, (ts, temp, sent) in bench.items():
                upto = int((ts <= now).sum())
                if upto > sent:
                    for body in native_payloads(dev, ts[sent:upto], temp[sent:upto], batch=500,
                                                first_seq=seq[dev] + 1):
                        seq[dev] += 1
                        msgs.append(RawMessage(body, "mqtt", dev))
                    result.readings += upto - sent
                    bench[dev] = (ts, temp, upto)
            if msgs:
                pipeline.ingest_raw_many(msgs)
                result.messages += len(msgs)
            pipeline.tick(now)
            calibration.tick(now)
            alert_lifecycle.tick(db, now)
        for dev, type_, severity in alert_store.alert_kinds(db.conn()):
            scenario = devices.get(dev, "other")
            if severity in ALARM_SEVERITIES:
                result.alarms.setdefault(scenario, Counter())[f"{type_} ({severity})"] += 1
            else:
                result.info[scenario] += 1
        for s in (*QUIET, *FAULTY):
            result.alarms.setdefault(s, Counter())
        return result
    finally:
        db.close()

"""`coldtrace run --simulate` twice on the same data directory: the second start resumes. The bench session
is reused (its readings are the same ones again), the loggers carry on from their last stored reading with
seq continuing, and every value is the model's value at its timestamp (deterministic across starts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldtrace.cli import DEMO_LAB_ADDRESS
from coldtrace.services.calibration_records import certificate_data
from coldtrace.settings import LabSettings
from coldtrace.store.db import Database
from firmware_sim.bench import BenchSpec
from tests.support.services import free_port
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "coldtrace.cli"]
LOGGERS = 3


def _run(data: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "COLDTRACE_SIM__HISTORY_HOURS": "0.5"}
    with open(log, "wb") as f:
        return subprocess.Popen([*CLI, "run", "--simulate", "--loggers", str(LOGGERS), "--interval", "1",
                                 "--data-dir", str(data), "--api-port", str(free_port()), "--mqtt-port",
                                 str(free_port())], stdout=f, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


def _q(data: Path, sql: str, args=()) -> list:
    db = Database(data / "coldtrace.db")
    try:
        return [tuple(r) for r in db.query(sql, args)]
    finally:
        db.close()


def _readings(data: Path) -> dict[tuple[str, int], float]:
    return {(d, ts): t for d, ts, t in _q(data, "SELECT device_id, ts, temp_c FROM readings")}


def _stable(data: Path, log: Path) -> bool:
    """The bench has published and everything it sent is stored (the count no longer moves)."""
    if b"bench: published" not in log.read_bytes():
        return False
    a = _q(data, "SELECT COUNT(*) FROM readings")[0][0]
    time.sleep(0.5)
    return a == _q(data, "SELECT COUNT(*) FROM readings")[0][0] and a > 0


def _loggers(data: Path) -> dict[str, tuple[int, int, int]]:
    return {d: (ts, seq, gaps) for d, ts, seq, gaps in _q(
        data, "SELECT id, last_ts, last_seq, seq_gaps FROM devices WHERE id LIKE 'LOG-%'")}


def test_second_start_resumes_instead_of_duplicating(tmp_path):
    data = tmp_path / "data"
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"

    proc = _run(data, log1)
    try:
        wait_for(lambda: _stable(data, log1) and len(_loggers(data)) == LOGGERS, 60, "the first start's data")
    finally:
        _stop(proc)
    first = _readings(data)
    sessions1 = _q(data, "SELECT id, started_at FROM calibration_sessions")
    loggers1 = _loggers(data)
    bench_devices = {d for (d, _ts) in first if not d.startswith("LOG-")}
    assert len(sessions1) == 1 and bench_devices
    # the demo's bench certificates lack nothing ISO/IEC 17025 7.8 asks for: the reference's certificate and
    # traceability, the loggers' make/model/serial, the conditions, and a (simulated) laboratory's address
    assert "Calibration certificates name a simulated laboratory" in log1.read_text()
    db = Database(data / "coldtrace.db")
    try:
        lab = LabSettings(address=DEMO_LAB_ADDRESS).model_dump()
        for dev in sorted(d for d in bench_devices if d != BenchSpec().reference_id):
            assert certificate_data(db, sessions1[0][0], dev, lab=lab).missing() == [], dev
    finally:
        db.close()

    proc = _run(data, log2)
    try:
        def carried_on() -> bool:
            now = _loggers(data)
            return all(now[d][0] >= loggers1[d][0] + 3000 for d in loggers1)

        wait_for(lambda: _stable(data, log2) and carried_on(), 60, "the second start's data")
    finally:
        _stop(proc)
    second = _readings(data)
    out2 = log2.read_text()
    assert "reused" in out2 and f"{LOGGERS} carry on from their last stored reading" in out2, out2

    # the bench: one session, and exactly the readings it had (same timestamps, same values)
    assert _q(data, "SELECT id, started_at FROM calibration_sessions") == sessions1
    bench1 = {k: v for k, v in first.items() if k[0] in bench_devices}
    bench2 = {k: v for k, v in second.items() if k[0] in bench_devices}
    assert bench2 == bench1
    # nothing stored was changed or refused as a conflicting duplicate
    assert {k: second[k] for k in first} == first
    assert _q(data, "SELECT reason, COUNT(*) FROM quarantine GROUP BY reason") == []

    # the loggers: seq continues (no gap, no restart at 1), and no hole where the simulator was stopped
    for dev, (_ts, seq, gaps) in _loggers(data).items():
        assert gaps == 0 and seq > loggers1[dev][1], dev
        stamps = sorted(t for (d, t) in second if d == dev)
        assert all(b - a == 1000 for a, b in zip(stamps, stamps[1:], strict=False)), f"{dev} has a hole"

    # every value is the model's value at that timestamp: a third start would send the same ones again
    from firmware_sim.mqtt_loggers import build_fleet

    anchor = int(_q(data, "SELECT value FROM meta WHERE key = 'sim.anchor_ms'")[0][0])
    fleet = {lg.device_id: lg for lg in build_fleet(LOGGERS, "mixed", anchor, int(0.5 * 3_600_000), 1000)}
    for (dev, ts), temp in second.items():
        if dev in fleet:
            assert fleet[dev].model.temperature(ts) == temp, (dev, ts)

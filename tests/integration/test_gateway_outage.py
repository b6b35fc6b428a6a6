"""Broker outage at the edge: 10,000 readings spooled while Mosquitto is down, the gateway SIGKILLed once in
the middle and restarted; when the broker returns the ColdTrace store holds every reading exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from firmware_sim.serial_instruments import Ctl1Logger
from gateway.spool import read_depth
from tests.integration.gateway_support import wait_for, write_config
from tests.support.store_reads import store_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOGGERS = 4
RECORDS = 2500  # 4 x 2,500 = 10,000 readings


def _start(cmd: list[str], log_path, env=None) -> tuple[subprocess.Popen, object]:
    log = open(log_path, "ab")  # noqa: SIM115 - closed by the caller
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log


def _collector(tmp_path, broker, n: int):
    env = {**os.environ, "COLDTRACE_MQTT__CLIENT_ID": "ct-gw-outage", "COLDTRACE_LOG_LEVEL": "INFO"}
    path = tmp_path / f"collector-{n}.log"
    proc, log = _start([sys.executable, "-m", "coldtrace.cli", "collector", "--mqtt-url", broker.url,
                        "--data-dir", str(tmp_path / "data")], path, env)
    wait_for(lambda: b"connected to MQTT broker" in path.read_bytes(), 30, "collector connected")
    return proc, log


def _gateway(tmp_path, config, n: int):
    return _start([sys.executable, "-m", "coldtrace.cli", "gateway", "--config", str(config)],
                  tmp_path / f"gateway-{n}.log")


def _stop(proc: subprocess.Popen, log, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(20)
    log.close()


def _stored(db_path) -> list[tuple[str, int, float]]:
    return store_rows(db_path, "SELECT device_id, ts, temp_c FROM readings WHERE device_id LIKE 'GWO-%'",
                      missing_ok=True)


def test_outage_with_sigkill_delivers_every_reading_exactly_once(tmp_path, mosquitto):
    db_path = tmp_path / "data" / "coldtrace.db"
    spool = tmp_path / "spool.db"
    # the collector's persistent session exists before the outage; it comes back after the broker
    collector, clog = _collector(tmp_path, mosquitto, 0)
    _stop(collector, clog)
    mosquitto.stop()
    # ~115200 baud dock links: a dump of 2,500 records takes seconds, long enough to be killed mid-way
    sims = [Ctl1Logger(tmp_path / f"ttyGW{i}", f"GWO-{i:03d}", records=RECORDS, baud=230_400).start()
            for i in range(LOGGERS)]
    config = write_config(tmp_path / "gateway.toml", broker_url=mosquitto.url, ports=[s.path for s in sims],
                          spool=spool, gateway_id="GW-OUTAGE")
    gw, glog = _gateway(tmp_path, config, 0)
    procs = []
    try:
        wait_for(lambda: read_depth(spool)[1] >= 4000, 60, "4,000 readings spooled")
        gw.send_signal(signal.SIGKILL)  # no goodbye, no flush: the kernel takes the process away
        gw.wait(10)
        glog.close()
        before_restart = read_depth(spool)[1]
        assert 4000 <= before_restart < LOGGERS * RECORDS + 4000
        gw, glog = _gateway(tmp_path, config, 1)  # re-dumps every logger from the start
        wait_for(lambda: read_depth(spool)[1] >= before_restart + LOGGERS * RECORDS, 90,
                 "every logger dumped again into the spool")
        assert read_depth(spool)[1] >= LOGGERS * RECORDS  # 10,000+ readings waiting, broker still down
        mosquitto.start()
        collector, clog = _collector(tmp_path, mosquitto, 1)
        procs.append((collector, clog))
        expected = {(r.device_id, r.ts, r.temp_c) for s in sims for r in s.readings()}
        assert len(expected) == LOGGERS * RECORDS
        wait_for(lambda: len(_stored(db_path)) >= len(expected), 120, "all readings stored", every=0.5)
        wait_for(lambda: read_depth(spool)[0] == 0, 60, "the spool drained")
        stored = _stored(db_path)
        assert len(stored) == len(expected)  # exactly once
        assert set(stored) == expected  # every reading, with its value
        ((quarantined,),) = store_rows(db_path, "SELECT COUNT(*) FROM quarantine")
        assert quarantined == 0
    finally:
        _stop(gw, glog)
        for p, log in procs:
            _stop(p, log)
        for s in sims:
            s.stop()

"""No loss, no duplicates: 20,000 readings at QoS 1 while the collector process is SIGKILLed twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from tests.support.stack import wait_for
from tests.support.store_reads import store_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 20_000
DEVICES = 20


def _start_collector(tmp_path, broker, n: int) -> tuple[subprocess.Popen, object]:
    log = open(tmp_path / f"collector-{n}.log", "wb")  # noqa: SIM115 - closed by the caller
    env = {**os.environ, "COLDTRACE_MQTT__CLIENT_ID": "ct-noloss", "COLDTRACE_LOG_LEVEL": "INFO",
           "COLDTRACE_STORE__SQLITE_SYNCHRONOUS": "FULL"}
    proc = subprocess.Popen([sys.executable, "-m", "coldtrace.cli", "collector", "--mqtt-url", broker.url,
                             "--data-dir", str(tmp_path / "data")], stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_for(lambda: b"connected to MQTT broker" in (tmp_path / f"collector-{n}.log").read_bytes(), 30,
             "collector connected")
    return proc, log


def _count(db_path) -> int:
    rows = store_rows(db_path, "SELECT COUNT(*) FROM readings", missing_ok=True)
    return rows[0][0] if rows else 0


def test_sigkill_twice_loses_nothing_and_duplicates_nothing(tmp_path, mosquitto):
    db_path = tmp_path / "data" / "coldtrace.db"
    proc, log = _start_collector(tmp_path, mosquitto, 0)  # creates the persistent session
    base = int(time.time() * 1000) - 3 * 3600_000
    sent = {(f"NL-{i % DEVICES:03d}", base + (i // DEVICES) * 1000) for i in range(N)}

    def publish() -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "noloss-pub")
        c.max_inflight_messages_set(200)
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        infos = []
        for i in range(N):
            dev = f"NL-{i % DEVICES:03d}"
            body = {"v": 1, "device_id": dev, "seq": i // DEVICES,
                    "readings": [{"ts": base + (i // DEVICES) * 1000, "temp_c": round(4 + (i % 37) / 10, 2)}]}
            infos.append(c.publish(f"coldtrace/v1/devices/{dev}/readings", json.dumps(body), qos=1))
        for info in infos:
            info.wait_for_publish(60)
        c.loop_stop()
        c.disconnect()

    publisher = threading.Thread(target=publish)
    publisher.start()
    kills = 0
    try:
        for threshold in (N // 5, N // 2):
            wait_for(lambda t=threshold: _count(db_path) >= t, 120, f"{threshold} readings stored")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            log.close()
            kills += 1
            proc, log = _start_collector(tmp_path, mosquitto, kills)
        publisher.join(120)
        wait_for(lambda: _count(db_path) >= N, 180, "all readings stored")
        time.sleep(1.0)  # anything redelivered late must still change nothing
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()
        publisher.join(5)
    assert kills == 2
    stored = set(store_rows(db_path, "SELECT device_id, ts FROM readings"))
    ((count,),) = store_rows(db_path, "SELECT COUNT(*) FROM readings")
    ((quarantined,),) = store_rows(db_path, "SELECT COUNT(*) FROM quarantine")
    assert count == N
    assert stored == sent
    assert quarantined == 0

"""A profile edit or a profile assignment made through the API takes effect on MQTT ingest at once, although
ingest runs in another process (the collector, and inside it the ingest child process).

Before the fix the profile cache was cleared only in the API's own process: the collector kept judging a
device by the old limits until it restarted (a GxP defect: readings judged against limits nobody set).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from tests.support.services import free_port, stop_processes
from tests.support.stack import wait_for
from tests.support.store_reads import store_rows

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "coldtrace.cli"]
MINUTE = 60_000


def _call(method: str, url: str, token: str, body: dict | None = None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read() or b"null")


def _excursions(db_path, device: str) -> list[tuple]:
    return store_rows(db_path, "SELECT limit_id, direction, threshold_c FROM excursions WHERE device_id = ?"
                      " AND series_id = device_id AND superseded = 0 ORDER BY start_ts, limit_id", (device,))


def _count(db_path, device: str) -> int:
    return store_rows(db_path, "SELECT COUNT(*) FROM readings WHERE device_id = ?", (device,))[0][0]


@pytest.fixture
def processes(tmp_path, mosquitto):
    """A collector (with its ingest child) and an API, two processes on one data directory."""
    data = tmp_path / "data"
    env = {**os.environ, "COLDTRACE_INGEST__WORKER_PROCESS": "true", "COLDTRACE_MQTT__CLIENT_ID": "ct-profiles"}
    r = subprocess.run([*CLI, "token", "create", "--data-dir", str(data), "--role", "admin", "--name", "test"],
                       capture_output=True, text=True, timeout=30, env=env, check=True)
    token = re.search(r"(ct_[A-Za-z0-9_-]+)", r.stdout).group(1)
    logs = [open(tmp_path / n, "wb") for n in ("collector.log", "api.log")]  # noqa: SIM115 - closed below
    procs = [subprocess.Popen([*CLI, "collector", "--mqtt-url", mosquitto.url, "--data-dir", str(data)],
                              stdout=logs[0], stderr=subprocess.STDOUT, env=env)]
    try:
        wait_for(lambda: b"connected to MQTT broker" in (tmp_path / "collector.log").read_bytes(), 30,
                 "collector connected")
        # The API starts after the collector has made its connections, and on a port chosen then; should
        # another socket still take the port between free_port() and the bind, the API is started again on
        # another one (the log says why; anything else fails the test with the API's log).
        for _attempt in range(3):
            port = free_port()
            api = subprocess.Popen([*CLI, "api", "--data-dir", str(data), "--api-port", str(port)],
                                   stdout=logs[1], stderr=subprocess.STDOUT, env=env)
            procs.append(api)

            def api_up(port=port) -> bool:
                try:
                    return _call("GET", f"http://127.0.0.1:{port}/api/v1/health", token) is not None
                except OSError:
                    return False

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and api.poll() is None and not api_up():
                time.sleep(0.1)
            if api.poll() is None and api_up():
                break
            log_text = (tmp_path / "api.log").read_text(errors="replace")
            if api.poll() is None or "address already in use" not in log_text.lower():
                raise AssertionError(f"the API did not serve on port {port}; its log:\n{log_text}")
        else:
            raise AssertionError("the API found no free port in three attempts")
        yield data / "coldtrace.db", f"http://127.0.0.1:{port}/api/v1", token
    finally:
        stop_processes(procs)
        for f in logs:
            f.close()


def _publish(port: int, device: str, readings: list[tuple[int, float]], seq: int) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, f"pub-{device}-{seq}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        body = {"v": 1, "device_id": device, "seq": seq,
                "readings": [{"ts": ts, "temp_c": t} for ts, t in readings]}
        c.publish(f"coldtrace/v1/devices/{device}/readings", json.dumps(body), qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_assignment_and_edit_through_the_api_apply_to_mqtt_ingest_in_another_process(processes, mosquitto):
    db_path, api, token = processes
    t0 = (int(time.time() * 1000) // MINUTE - 600) * MINUTE  # ten hours ago, whole minutes

    # 1. a logger on the default 2-8 °C profile: 5 °C is in range, nothing to say
    _publish(mosquitto.port, "LOG-P1", [(t0, 5.0)], 1)
    wait_for(lambda: _count(db_path, "LOG-P1") == 1, 20, "the first reading stored")
    assert _excursions(db_path, "LOG-P1") == []

    # 2. QA moves it to 15-25 °C through the API (another process): the collector must judge by it at once
    _call("PUT", f"{api}/devices/LOG-P1/profile", token, {"profile_id": "15-25C"})
    _publish(mosquitto.port, "LOG-P1", [(t0 + i * MINUTE, 5.0) for i in range(1, 91)], 2)
    wait_for(lambda: _count(db_path, "LOG-P1") == 91, 20, "the second message stored")
    wait_for(lambda: ("low", "below", 15.0) in _excursions(db_path, "LOG-P1"), 20,
             "a 'below 15 °C' excursion judged by the newly assigned profile")

    # 3. a custom profile edited through the API: the new threshold applies to the next readings
    prof = _call("POST", f"{api}/profiles", token, {
        "id": "cust-fridge", "name": "custom fridge", "limits": [
            {"id": "high", "direction": "above", "threshold_c": 8.0, "severity": "alarm", "delay_ms": 0}]})
    assert prof["id"] == "cust-fridge"
    _publish(mosquitto.port, "LOG-P2", [(t0, 6.0)], 1)  # registers LOG-P2 (2-8 °C): in range
    wait_for(lambda: _count(db_path, "LOG-P2") == 1, 20, "LOG-P2's first reading stored")
    _call("PUT", f"{api}/devices/LOG-P2/profile", token, {"profile_id": "cust-fridge"})
    _publish(mosquitto.port, "LOG-P2", [(t0 + MINUTE, 6.0)], 2)
    wait_for(lambda: _count(db_path, "LOG-P2") == 2, 20, "LOG-P2's second reading stored")
    assert _excursions(db_path, "LOG-P2") == []  # 6 °C is under the custom 8 °C
    _call("POST", f"{api}/profiles", token, {  # the same id again: a change of the custom profile
        "id": "cust-fridge", "name": "custom fridge", "limits": [
            {"id": "high", "direction": "above", "threshold_c": 5.5, "severity": "alarm", "delay_ms": 0}]})
    _publish(mosquitto.port, "LOG-P2", [(t0 + 2 * MINUTE, 6.0)], 3)
    wait_for(lambda: _count(db_path, "LOG-P2") == 3, 20, "LOG-P2's third reading stored")
    wait_for(lambda: ("high", "above", 5.5) in _excursions(db_path, "LOG-P2"), 20,
             "an excursion above the edited 5.5 °C threshold")

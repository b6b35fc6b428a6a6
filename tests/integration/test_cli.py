"""The command line as a person uses it: `coldtrace run --simulate`, and clear one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.services import free_port
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "coldtrace.cli"]


def _get(url: str, token: str | None = None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def test_run_simulate_serves_the_api_with_readings_within_ten_seconds(tmp_path):
    api_port, mqtt_port = free_port(), free_port()
    out = tmp_path / "run.log"
    with open(out, "wb") as f:
        proc = subprocess.Popen([*CLI, "run", "--simulate", "--loggers", "4", "--data-dir", str(tmp_path / "d"),
                                 "--api-port", str(api_port), "--mqtt-port", str(mqtt_port)],
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        # the token's own line: a log line naming a file with "ct_" in it (a migration) is not the token
        token_re = re.compile(rb"^\s+(ct_[A-Za-z0-9_-]{30,})\s*$", re.M)
        wait_for(lambda: token_re.search(out.read_bytes()) is not None, 10, "the bootstrap token")
        token = token_re.search(out.read_bytes()).group(1).decode()
        # the token is also in a file of the data directory that only its owner can read, and the console
        # says where (a token scrolled away among log lines is not lost)
        token_file = tmp_path / "d" / "bootstrap-admin-token"
        assert token_file.read_text().strip() == token
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert str(token_file.resolve()) in out.read_text()

        def readings_arrived() -> bool:
            try:
                return _get(f"http://127.0.0.1:{api_port}/api/v1/metrics", token)["readings"] > 0
            except OSError:
                return False

        wait_for(readings_arrived, 10, "simulated readings in the API")
        assert time.monotonic() - t0 < 10
        assert _get(f"http://127.0.0.1:{api_port}/api/v1/health")["status"] == "ok"
        devices = _get(f"http://127.0.0.1:{api_port}/api/v1/devices", token)
        assert len([d for d in devices if d["id"].startswith("LOG-")]) == 4  # + the simulated bench
        # the bench's devices are registered as bench devices: calibration rules judge them, not 2-8 °C
        bench = {d["id"]: d["role"] for d in devices if d["id"].startswith("BENCH-")}
        assert bench == {"BENCH-REF-1": "calibration_reference", **{f"BENCH-LOG-{i}": "device_under_calibration"
                                                                    for i in (1, 2, 3)}}
        text = out.read_text()
        assert "embedded MQTT broker" in text and "API and QA pages on" in text and "Simulating 4 loggers" in text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert proc.returncode == 0


def _run(args: list[str], timeout: float = 20, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_bad_mqtt_url_is_one_clear_line(tmp_path):
    r = _run(["collector", "--mqtt-url", "http://broker:1883", "--data-dir", str(tmp_path)])
    assert r.returncode == 2
    assert "must start with mqtt:// or mqtts://" in r.stderr
    assert "Traceback" not in r.stderr


def test_unwritable_data_dir_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = _run(["api", "--data-dir", str(blocker / "sub")])
    assert r.returncode == 2
    assert "cannot be written" in r.stderr and "Traceback" not in r.stderr


def test_unreachable_broker_is_retried_with_back_off_and_said(tmp_path):
    port = free_port()  # nothing listens there
    out = tmp_path / "col.log"
    with open(out, "wb") as f:
        proc = subprocess.Popen([*CLI, "collector", "--mqtt-url", f"mqtt://127.0.0.1:{port}",
                                 "--data-dir", str(tmp_path / "d")], stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: out.read_text().count("retrying in") >= 2, 10, "two retries reported")
        text = out.read_text()
        assert "retrying in 1 s" in text and "retrying in 2 s" in text
        assert "Traceback" not in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)

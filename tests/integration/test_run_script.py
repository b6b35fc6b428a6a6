"""scripts/run.sh installs only when pyproject/requirements changed, so a second start serves at once and
offline; `coldtrace publish` finds the running instance's broker through runtime.json in its data dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import free_port
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the scripts and pyproject.toml whose .venv has the real `coldtrace` and a `python` that
    only records what the installer asked of it (no package index is reached)."""
    repo = tmp_path / "checkout"
    (repo / "scripts").mkdir(parents=True)
    for f in ("scripts/run.sh", "scripts/setup.sh", "scripts/install-stamp.sh", "pyproject.toml"):
        shutil.copy(REPO / f, repo / f)
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    calls = tmp_path / "installer-calls.log"
    stub = bin_ / "python"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    (bin_ / "coldtrace").symlink_to(VENV_BIN / "coldtrace")
    return repo, calls


def _serves(port: int) -> bool:
    """The API answers (its health may still say degraded while the collector connects)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1) as r:  # noqa: S310
            return json.loads(r.read())["status"] in ("ok", "degraded")
    except OSError:
        return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1) as r:  # noqa: S310
            return json.loads(r.read())["status"] == "ok"
    except OSError:
        return False


def _start(repo: Path, data: Path, api_port: int, mqtt_port: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(["bash", str(repo / "scripts" / "run.sh"), "--loggers", "2", "--data-dir",
                                 str(data), "--api-port", str(api_port), "--mqtt-port", str(mqtt_port)],
                                stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHON": sys.executable})


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(30)


def _installs(calls: Path) -> int:
    return sum("install" in line and " -e " in f" {line} " for line in calls.read_text().splitlines()) \
        if calls.exists() else 0


def test_second_start_installs_nothing_and_serves_at_once(tmp_path):
    """The second start installs nothing, so it needs no network and serves within seconds; the seconds
    themselves are printed by bench/startup.py (tests assert no wall-clock figure: CONVENTIONS.md)."""
    repo, calls = _checkout(tmp_path)
    data, log = tmp_path / "data", tmp_path / "run.log"
    api_port, mqtt_port = free_port(), free_port()

    proc = _start(repo, data, api_port, mqtt_port, log)
    try:
        wait_for(lambda: _healthy(api_port), 30, "the first start to serve")
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-2000:]
    assert _installs(calls) == 1, calls.read_text()
    assert (repo / ".venv" / ".coldtrace-install-stamp").exists()

    t0 = time.monotonic()
    proc = _start(repo, data, api_port, mqtt_port, log)
    try:
        wait_for(lambda: _serves(api_port), 30, "the second start to serve")
        print(f"second start served after {time.monotonic() - t0:.2f} s")
        wait_for(lambda: _healthy(api_port), 30, "the collector connected")
    finally:
        code = _stop(proc)
    assert code == 0, log.read_text()[-2000:]
    assert _installs(calls) == 1, "the second start ran the installer"

    # a changed pyproject.toml installs again (--help: coldtrace then exits at once)
    with open(repo / "pyproject.toml", "a") as f:
        f.write("\n# a new dependency\n")
    r = subprocess.run(["bash", str(repo / "scripts" / "run.sh"), "--help"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr
    assert "installing again" in r.stdout
    assert _installs(calls) == 2


def test_an_install_by_setup_sh_is_trusted_by_run_sh(tmp_path):
    """scripts/setup.sh (or scripts/test.sh) stamps its install too: run.sh after it installs nothing."""
    repo, calls = _checkout(tmp_path)
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert _installs(calls) == 1 and (repo / ".venv" / ".coldtrace-install-stamp").exists()
    r = subprocess.run(["bash", str(repo / "scripts" / "run.sh"), "--help"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and "usage: coldtrace run" in r.stdout, r.stderr
    assert _installs(calls) == 1, "run.sh installed again after setup.sh"
    r = subprocess.run(["bash", str(repo / "scripts" / "run.sh"), "--help"], capture_output=True, text=True,
                       timeout=60, env={**env, "COLDTRACE_REINSTALL": "1"})
    assert r.returncode == 0 and _installs(calls) == 2 and "changed" not in r.stdout


def test_publish_reaches_the_running_instance_without_naming_its_ports(tmp_path):
    data, log = tmp_path / "data", tmp_path / "run.log"
    api_port, mqtt_port = free_port(), free_port()
    cli = [sys.executable, "-m", "coldtrace.cli"]
    with open(log, "wb") as f:
        proc = subprocess.Popen([*cli, "run", "--data-dir", str(data), "--api-port", str(api_port),
                                 "--mqtt-port", str(mqtt_port)], stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (data / "runtime.json").exists() and _healthy(api_port), 30, "the instance")
        info = json.loads((data / "runtime.json").read_text())
        assert info["mqtt_url"] == f"mqtt://127.0.0.1:{mqtt_port}" and info["pid"] == proc.pid
        r = subprocess.run([*cli, "url", "api", "--data-dir", str(data)], capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == f"http://127.0.0.1:{api_port}"
        r = subprocess.run([*cli, "publish", "--data-dir", str(data), "--device", "LOG-PUB", "--temp", "4.5", "26.4",
                            "--seq", "1"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "acknowledged by the broker" in r.stdout
        r = subprocess.run([*cli, "publish", "--data-dir", str(data), "--device", "LOG-PUB", "--raw", '{"v":1,'],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr

        from coldtrace.store.db import Database

        def arrived() -> bool:
            db = Database(data / "coldtrace.db")
            try:
                n = db.query_one("SELECT COUNT(*) FROM readings WHERE device_id = 'LOG-PUB'")[0]
                q = db.query_one("SELECT COUNT(*) FROM quarantine WHERE device_id = 'LOG-PUB'"
                                 " AND reason = 'bad_json'")[0]
                return n == 2 and q == 1
            finally:
                db.close()

        wait_for(arrived, 10, "both readings stored and the malformed message quarantined")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert not (data / "runtime.json").exists(), "runtime.json is removed when the instance stops"
    r = subprocess.run([*cli, "publish", "--data-dir", str(data), "--device", "LOG-PUB", "--temp", "4"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no running `coldtrace run`" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_while_starting_stops_cleanly(tmp_path):
    """Interrupted before it serves (here: while the collector retries an absent broker): no traceback."""
    log = tmp_path / "run.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "coldtrace.cli", "run", "--data-dir", str(tmp_path / "d"),
                                 "--mqtt-url", f"mqtt://127.0.0.1:{free_port()}", "--api-port", str(free_port())],
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"retrying in" in log.read_bytes(), 30, "the collector retrying the broker")
    finally:
        code = _stop(proc)
    text = log.read_text()
    assert code == 0 and "Stopped while starting." in text and "Traceback" not in text, text[-2000:]

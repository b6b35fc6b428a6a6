"""`coldtrace doctor` against real Mosquitto brokers: what it verifies about the broker (connection, $SYS,
version, inflight window, the queue limit it measures), the store and the clock."""

from __future__ import annotations

import subprocess
import sys

import pytest

from coldtrace.doctor import TIME_ERROR, check_clock
from coldtrace.settings import load_settings
from tests.support.services import Mosquitto, free_port

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "coldtrace.cli", "doctor"]


def _doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_broker(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    broker = Mosquitto(d, extra_conf="max_queued_messages 10\nmax_inflight_messages 20\n")
    broker.start()
    yield broker
    broker.stop()


def test_doctor_measures_a_too_small_queue(small_broker, tmp_path):
    r = _doctor("--mqtt-url", small_broker.url, "--probe-queue", "30", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert f"ok    connected to {small_broker.url} (MQTT 5)" in out
    assert "$SYS available" in out and "version: mosquitto version 2." in out
    assert "Receive Maximum, Mosquitto max_inflight_messages): 20" in out
    assert "FAIL  the broker kept only 10 of 30 QoS 1 messages for an offline session" in out
    assert "The probe's own 20 dropped messages count in $SYS/broker/publish/messages/dropped" in out
    assert "persistence (autosave_on_changes / autosave_interval) cannot be seen" in out
    assert "no store yet" in out and "clock:" in out and "system time" in out


def test_doctor_on_a_well_configured_broker_and_store(mosquitto, tmp_path):
    from coldtrace.wiring import build_services

    data = tmp_path / "d"
    build_services(load_settings(data_dir=data)).close()  # a store as `coldtrace run` leaves it
    r = _doctor("--mqtt-url", mosquitto.url, "--probe-queue", "200", "--data-dir", str(data))
    out = r.stdout
    assert "ok    the broker kept all 200 QoS 1 messages for an offline session" in out, out
    assert "ok    no message dropped since the broker started" in out
    assert "integrity ok" in out and "journal wal, synchronous FULL" in out
    assert "FAIL" not in out and r.returncode == 0, out


def test_doctor_says_when_the_broker_is_unreachable(tmp_path):
    r = _doctor("--mqtt-url", f"mqtt://127.0.0.1:{free_port()}", "--data-dir", str(tmp_path))
    assert r.returncode == 1
    assert "FAIL  cannot connect to mqtt://127.0.0.1:" in r.stdout and "Traceback" not in r.stderr


def test_clock_findings(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    unsynced = check_clock(settings, 1_790_000_000_000, lambda: (TIME_ERROR, 16.0))
    assert any(f.level == "warn" and "NOT synchronised" in f.text and "16.0 s" in f.text for f in unsynced)
    synced = check_clock(settings, 1_790_000_000_000, lambda: (0, 0.012))
    assert any(f.level == "ok" and "synchronised (max error 12 ms)" in f.text for f in synced)

"""The compose ACL lets the collector's user read the broker's $SYS counters it watches (and a logger not):
`coldtrace doctor` with the collector's credentials against a real Mosquitto using deploy/mosquitto/acl."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldtrace.adapters import mqtt_access
from tests.support.services import Mosquitto

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USERS = {"coldtrace": "collector-pw-1", "LOG-A": "log-a-pw-1"}


@pytest.fixture
def compose_broker(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{u}:{mqtt_access.hash_password(p)}\n" for u, p in USERS.items()))
    passwd.chmod(0o600)
    d = tmp_path / "broker"
    d.mkdir()
    broker = Mosquitto(d, extra_conf=f"per_listener_settings false\nallow_anonymous false\n"
                                     f"password_file {passwd}\nacl_file {ROOT / 'deploy/mosquitto/acl'}\n")
    broker.start()
    yield broker
    broker.stop()


def _doctor(broker: Mosquitto, user: str, tmp_path: Path) -> str:
    env = {**os.environ, "COLDTRACE_MQTT__USERNAME": user, "COLDTRACE_MQTT__PASSWORD": USERS[user]}
    r = subprocess.run([sys.executable, "-m", "coldtrace.cli", "doctor", "--mqtt-url", broker.url, "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=60, env=env)
    return r.stdout


def test_the_collector_user_reads_the_sys_counters_a_logger_does_not(compose_broker, tmp_path):
    out = _doctor(compose_broker, "coldtrace", tmp_path)
    assert "connected to" in out and "as coldtrace" in out
    assert "$SYS available (4 topics)" in out and "no message dropped since the broker started" in out
    out = _doctor(compose_broker, "LOG-A", tmp_path)
    assert "as LOG-A" in out and "no $SYS topics" in out

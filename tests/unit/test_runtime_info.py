"""runtime.json: where a running `coldtrace run` listens; a file left by a killed process is recognised."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from coldtrace import runtime_info
from coldtrace.cli_ops import resolve_mqtt_url
from coldtrace.core.errors import ConfigError
from coldtrace.settings import load_settings


def _args(mqtt_url: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(mqtt_url=mqtt_url)


@pytest.fixture(autouse=True)
def no_env_broker(monkeypatch):
    monkeypatch.delenv("COLDTRACE_MQTT__URL", raising=False)


def test_the_running_instance_is_found(tmp_path):
    runtime_info.write(tmp_path, runtime_info.RuntimeInfo(os.getpid(), "mqtt://127.0.0.1:18830",
                                                          "http://127.0.0.1:18080", 1))
    assert resolve_mqtt_url(_args(), load_settings(data_dir=tmp_path)) == "mqtt://127.0.0.1:18830"
    # an explicit URL wins
    assert resolve_mqtt_url(_args(mqtt_url="mqtt://b:1"), load_settings(data_dir=tmp_path)) == "mqtt://b:1"
    runtime_info.remove(tmp_path, pid=os.getpid() + 1)  # not ours: kept
    assert runtime_info.read(tmp_path) is not None
    runtime_info.remove(tmp_path, pid=os.getpid())
    assert runtime_info.read(tmp_path) is None


def test_a_file_left_by_a_killed_instance_is_stale(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runtime_info.write(tmp_path, runtime_info.RuntimeInfo(dead.pid, "mqtt://127.0.0.1:1883", None, 1))
    with pytest.raises(ConfigError, match="is no longer running"):
        resolve_mqtt_url(_args(), load_settings(data_dir=tmp_path))


def test_nothing_running(tmp_path):
    with pytest.raises(ConfigError, match="no running `coldtrace run`"):
        resolve_mqtt_url(_args(), load_settings(data_dir=tmp_path))
    (tmp_path / "runtime.json").write_text("{not json")
    assert runtime_info.read(tmp_path) is None

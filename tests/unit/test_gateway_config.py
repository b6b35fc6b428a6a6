"""gateway.toml as a pydantic-settings model: the file, COLDTRACE_* environment overrides, errors that name
the key (and the variable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldtrace.core.errors import ConfigError
from gateway.config import load_config

BASE = """
gateway_id = "GW-1"
[mqtt]
url = "mqtt://127.0.0.1:1883"
username = "from-file"
[spool]
path = "spool.db"
[[instruments]]
kind = "ctl1"
port = "/dev/ttyUSB0"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("COLDTRACE_"):
            monkeypatch.delenv(k)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.toml"
    p.write_text(text)
    return p


def test_the_file_alone(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.gateway_id == "GW-1" and cfg.mqtt_url == "mqtt://127.0.0.1:1883" and cfg.username == "from-file"
    assert cfg.spool_path == tmp_path / "spool.db"  # relative to the file
    assert [(i.kind, i.port, i.baudrate) for i in cfg.instruments] == [("ctl1", "/dev/ttyUSB0", 115200)]
    assert (cfg.max_batch_readings, cfg.inflight, cfg.spool_policy) == (1000, 100, "reject-new")


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDTRACE_MQTT__URL", "mqtt://mosquitto:1883")
    monkeypatch.setenv("COLDTRACE_MQTT__USERNAME", "devices")
    monkeypatch.setenv("COLDTRACE_MQTT__PASSWORD", "s3cret")
    monkeypatch.setenv("COLDTRACE_PUBLISH__INFLIGHT", "20")
    monkeypatch.setenv("COLDTRACE_GATEWAY_ID", "GW-DOCK-07")
    # the service's own settings in the same environment do not disturb the gateway
    monkeypatch.setenv("COLDTRACE_MQTT__EMBEDDED_PORT", "1884")
    monkeypatch.setenv("COLDTRACE_DATA_DIR", "/var/lib/coldtrace")
    cfg = load_config(write(tmp_path, BASE))
    assert (cfg.mqtt_url, cfg.username, cfg.password) == ("mqtt://mosquitto:1883", "devices", "s3cret")
    assert cfg.inflight == 20 and cfg.gateway_id == "GW-DOCK-07"
    assert cfg.instruments[0].port == "/dev/ttyUSB0"  # untouched keys keep the file's value


def test_the_broker_may_come_from_the_environment_only(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDTRACE_MQTT__URL", "mqtts://broker.site:8883")
    cfg = load_config(write(tmp_path, 'gateway_id = "GW-2"\n'))
    assert cfg.host_port_tls == ("broker.site", 8883, True)
    assert cfg.spool_path == tmp_path / "GW-2-spool.db"


@pytest.mark.parametrize(("text", "env", "needle"), [
    ('gateway_id = "GW 1"\n[mqtt]\nurl = "mqtt://h"\n', {}, "gateway_id: must match [A-Za-z0-9._-]{1,64}"),
    ('gateway_id = "GW-1"\n', {}, 'mqtt: is required (e.g. [mqtt] url = "mqtt://broker:1883"'),
    ('gateway_id = "GW-1"\n[mqtt]\nurl = "http://h:1883"\n', {}, "mqtt.url: MQTT URL 'http://h:1883' must start"),
    (BASE, {"COLDTRACE_MQTT__URL": "tcp//nohost"},
     "mqtt.url: MQTT URL 'tcp//nohost' must start with mqtt:// or mqtts:// (from the environment variable"
     " COLDTRACE_MQTT__URL)"),
    (BASE + "[publish]\ninflight = 0\n", {}, "publish.inflight: Input should be greater than or equal to 1"),
    (BASE + "[publish]\nbackoff_min_s = 5\nbackoff_max_s = 1\n", {}, "backoff_min_s must not exceed"),
    (BASE.replace('path = "spool.db"', 'path = "spool.db"\npolicy = "drop-newest"'), {},
     "spool.policy: must be one of reject-new, drop-oldest"),
    (BASE.replace("[spool]", "[spool]\nmax_byte = 5"), {}, "[spool]: unknown setting(s) ['max_byte']"),
    ("extra = 1\n" + BASE, {}, "unknown setting(s) ['extra']"),
    (BASE.replace('kind = "ctl1"', 'kind = "modbus"'), {}, "instruments[0] (/dev/ttyUSB0): instrument kind must be"),
    ('gateway_id = "GW-1"\n[mqtt\n', {}, "is not valid TOML"),
    (BASE, {"COLDTRACE_INSTRUMENTS": "ctl1 on /dev/ttyUSB1"},
     "instruments: the environment variable COLDTRACE_INSTRUMENTS is not valid JSON"),
])
def test_errors_name_the_key(tmp_path, monkeypatch, text, env, needle):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert needle in str(err.value)
    assert str(err.value).startswith(f"gateway config {p}")


def test_the_shipped_examples_load(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    assert load_config(root / "gateway.example.toml").gateway_id == "GW-DOCK-01"
    cfg = load_config(root / "deploy/gateway/gateway.toml")
    assert cfg.spool_path == Path("/var/lib/coldtrace-gateway/spool.db")

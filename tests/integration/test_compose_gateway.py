"""The compose `gateway` service with deploy/gateway/gateway.toml: the configuration the container gets from
`docker-compose config` (its environment and mounts) loads, with the broker and credentials from .env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from tests.integration.test_compose import ROOT, compose, mounts, secrets

pytestmark = pytest.mark.integration


def test_gateway_service_runs_with_the_shipped_gateway_toml(monkeypatch):
    res = compose("--profile", "gateway", "config", env={**secrets(), "GATEWAY_ID": "GW-SITE-3"})
    assert res.returncode == 0, res.stderr
    svc = yaml.safe_load(res.stdout)["services"]["gateway"]
    config_path = svc["command"][svc["command"].index("--config") + 1]
    # the file the command names is the repository's deploy/gateway/gateway.toml, mounted read-only
    source = next(src for src, target in mounts(svc) if config_path.startswith(target + "/"))
    local = Path(source) / Path(config_path).name
    assert local == ROOT / "deploy" / "gateway" / "gateway.toml" and local.exists()

    for k in list(os.environ):
        if k.startswith("COLDTRACE_"):
            monkeypatch.delenv(k)
    for k, v in svc["environment"].items():
        monkeypatch.setenv(k, str(v))
    cfg = load_config(local)
    assert cfg.mqtt_url == "mqtt://mosquitto:1883"
    assert (cfg.username, cfg.password) == ("devices", secrets()["MQTT_DEVICES_PASSWORD"])
    assert cfg.gateway_id == "GW-SITE-3"
    # the spool is on the gateway-spool volume, the instrument on the device passed into the container
    assert any(src == "gateway-spool" and str(cfg.spool_path).startswith(t + "/") for src, t in mounts(svc))
    devices = [d.split(":")[1] if isinstance(d, str) else d["target"] for d in svc["devices"]]
    assert [i.port for i in cfg.instruments] == devices == ["/dev/ttyUSB0"]
    # the image's user is not root: it may open the device through its group (dialout unless .env names one)
    assert svc["group_add"] == ["dialout"]
    assert "--groups dialout" in (ROOT / "Dockerfile").read_text()
    res = compose("--profile", "gateway", "config", env={**secrets(), "GATEWAY_SERIAL_GROUP": "18"})
    assert yaml.safe_load(res.stdout)["services"]["gateway"]["group_add"] in (["18"], [18])

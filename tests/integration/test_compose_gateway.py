"""The compose `gateway` service with deploy/gateway/gateway.toml: the configuration the container gets from
`docker-compose config` (its environment and mounts) loads, with the broker and credentials from .env; and the
gateway run so publishes a dock station's memory through the compose broker's listener and ACL."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from firmware_sim.serial_instruments import Ctl1Logger
from gateway.config import load_config
from tests.integration.test_compose import ROOT, compose, mounts, secrets
from tests.integration.test_compose_acl import compose_broker  # noqa: F401 - the fixture
from tests.integration.test_mqtt_acl import Client

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


def test_the_compose_gateway_publishes_through_the_compose_broker(compose_broker, tmp_path):  # noqa: F811 - fixture
    """`coldtrace gateway` as the compose service runs it: deploy/gateway/gateway.toml with the service's
    environment, as user `devices` on the device listener of the shipped mosquitto.conf and ACL. Changed, as
    the container's network and devices would: the broker's host name (loopback here), the spool path and the
    serial device (a CTL1 logger on a pseudo-terminal instead of /dev/ttyUSB0)."""
    broker, collector_port, users = compose_broker
    res = compose("--profile", "gateway", "config",
                  env={**secrets(), "MQTT_DEVICES_PASSWORD": users["devices"], "GATEWAY_ID": "GW-SITE-3"})
    assert res.returncode == 0, res.stderr
    svc = yaml.safe_load(res.stdout)["services"]["gateway"]
    config = ROOT / "deploy" / "gateway" / svc["command"][svc["command"].index("--config") + 1].rsplit("/", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDTRACE_")}
    env |= {k: str(v) for k, v in svc["environment"].items()}
    assert env["COLDTRACE_MQTT__URL"] == "mqtt://mosquitto:1883"
    env["COLDTRACE_MQTT__URL"] = f"mqtt://127.0.0.1:{broker.port}"
    env["COLDTRACE_SPOOL__PATH"] = str(tmp_path / "spool.db")
    link = tmp_path / "ttyUSB0"
    env["COLDTRACE_INSTRUMENTS"] = json.dumps([{"kind": "ctl1", "port": str(link), "mode": "dump"}])

    collector = Client(broker, "coldtrace", users["coldtrace"], "coldtrace-collector", port=collector_port)
    log = tmp_path / "gateway.log"
    try:
        assert not collector.rc.is_failure
        collector.c.subscribe([("coldtrace/v1/devices/+/readings", 1), ("coldtrace/v1/devices/+/status", 1)])
        collector.subacks.get(timeout=10)
        with Ctl1Logger(link, "LOG-DOCK-7", records=300) as sim, open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "coldtrace.cli", *svc["command"][:1], "--config",
                                     str(config)], env=env, stdout=f, stderr=subprocess.STDOUT)
            try:
                readings, statuses = [], []
                while len(readings) < 300 or not statuses:
                    try:
                        topic, payload = collector.messages.get(timeout=30)
                    except queue.Empty:
                        raise AssertionError(log.read_text()[-3000:]) from None
                    doc = json.loads(payload)
                    if topic.endswith("/readings"):
                        assert topic == "coldtrace/v1/devices/LOG-DOCK-7/readings"
                        readings += doc["readings"]
                    elif topic == "coldtrace/v1/devices/GW-SITE-3/status":
                        statuses.append(doc)
                expected = sim.readings()
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        assert [(r["ts"], r["temp_c"]) for r in readings] == [(x.ts, x.temp_c) for x in expected]
        text = log.read_text()
        assert "not authorized" not in text.lower() and "Traceback" not in text, text[-3000:]
    finally:
        collector.c.disconnect()
        collector.c.loop_stop()

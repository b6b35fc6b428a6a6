"""docker-compose.yml validated by Debian's docker-compose (`config`), plus the deployment rules it must keep:
no default secrets, health checks, named volumes, the gateway and demo profiles, a non-root image."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.services import find_binary, missing_service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ["MQTT_COLDTRACE_PASSWORD", "MQTT_DEVICES_PASSWORD", "INFLUXDB_ADMIN_PASSWORD",
           "INFLUXDB_WRITE_USER_PASSWORD", "INFLUXDB_READ_USER_PASSWORD", "GRAFANA_ADMIN_PASSWORD"]


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = find_binary("docker-compose", "/usr/bin/docker-compose")
    if binary is None:
        missing_service("docker-compose (Debian package docker-compose)")
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT), **env}
    return subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT),
                           *args], env=clean, capture_output=True, text=True, timeout=60, cwd=ROOT)


def mounts(svc: dict) -> list[tuple[str, str]]:
    """(source, target) of a service's volumes; docker-compose 1.x prints them as source:target:mode."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append((v.get("source", ""), v["target"]))
        else:
            source, target = v.split(":")[:2]
            out.append((source, target))
    return out


def secrets() -> dict[str, str]:
    return {name: f"test-{name.lower()}-x9" for name in SECRETS}


@pytest.fixture(scope="module")
def config() -> dict:
    res = compose("--profile", "demo", "--profile", "gateway", "config", env=secrets())
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def test_compose_config_is_valid_with_the_secrets_set():
    res = compose("config", "-q", env=secrets())
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_every_secret_is_required_and_the_message_says_where_to_set_it(missing):
    env = secrets()
    del env[missing]
    res = compose("config", "-q", env=env)
    assert res.returncode != 0
    assert f"set {missing} in .env" in res.stderr


def test_no_password_has_a_default_and_env_example_lists_every_secret():
    text = (ROOT / "docker-compose.yml").read_text()
    for ref in re.findall(r"\$\{([A-Z_]*(?:PASSWORD|TOKEN|SECRET)[A-Z_]*)([^}]*)\}", text):
        assert ref[1].startswith(":?"), f"{ref[0]} has a default or no error message"
    example = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert re.search(rf"^{name}=$", example, re.M), f"{name} missing (or pre-filled) in .env.example"


def test_services_profiles_healthchecks_and_volumes(config):
    services = config["services"]
    assert {"mosquitto", "influxdb", "grafana", "collector", "api", "gateway", "simulator"} <= set(services)
    assert services["gateway"]["profiles"] == ["gateway"]
    assert services["simulator"]["profiles"] == ["demo"]
    for name in ("mosquitto", "influxdb", "grafana", "collector", "api"):
        assert "profiles" not in services[name]
        assert services[name]["healthcheck"]["test"], name
    assert services["influxdb"]["image"].startswith("influxdb:1.8")
    assert services["collector"]["command"] == ["collector"] and services["api"]["command"] == ["api"]
    env = services["collector"]["environment"]
    assert env["COLDTRACE_STORE__BACKEND"] == "influx"
    assert env["COLDTRACE_STORE__INFLUX__URL"] == "http://influxdb:8086"
    assert services["api"]["environment"]["COLDTRACE_STORE__INFLUX__PASSWORD"] == \
        secrets()["INFLUXDB_WRITE_USER_PASSWORD"]
    # data lives in named volumes, not in containers or bind mounts
    named = set(config["volumes"])
    assert {"coldtrace-data", "influxdb-data", "grafana-data", "mosquitto-data"} <= named
    for name in ("collector", "api"):
        assert ("coldtrace-data", "/var/lib/coldtrace") in mounts(services[name])
    assert mounts(services["influxdb"]) == [("influxdb-data", "/var/lib/influxdb")]
    assert ("grafana-data", "/var/lib/grafana") in mounts(services["grafana"])
    assert ("mosquitto-data", "/mosquitto/data") in mounts(services["mosquitto"])
    # the broker only starts once its password file exists, and accepts no anonymous client
    assert services["mosquitto"]["depends_on"]["mosquitto-passwd"]["condition"] == \
        "service_completed_successfully"
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "password_file" in conf and "acl_file" in conf


def test_bind_mounted_files_exist(config):
    for name, svc in config["services"].items():
        for source, _target in mounts(svc):
            if source.startswith("/"):  # a bind mount of a file or folder of the repository
                assert Path(source).exists(), f"{name}: {source} does not exist"


def test_dockerfile_is_slim_non_root_with_coldtrace_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["coldtrace"\]$', text, re.M)

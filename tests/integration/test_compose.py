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
           "INFLUXDB_WRITE_USER_PASSWORD", "INFLUXDB_READ_USER_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
           "POSTGRES_PASSWORD", "COLDTRACE_AUDIT_HMAC_KEY", "COLDTRACE_AUDIT_SIGNING_KEY"]


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


def test_two_collectors_and_two_apis_share_postgresql_behind_one_entry_point(config):
    """Issue 15: PostgreSQL for the metadata, two collectors in one shared MQTT group (each its own session),
    two APIs that only the entry point publishes, and the same store and audit keys in all four."""
    services = config["services"]
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:") and "profiles" not in pg and pg["healthcheck"]["test"]
    assert pg["environment"]["POSTGRES_PASSWORD"] == secrets()["POSTGRES_PASSWORD"]  # from .env, no default
    assert ("postgres-data", "/var/lib/postgresql/data") in mounts(pg)
    assert "ports" not in pg  # the database is reachable from the stack's network only
    collectors, apis = ("collector", "collector-2"), ("api", "api-2")
    for name in collectors + apis:
        svc = services[name]
        env = svc["environment"]
        assert env["COLDTRACE_STORE__URL"] == f"postgresql://coldtrace:{secrets()['POSTGRES_PASSWORD']}@postgres:5432/coldtrace"
        assert env["COLDTRACE_AUDIT__HMAC_KEY"] == secrets()["COLDTRACE_AUDIT_HMAC_KEY"]
        assert env["COLDTRACE_AUDIT__SIGNING_KEY"] == secrets()["COLDTRACE_AUDIT_SIGNING_KEY"]
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert svc["command"] == (["collector"] if name in collectors else ["api"])
        assert "ports" not in svc, name  # only the entry point is published
        assert svc["healthcheck"]["test"], name
    assert {services[n]["environment"]["COLDTRACE_MQTT__SHARED_GROUP"] for n in collectors} == {"coldtrace"}
    ids = [services[n]["environment"]["COLDTRACE_MQTT__CLIENT_ID"] for n in collectors]
    assert len(set(ids)) == 2  # one persistent session each: a shared group splits messages between sessions
    entry = services["entry"]
    assert [(int(p["published"]), p["target"]) for p in entry["ports"]] == [(8080, 8080)]  # the API's old port
    assert mounts(entry) == [(str(ROOT / "deploy/nginx/coldtrace.conf"), "/etc/nginx/conf.d/default.conf")]
    conf = (ROOT / "deploy/nginx/coldtrace.conf").read_text()
    assert re.search(r"server api:8080", conf) and re.search(r"server api-2:8080", conf)
    trusted = services["api"]["environment"]["COLDTRACE_API__TRUSTED_PROXIES"]
    assert trusted == f"{entry['networks']['default']['ipv4_address']}/32"  # the APIs believe the entry point only
    acl = (ROOT / "deploy/mosquitto/acl").read_text()
    for kind in ("readings", "status"):  # the collector's user may read its shared subscriptions
        assert f"topic read $share/coldtrace/coldtrace/v1/devices/+/{kind}" in acl

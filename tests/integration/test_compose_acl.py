"""The compose stack's broker ACL (deploy/mosquitto/acl) against a real Mosquitto: a logger with its own user
writes only its own topics; the collector only reads; the trusted `devices` user publishes for many."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldtrace import mqtt_access
from tests.integration.test_mqtt_acl import Client
from tests.support.services import Mosquitto

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def compose_broker(tmp_path):
    passwd = tmp_path / "passwd"
    users = {"coldtrace": "collector-pw-1", "devices": "edge-pw-1", "LOG-A": "log-a-pw-1", "LOG-B": "log-b-pw-1"}
    passwd.write_text("".join(f"{u}:{mqtt_access.hash_password(p)}\n" for u, p in users.items()))
    passwd.chmod(0o600)
    d = tmp_path / "broker"
    d.mkdir()
    broker = Mosquitto(d, extra_conf=f"per_listener_settings false\nallow_anonymous false\n"
                                     f"password_file {passwd}\nacl_file {ROOT / 'deploy/mosquitto/acl'}\n")
    broker.start()
    yield broker, users
    broker.stop()


def test_compose_acl_binds_each_logger_to_its_own_topics(compose_broker):
    broker, users = compose_broker
    a = Client(broker, "LOG-A", users["LOG-A"], "log-a")
    edge = Client(broker, "devices", users["devices"], "edge")
    col = Client(broker, "coldtrace", users["coldtrace"], "collector")
    try:
        assert not a.rc.is_failure and not edge.rc.is_failure and not col.rc.is_failure
        assert not a.publish_acked("coldtrace/v1/devices/LOG-A/readings", b"{}").is_failure
        assert a.publish_acked("coldtrace/v1/devices/LOG-B/readings", b"{}").is_failure  # not its topic
        assert not edge.publish_acked("coldtrace/v1/devices/LOG-B/readings", b"{}").is_failure
        assert col.publish_acked("coldtrace/v1/devices/LOG-A/readings", b"{}").is_failure  # read-only
    finally:
        for c in (a, edge, col):
            c.close()

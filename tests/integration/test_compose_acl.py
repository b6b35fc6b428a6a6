"""The compose stack's broker configuration (deploy/mosquitto/mosquitto.conf's listeners and acl) against a
real Mosquitto: a logger with its own user writes only its own topics; the collector only reads, on its own
listener; the trusted `devices` user publishes for many; and no device credential can be the collector."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coldtrace.adapters import mqtt_access
from tests.integration.test_mqtt_acl import Client
from tests.support.services import Mosquitto, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy/mosquitto/mosquitto.conf"


@pytest.fixture
def compose_broker(tmp_path):
    """The listener part of the compose mosquitto.conf, verbatim but for ports (free, on loopback) and paths."""
    collector_users = {"coldtrace": "collector-pw-1"}
    users = {"devices": "edge-pw-1", "devices-demo": "edge-pw-1", "LOG-A": "log-a-pw-1", "LOG-B": "log-b-pw-1"}
    for name, table in (("passwd", users), ("collector-passwd", collector_users)):
        f = tmp_path / name
        f.write_text("".join(f"{u}:{mqtt_access.hash_password(p)}\n" for u, p in table.items()))
        f.chmod(0o600)
    d = tmp_path / "broker"
    d.mkdir()
    broker = Mosquitto(d, own_listener=False)
    collector_port = free_port()
    text = CONF.read_text()
    head, listeners = text.split("# --- listeners", 1)
    assert re.search(r"^per_listener_settings true$", head, re.M)
    listeners = (listeners.replace("listener 1883", f"listener {broker.port} 127.0.0.1")
                 .replace("listener 1884", f"listener {collector_port} 127.0.0.1")
                 .replace("/mosquitto/passwd/", f"{tmp_path}/")
                 .replace("/mosquitto/config/acl", str(ROOT / "deploy/mosquitto/acl")))
    broker.extra_conf = "per_listener_settings true\n# --- listeners" + listeners
    broker.start()
    yield broker, collector_port, {**users, **collector_users}
    broker.stop()


def test_compose_acl_binds_each_logger_to_its_own_topics(compose_broker):
    broker, collector_port, users = compose_broker
    a = Client(broker, "LOG-A", users["LOG-A"], "log-a")
    edge = Client(broker, "devices", users["devices"], "edge")
    col = Client(broker, "coldtrace", users["coldtrace"], "collector", port=collector_port)
    try:
        assert not a.rc.is_failure and not edge.rc.is_failure and not col.rc.is_failure
        assert not a.publish_acked("coldtrace/v1/devices/LOG-A/readings", b"{}").is_failure
        assert a.publish_acked("coldtrace/v1/devices/LOG-B/readings", b"{}").is_failure  # not its topic
        assert not edge.publish_acked("coldtrace/v1/devices/LOG-B/readings", b"{}").is_failure
        assert col.publish_acked("coldtrace/v1/devices/LOG-A/readings", b"{}").is_failure  # read-only
    finally:
        for c in (a, edge, col):
            c.close()


def test_compose_broker_keeps_the_collectors_client_id_for_the_collector(compose_broker):
    """A device (or the shared gateway user) that connects as `coldtrace-collector` neither disconnects the
    collector nor touches its session; the collector's user is not accepted on the device listener, nor a
    device's on the collector listener."""
    broker, collector_port, users = compose_broker
    col = Client(broker, "coldtrace", users["coldtrace"], "coldtrace-collector", port=collector_port)
    edge = None
    try:
        assert not col.rc.is_failure
        col.c.subscribe("coldtrace/v1/devices/+/readings", qos=1)
        assert all(rc.value < 0x80 for rc in col.subacks.get(timeout=10))
        thieves = [Client(broker, "LOG-A", users["LOG-A"], "coldtrace-collector"),
                   Client(broker, "devices", users["devices"], "coldtrace-collector")]
        refused = [Client(broker, "LOG-A", users["LOG-A"], "coldtrace-collector", port=collector_port),
                   Client(broker, "coldtrace", users["coldtrace"], "coldtrace-collector")]
        for c in thieves + refused:
            c.close()
        assert all(c.rc.value in (0x86, 0x87) for c in refused)
        edge = Client(broker, "devices", users["devices"], "edge")  # after the thieves: one session per user
        assert not edge.publish_acked("coldtrace/v1/devices/LOG-B/readings", b'{"after": 1}').is_failure
        assert col.messages.get(timeout=10) == ("coldtrace/v1/devices/LOG-B/readings", b'{"after": 1}')
        assert col.disconnects == []  # the collector was never kicked off (a takeover happens at CONNECT)
    finally:
        if edge is not None:
            edge.close()
        col.close()

"""Against a real Mosquitto with the config `coldtrace mqtt-config` writes: a device cannot publish as another."""

from __future__ import annotations

import queue
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from coldtrace import mqtt_access
from tests.support.services import Mosquitto

pytestmark = pytest.mark.integration


class Client:
    """A paho client that connects synchronously and exposes what arrived."""

    def __init__(self, broker: Mosquitto, user: str | None, password: str | None, client_id: str) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.connected: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.puback_event = threading.Condition()
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.put(rc)
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)

        def on_publish(c, u, mid, rc, p):
            with self.puback_event:
                self.pubacks[mid] = rc
                self.puback_event.notify_all()

        self.c.on_publish = on_publish
        self.c.connect(broker.host, broker.port, keepalive=30)
        self.c.loop_start()
        self.rc = self.connected.get(timeout=10)

    def publish_acked(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.c.publish(topic, payload, qos=1)
        with self.puback_event:
            assert self.puback_event.wait_for(lambda: info.mid in self.pubacks, timeout=10)
            return self.pubacks[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
        self.c._reset_sockets()  # paho 2 leaves its wake-up socket pair to the GC (a ResourceWarning)


@pytest.fixture
def secured(tmp_path):
    cfg = mqtt_access.write_config(tmp_path / "access", ["LOG-A", "LOG-B"], collector_password="collector-secret-1")
    d = tmp_path / "broker"
    d.mkdir()
    # as root the fixture's broker stays root (tests/support/services.py), so it can read the 0600 files
    broker = Mosquitto(d, extra_conf=cfg.conf_file.read_text())
    broker.start()
    yield broker, cfg
    broker.stop()


def test_device_writes_only_its_own_topics(secured):
    broker, cfg = secured
    creds = cfg.new_credentials
    assert set(creds) == {"LOG-A", "LOG-B"}  # the collector's password was given, so not generated
    collector = Client(broker, "coldtrace-collector", "collector-secret-1", "collector")
    dev_a = Client(broker, "LOG-A", creds["LOG-A"], "LOG-A")
    try:
        assert collector.rc == 0 and dev_a.rc == 0
        collector.c.subscribe("coldtrace/v1/devices/+/readings", qos=1)
        assert all(rc.value < 0x80 for rc in collector.subacks.get(timeout=10))

        forged = dev_a.publish_acked("coldtrace/v1/devices/LOG-B/readings", b'{"forged": true}')
        own = dev_a.publish_acked("coldtrace/v1/devices/LOG-A/readings", b'{"own": true}')
        assert forged.value == 0x87  # MQTT 5 "Not authorized"
        assert own.value == 0

        topic, payload = collector.messages.get(timeout=10)
        assert (topic, payload) == ("coldtrace/v1/devices/LOG-A/readings", b'{"own": true}')
        assert collector.messages.empty()  # the forged one never reached the collector

        # the collector only reads: its publish is refused too
        assert collector.publish_acked("coldtrace/v1/devices/LOG-A/readings", b"x").value == 0x87
    finally:
        dev_a.close()
        collector.close()


def test_anonymous_and_wrong_password_are_refused(secured):
    broker, cfg = secured
    anon = Client(broker, None, None, "anon")
    wrong = Client(broker, "LOG-A", "not-the-password", "wrong")
    try:
        assert anon.rc.is_failure and wrong.rc.is_failure
        assert wrong.rc.value in (0x86, 0x87)  # bad user name or password / not authorized
    finally:
        anon.close()
        wrong.close()


def test_rerun_keeps_existing_passwords_and_drops_removed_devices(tmp_path):
    first = mqtt_access.write_config(tmp_path, ["LOG-A", "LOG-B"])
    second = mqtt_access.write_config(tmp_path, ["LOG-A", "LOG-C"])
    assert set(second.new_credentials) == {"LOG-C"}
    stored = mqtt_access.read_password_file(second.password_file)
    assert mqtt_access.check_password(first.new_credentials["LOG-A"], stored["LOG-A"])
    assert "LOG-B" not in stored and "LOG-B" not in second.acl_file.read_text()
    assert oct(second.password_file.stat().st_mode & 0o777) == "0o600"

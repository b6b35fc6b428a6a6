"""deploy/mosquitto/mosquitto.conf is true to its claim: with its persistence settings a Mosquitto killed
with SIGKILL loses at most `autosave_interval` changes of what it had acknowledged (measured: a few), and a
clean stop loses nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.services import Mosquitto

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
N = 3000


def shipped_settings() -> tuple[str, int]:
    """The persistence and queue lines of the shipped configuration (paths and listeners are the test's)."""
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    keep = ("autosave_on_changes", "autosave_interval", "max_queued_messages", "max_queued_bytes",
            "max_inflight_messages")
    lines = [ln for ln in conf.splitlines() if ln.split(" ")[0] in keep]
    interval = int(re.search(r"^autosave_interval (\d+)$", conf, re.M).group(1))
    assert re.search(r"^autosave_on_changes true$", conf, re.M) and re.search(r"^persistence true$", conf, re.M)
    return "\n".join(lines), interval


def _client(broker: Mosquitto, cid: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
    c.max_inflight_messages_set(100)
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    return c


def _backlog_then(broker: Mosquitto, stop) -> int:
    """A persistent subscriber goes offline, N QoS 1 messages are acknowledged by the broker, ``stop`` ends
    the broker, it starts again: how many of the N does the subscriber receive?"""
    sub = _client(broker, "collector", clean=False)
    sub.subscribe("coldtrace/v1/devices/+/readings", qos=1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()
    pub = _client(broker, "gateway", clean=True)
    infos = [pub.publish("coldtrace/v1/devices/LOG-P/readings", b'{"v":1}', qos=1) for _ in range(N)]
    for i in infos:
        i.wait_for_publish(30)
    assert all(i.is_published() for i in infos)  # every one acknowledged (PUBACK)
    pub.disconnect()
    pub.loop_stop()
    stop()
    broker.start()
    got = []
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="collector", clean_session=False)
    sub.on_message = lambda c, u, m: got.append(m.mid)
    sub.connect(broker.host, broker.port, 30)
    sub.loop_start()
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < 1.0:
        if len(got) != last:
            last, quiet_since = len(got), time.monotonic()
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    return len(got)


def test_sigkill_loses_at_most_autosave_interval_acknowledged_messages(tmp_path):
    extra, interval = shipped_settings()
    broker = Mosquitto(tmp_path, extra_conf=extra)
    broker.start()

    def sigkill() -> None:
        broker.proc.kill()
        broker.proc.wait()
        broker.proc = None

    try:
        received = _backlog_then(broker, sigkill)
    finally:
        broker.stop()
    assert N - interval <= received <= N, f"lost {N - received} acknowledged messages"


def test_clean_stop_loses_nothing(tmp_path):
    extra, _ = shipped_settings()
    broker = Mosquitto(tmp_path, extra_conf=extra)
    broker.start()
    try:
        assert _backlog_then(broker, broker.stop) == N
    finally:
        broker.stop()

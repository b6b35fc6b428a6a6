"""What a Mosquitto keeps of the QoS 1 messages it acknowledged across a stop or a crash: shared by
tests/integration/test_broker_persistence.py (the shipped settings hold their claim) and
bench/broker_persistence.py (the figures docs/deployment.md quotes, per setting)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.services import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "coldtrace/v1/devices/LOG-P/readings"


def shipped_settings() -> tuple[str, int]:
    """The persistence and queue lines of the shipped configuration (paths and listeners are the test's)."""
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    keep = ("autosave_on_changes", "autosave_interval", "max_queued_messages", "max_queued_bytes",
            "max_inflight_messages")
    lines = [ln for ln in conf.splitlines() if ln.split(" ")[0] in keep]
    interval = int(re.search(r"^autosave_interval (\d+)$", conf, re.M).group(1))
    assert re.search(r"^autosave_on_changes true$", conf, re.M) and re.search(r"^persistence true$", conf, re.M)
    return "\n".join(lines), interval


def sigkill(broker: Mosquitto) -> None:
    """Kill the broker as a crash would (no chance to write its persistence file)."""
    broker.proc.kill()
    broker.proc.wait()
    broker.proc = None


def _client(broker: Mosquitto, cid: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
    c.max_inflight_messages_set(100)
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    return c


def backlog_across_restart(broker: Mosquitto, n: int, stop: Callable[[], None], *, quiet_s: float = 1.0,
                           publish_timeout_s: float = 30) -> tuple[int, float]:
    """A persistent subscriber goes offline, ``n`` QoS 1 messages are each acknowledged by the broker (PUBACK),
    ``stop`` ends the broker, it starts again on the same persistence file and the subscriber reconnects.
    -> (messages the subscriber received, publish rate in acknowledged messages/s)."""
    sub = _client(broker, "collector", clean=False)
    sub.subscribe("coldtrace/v1/devices/+/readings", qos=1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()
    pub = _client(broker, "gateway", clean=True)
    t0 = time.monotonic()
    infos = [pub.publish(TOPIC, b'{"v":1}', qos=1) for _ in range(n)]
    for i in infos:
        i.wait_for_publish(publish_timeout_s)
    rate = n / (time.monotonic() - t0)
    assert all(i.is_published() for i in infos)  # every one acknowledged (PUBACK)
    pub.disconnect()
    pub.loop_stop()
    stop()
    broker.start()
    got: list[int] = []
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="collector", clean_session=False)
    sub.on_message = lambda c, u, m: got.append(m.mid)
    sub.connect(broker.host, broker.port, 30)
    sub.loop_start()
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        if len(got) != last:
            last, quiet_since = len(got), time.monotonic()
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    return len(got), rate

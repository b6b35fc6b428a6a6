"""Helpers for the gateway tests: a gateway.toml writer and a persistent-session MQTT subscriber."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt


def write_config(path: Path, *, broker_url: str, ports: list[str], spool: Path, gateway_id: str = "GW-TEST",
                 spool_extra: str = "", scpi: list[str] = ()) -> Path:
    inst = "".join(f'\n[[instruments]]\nkind = "ctl1"\nport = "{p}"\nmode = "dump"\n' for p in ports)
    inst += "".join(f'\n[[instruments]]\nkind = "scpi"\nport = "{p}"\ninterval_s = 0.05\n' for p in scpi)
    path.write_text(f"""
gateway_id = "{gateway_id}"

[mqtt]
url = "{broker_url}"

[spool]
path = "{spool}"
{spool_extra}

[publish]
status_interval_s = 0.5
backoff_min_s = 0.05
backoff_max_s = 0.5
{inst}""")
    return path


class Subscriber:
    """Counts what reaches the broker: every readings message, and the retained gateway status."""

    def __init__(self, port: int, client_id: str = "gw-test-sub") -> None:
        self.messages: list[dict] = []
        self.status: dict[str, dict] = {}  # the latest status of each gateway
        self.status_log: list[dict] = []  # every status, in arrival order
        self.lock = threading.Lock()
        self.connected = threading.Event()
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("coldtrace/v1/devices/+/#", qos=1)
        c.on_subscribe = lambda cl, u, mid, rcs, p: self.connected.set()  # the session now holds it
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert self.connected.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        doc = json.loads(msg.payload)
        with self.lock:
            if kind == "readings":
                self.messages.append(doc)
            elif kind == "status":
                self.status[msg.topic.split("/")[3]] = doc
                self.status_log.append(doc)

    def keys(self) -> set[tuple[str, int]]:
        with self.lock:
            return {(m["device_id"], r["ts"]) for m in self.messages for r in m["readings"]}

    def count(self) -> int:
        with self.lock:
            return sum(len(m["readings"]) for m in self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(cond, timeout: float = 30.0, what: str = "condition", every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: S110 - e.g. a spool file being created; try again
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

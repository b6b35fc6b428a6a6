"""`coldtrace run` (embedded broker) killed with SIGKILL during a fast QoS 1 publish: which acknowledged
readings survive. Shared by tests/integration/test_embedded_broker_durability.py and bench/embedded_kill.py."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from tests.support.store_reads import store_rows

CLI = [sys.executable, "-m", "coldtrace.cli"]


@dataclass
class Server:
    proc: subprocess.Popen
    api_port: int
    mqtt_port: int
    log: Path


def start_run(data_dir: Path, api_port: int, mqtt_port: int, log: Path) -> Server:
    f = open(log, "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "COLDTRACE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([*CLI, "run", "--data-dir", str(data_dir), "--api-port", str(api_port),
                             "--mqtt-port", str(mqtt_port)], stdout=f, stderr=subprocess.STDOUT, env=env)
    f.close()
    return Server(proc, api_port, mqtt_port, log)


def serving(s: Server) -> bool:
    """The API answers its health check and the broker accepts an MQTT connection."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.api_port}/api/v1/health", timeout=2) as r:  # noqa: S310
            if json.loads(r.read())["status"] != "ok":
                return False
    except (OSError, ValueError):
        return False
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, f"probe-{random.randrange(10**9)}")
    try:
        return c.connect("127.0.0.1", s.mqtt_port, keepalive=5) == 0
    except OSError:
        return False
    finally:
        try:
            c.disconnect()
        except OSError:
            pass


def wait_serving(s: Server, timeout: float) -> float:
    """Seconds until ``s`` serves; raises AssertionError after ``timeout`` (with the process's log)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if s.proc.poll() is not None:
            raise AssertionError(f"coldtrace run exited ({s.proc.returncode}):\n{s.log.read_text()[-3000:]}")
        if serving(s):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"coldtrace run not serving after {timeout} s:\n{s.log.read_text()[-3000:]}")


def kill(s: Server) -> None:
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(10)


def publish_until_killed(s: Server, device: str, n: int, t0_ms: int, kill_after_acks: int,
                         inflight: int = 100) -> tuple[set[int], int]:
    """Publish ``n`` single-reading QoS 1 messages as fast as the broker takes them; SIGKILL the server once
    ``kill_after_acks`` PUBACKs have arrived. Returns (indices whose PUBACK arrived, messages published)."""
    assert n < 65536, "packet ids must not wrap within one run"
    acked_mids: list[int] = []  # appended by paho's thread (no lock of ours: paho holds its own meanwhile)
    mids: dict[int, int] = {}
    enough = threading.Event()

    def on_publish(client, userdata, mid, reason_code, properties):
        acked_mids.append(mid)
        if len(acked_mids) >= kill_after_acks:
            enough.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, f"kill-pub-{device}")
    c.max_inflight_messages_set(inflight)
    c.on_publish = on_publish
    c.connect("127.0.0.1", s.mqtt_port)
    c.loop_start()
    sent = 0
    killer = threading.Thread(target=lambda: (enough.wait(600), kill(s)), daemon=True)
    killer.start()
    try:
        topic = f"coldtrace/v1/devices/{device}/readings"
        for i in range(n):
            if s.proc.poll() is not None:
                break
            body = json.dumps({"v": 1, "device_id": device, "seq": i,
                               "readings": [{"ts": t0_ms + i * 1000, "temp_c": round(4 + (i % 40) / 10, 1)}]})
            info = c.publish(topic, body, qos=1)
            mids[info.mid] = i
            sent += 1
            while len(mids) - len(acked_mids) > 5 * inflight and s.proc.poll() is None:
                time.sleep(0.001)  # paho queues without bound: keep the queue short, full speed still
        if not enough.is_set():
            enough.set()  # published everything before the kill point: kill now
        killer.join(30)
    finally:
        c.loop_stop()
        try:
            c.disconnect()
        except OSError:
            pass
    return {mids[m] for m in list(acked_mids) if m in mids}, sent


def stored_indices(db_path: Path, device: str, t0_ms: int) -> set[int]:
    rows = store_rows(db_path, "SELECT ts FROM readings WHERE device_id = ?", (device,))
    return {(ts - t0_ms) // 1000 for (ts,) in rows}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_run(data_dir: Path, api_port: int, mqtt_port: int, log: Path, device: str, n: int,
             kill_fraction: float, drain_timeout: float = 120) -> dict:
    """One round: start (or restart at once after the previous kill), publish n readings, SIGKILL after
    ``kill_fraction`` of them were acknowledged, restart at once, wait for the inbox to be drained.
    Returns {"restart_s", "acked", "sent", "lost"} (lost: acknowledged but not stored)."""
    t0_ms = (int(time.time()) - 40 * 86400) * 1000  # 40 days ago: n seconds apart, never in the future
    s = start_run(data_dir, api_port, mqtt_port, log)
    first_start = wait_serving(s, 60)
    acked, sent = publish_until_killed(s, device, n, t0_ms, max(1, int(n * kill_fraction)))
    s2 = start_run(data_dir, api_port, mqtt_port, log)  # right after the SIGKILL
    try:
        restart_s = wait_serving(s2, 60)
        db = data_dir / "coldtrace.db"
        deadline = time.monotonic() + drain_timeout
        missing = acked - stored_indices(db, device, t0_ms)
        while missing and time.monotonic() < deadline:
            time.sleep(0.2)
            missing = acked - stored_indices(db, device, t0_ms)
    finally:
        s2.proc.send_signal(signal.SIGINT)
        try:
            s2.proc.wait(30)
        except subprocess.TimeoutExpired:
            kill(s2)
    return {"first_start_s": first_start, "restart_s": restart_s, "acked": len(acked), "sent": sent,
            "lost": len(missing)}

"""Ingest benchmark: how fast a backlog queued at a real Mosquitto drains.

1. ceiling: a bare paho subscriber that only counts drains N single-reading QoS 1 messages;
2. the collector drains the same backlog (decoded, stored in SQLite, evaluated by the excursion engine,
   acknowledged after commit);
3. the collector drains a backlog of 500-reading batch messages (readings/s stored).
The backlog is queued while the subscriber is offline (persistent session), so the publisher's speed caps
neither figure.   Usage: python bench/ingest.py [--messages 50000] [--batches 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.settings import load_settings  # noqa: E402
from coldtrace.wiring import build_services  # noqa: E402
from tests.support.services import Mosquitto  # noqa: E402

DEVICES = 100


def _props(receive_max: int = 1000) -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 3600
    p.ReceiveMaximum = receive_max
    return p


def create_session(port: int, client_id: str) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port, clean_start=False, properties=_props())
    c.loop_start()
    c.subscribe("coldtrace/v1/devices/+/readings", qos=1)
    done.wait(5)
    c.disconnect()
    c.loop_stop()


def publish_backlog(port: int, n_msgs: int, per_msg: int, t0_ms: int) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    last = None
    for i in range(n_msgs):
        dev = f"B-{i % DEVICES:04d}"
        k = i // DEVICES
        readings = [{"ts": t0_ms + (k * per_msg + j) * 1000, "temp_c": round(4.0 + ((k * per_msg + j) % 41) / 10, 2)}
                    for j in range(per_msg)]
        body = json.dumps({"v": 1, "device_id": dev, "seq": k, "readings": readings})
        last = c.publish(f"coldtrace/v1/devices/{dev}/readings", body, qos=1)
    last.wait_for_publish(600)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def bare_drain(port: int, client_id: str, n: int) -> float:
    got = 0
    done = threading.Event()

    def on_message(client, userdata, msg) -> None:
        nonlocal got
        got += 1
        if got >= n:
            done.set()

    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    t = time.perf_counter()
    c.connect("127.0.0.1", port, clean_start=False, properties=_props())
    c.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"bare subscriber got only {got}/{n}")
    dt = time.perf_counter() - t
    c.disconnect()
    c.loop_stop()
    return dt


def collector_drain(port: int, client_id: str, data_dir: Path, expect_messages: int) -> tuple[float, int]:
    from collector.mqtt import MqttCollector

    settings = load_settings(data_dir=data_dir, log_level="WARNING",
                             mqtt={"url": f"mqtt://127.0.0.1:{port}", "client_id": client_id})
    services = build_services(settings)
    col = MqttCollector(services.pipeline, settings.mqtt, batch_max_messages=settings.ingest.batch_max_messages,
                        batch_max_wait_ms=settings.ingest.batch_max_wait_ms,
                        worker_settings=settings if settings.ingest.worker_process else None)
    if col.worker is not None:  # the child process is part of starting up, not of draining
        col.worker.start()
        col.worker.start = lambda: None  # type: ignore[method-assign]
    t = time.perf_counter()
    col.start(connect_timeout=10)
    while col.processed < expect_messages:  # acknowledged, so committed
        time.sleep(0.02)  # coarse: a busy poll would compete for the GIL with the collector
        if time.perf_counter() - t > 900:
            raise RuntimeError("collector did not drain the backlog")
    dt = time.perf_counter() - t
    n = services.readings.count()
    col.stop()
    services.close()
    return dt, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--batches", type=int, default=1000,
                    help="500-reading messages (1000: long enough that connecting and the first sight of each"
                         " device do not dominate the figure)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "broker").mkdir()
        broker = Mosquitto(tmp / "broker")
        broker.start()
        try:
            t0 = int(time.time() * 1000) - 30 * 24 * 3600_000
            n = args.messages
            print(f"Mosquitto on 127.0.0.1:{broker.port}; backlog of {n} single-reading QoS 1 messages"
                  f" from {DEVICES} devices", flush=True)
            create_session(broker.port, "bench-bare")
            create_session(broker.port, "bench-collector")
            t = time.perf_counter()
            publish_backlog(broker.port, n, 1, t0)
            print(f"  backlog queued for both sessions in {time.perf_counter() - t:.1f} s", flush=True)
            bare = bare_drain(broker.port, "bench-bare", n)
            print(f"  bare paho subscriber (count only): {n / bare:>10,.0f} msg/s  ({bare:.2f} s)", flush=True)
            col, stored = collector_drain(broker.port, "bench-collector", tmp / "c1", n)
            assert stored == n, (stored, n)
            print(f"  collector (decode+store+evaluate+ack): {n / col:>6,.0f} msg/s  ({col:.2f} s)", flush=True)
            print(f"  ratio collector/bare: {bare / col:.2f}  (target >= 0.8)", flush=True)

            m = args.batches
            create_session(broker.port, "bench-collector-batch")
            publish_backlog(broker.port, m, 500, t0)
            col_b, stored_b = collector_drain(broker.port, "bench-collector-batch", tmp / "c2", m)
            assert stored_b == m * 500, (stored_b, m * 500)
            print(f"  batches: {m} messages x 500 readings: {m * 500 / col_b:>10,.0f} readings/s stored"
                  f"  ({col_b:.2f} s; target >= 250,000)", flush=True)
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

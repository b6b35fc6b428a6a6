"""Ingest benchmark: how fast a QoS 1 backlog queued at a real Mosquitto drains, side by side, in one run.

Every consumer drains the same backlog (100 devices; Mosquitto with max_inflight_messages 1000), queued
while it was offline (persistent session), so the publisher's speed caps no figure:

1. ceiling: paho's default client (MQTT 3.1.1, auto-ack, nothing tuned) that only counts messages;
2. a careful hand-written consumer: paho's default client, ``json.loads``, a prepared multi-row INSERT and
   a commit every 200 ms into a SQLite readings table (WAL, same ``synchronous`` as the collector). paho
   auto-acknowledges each message when ``on_message`` returns, i.e. BEFORE its commit: it can lose up to
   200 ms of acknowledged readings on a crash, and it validates and evaluates nothing;
3. the ColdTrace collector (MqttCollector + ingest child, default settings): validates every message,
   stores, evaluates the excursion engine, keeps device state, acknowledges after commit.

Single-reading messages: msg/s and the ratio collector/bare (target >= 0.8). 500-reading messages:
readings/s stored by the hand-written consumer and by the collector (target >= 400,000).
``--memory``: peak RSS of the collector (its MQTT process and its ingest child, each measured in a fresh
process) while it drains a 1,000,000-message backlog.
``--influx``: the collector's batch figure again with store.backend=influx (a real influxd).

    .venv/bin/python bench/ingest.py [--messages 50000] [--batches 1000] [--memory [--memory-messages 1000000]]
                                     [--influx] [--skip-batches]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
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
TOPIC_FILTER = "coldtrace/v1/devices/+/readings"


def _v5_props(receive_max: int = 1000) -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 3600
    p.ReceiveMaximum = receive_max
    return p


def default_client(client_id: str) -> mqtt.Client:
    """paho's default client as anyone would write it: MQTT 3.1.1, persistent session, auto-ack."""
    return mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv311, clean_session=False)


def create_session(port: int, client_id: str, v5: bool) -> None:
    if v5:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
    else:
        c = default_client(client_id)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    if v5:
        c.connect("127.0.0.1", port, clean_start=False, properties=_v5_props())
    else:
        c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe(TOPIC_FILTER, qos=1)
    if not done.wait(5):
        raise RuntimeError(f"could not subscribe {client_id}")
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
        if i % 20000 == 19999:  # paho keeps every unsent message: do not hold a million of them
            last.wait_for_publish(600)
    last.wait_for_publish(600)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def bare_drain(port: int, client_id: str, n: int) -> float:
    """The ceiling: the default client, counting only."""
    got = 0
    done = threading.Event()

    def on_message(client, userdata, msg) -> None:
        nonlocal got
        got += 1
        if got >= n:
            done.set()

    c = default_client(client_id)
    c.on_message = on_message
    t = time.perf_counter()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not done.wait(900):
        raise RuntimeError(f"bare subscriber got only {got}/{n}")
    dt = time.perf_counter() - t
    c.disconnect()
    c.loop_stop()
    return dt


class HandWritten:
    """A careful hand-written consumer: json.loads, multi-row INSERT + commit every 200 ms, auto-ack."""

    CHUNK = 500  # rows per prepared multi-row INSERT (3 parameters each, far below SQLite's limit)

    def __init__(self, path: Path, synchronous: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("CREATE TABLE readings (device_id TEXT NOT NULL, ts INTEGER NOT NULL, temp_c REAL NOT NULL,"
                        " PRIMARY KEY (device_id, ts)) WITHOUT ROWID")
        self.multi = "INSERT OR IGNORE INTO readings VALUES " + ",".join(["(?,?,?)"] * self.CHUNK)
        self.rows: list = []
        self.last_commit = time.monotonic()

    def on_message(self, client, userdata, msg) -> None:
        doc = json.loads(msg.payload)
        dev = doc["device_id"]
        params = self.rows
        for r in doc["readings"]:
            params += (dev, r["ts"], r["temp_c"])
        if time.monotonic() - self.last_commit >= 0.2:
            self.commit()

    def commit(self) -> None:
        p, self.rows = self.rows, []
        width = 3 * self.CHUNK
        full = len(p) // width * width
        self.db.execute("BEGIN")
        for i in range(0, full, width):
            self.db.execute(self.multi, p[i:i + width])
        rest = p[full:]
        self.db.executemany("INSERT OR IGNORE INTO readings VALUES (?,?,?)",
                            [rest[i:i + 3] for i in range(0, len(rest), 3)])
        self.db.execute("COMMIT")
        self.last_commit = time.monotonic()

    def drain(self, port: int, client_id: str, n: int) -> tuple[float, int]:
        got = 0
        done = threading.Event()

        def on_message(client, userdata, msg) -> None:
            nonlocal got
            self.on_message(client, userdata, msg)
            got += 1
            if got >= n:
                self.commit()
                done.set()

        c = default_client(client_id)
        c.on_message = on_message
        t = time.perf_counter()
        c.connect("127.0.0.1", port)
        c.loop_start()
        if not done.wait(900):
            raise RuntimeError(f"hand-written consumer got only {got}/{n}")
        dt = time.perf_counter() - t
        c.disconnect()
        c.loop_stop()
        stored = self.db.execute("SELECT count(*) FROM readings").fetchone()[0]
        self.db.close()
        return dt, stored


def collector_drain(port: int, client_id: str, data_dir: Path, expect_messages: int,
                    store: dict | None = None) -> tuple[float, int, int, int]:
    """(seconds, readings stored, this process's peak RSS KiB, the ingest child's peak RSS KiB)."""
    from collector.mqtt import MqttCollector

    settings = load_settings(data_dir=data_dir, log_level="WARNING", store=store or {},
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
        if time.perf_counter() - t > 1800:
            raise RuntimeError("collector did not drain the backlog")
    dt = time.perf_counter() - t
    child_hwm = _hwm_kib(col.worker._proc.pid) if col.worker is not None and col.worker._proc else 0
    n = services.readings.count()
    col.stop()
    services.close()
    return dt, n, _hwm_kib(os.getpid()), child_hwm


def _hwm_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of a live process, KiB. Not ru_maxrss: Linux carries it over exec."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def memory_run(port: int, client_id: str, n: int, data_dir: Path) -> None:
    """In a fresh interpreter: the collector alone drains the backlog; prints its peak RSS (parent, child)."""
    dt, stored, parent, child = collector_drain(port, client_id, data_dir, n)
    print(json.dumps({"seconds": dt, "stored": stored, "parent_kib": parent, "child_kib": child}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000, help="single-reading messages")
    ap.add_argument("--batches", type=int, default=1000, help="500-reading messages")
    ap.add_argument("--skip-batches", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also the peak RSS under a large backlog (slow)")
    ap.add_argument("--memory-messages", type=int, default=1_000_000)
    ap.add_argument("--influx", action="store_true", help="also the batch figure with store.backend=influx")
    ap.add_argument("--memory-child", nargs=3, metavar=("PORT", "CLIENT_ID", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        port, cid, n = args.memory_child
        with tempfile.TemporaryDirectory() as tmp:
            memory_run(int(port), cid, int(n), Path(tmp))
        return 0

    settings = load_settings(data_dir=Path(tempfile.gettempdir()))
    sync = settings.store.sqlite_synchronous
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; SQLite WAL,"
          f" synchronous={sync}; collector: MQTT {settings.mqtt.protocol}, receive maximum"
          f" {settings.mqtt.receive_maximum}, batch <= {settings.ingest.batch_max_messages} messages /"
          f" {settings.ingest.batch_max_wait_ms} ms, ingest child {'on' if settings.ingest.worker_process else 'off'}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "broker").mkdir()
        broker = Mosquitto(tmp / "broker")
        broker.start()
        try:
            t0 = int(time.time() * 1000) - 30 * 24 * 3600_000
            n = args.messages
            print(f"Mosquitto on 127.0.0.1:{broker.port} (max_inflight_messages 1000); backlog of {n:,}"
                  f" single-reading QoS 1 messages from {DEVICES} devices", flush=True)
            create_session(broker.port, "bench-bare", v5=False)
            create_session(broker.port, "bench-hand", v5=False)
            create_session(broker.port, "bench-collector", v5=True)
            t = time.perf_counter()
            publish_backlog(broker.port, n, 1, t0)
            print(f"  backlog queued for the three sessions in {time.perf_counter() - t:.1f} s", flush=True)
            bare = n / bare_drain(broker.port, "bench-bare", n)
            print(f"  paho default client (3.1.1, auto-ack, count only):    {bare:>9,.0f} msg/s  (1.00x)", flush=True)
            dt, stored = HandWritten(tmp / "hand1.db", sync).drain(broker.port, "bench-hand", n)
            assert stored == n, (stored, n)
            print(f"  hand-written (json.loads, insert+commit/200 ms, ack before commit): {n / dt:>9,.0f} msg/s"
                  f"  ({n / dt / bare:.2f}x)", flush=True)
            dt, stored, _, _ = collector_drain(broker.port, "bench-collector", tmp / "c1", n)
            assert stored == n, (stored, n)
            print(f"  ColdTrace collector (validate, store, evaluate, ack after commit): {n / dt:>9,.0f} msg/s"
                  f"  ({n / dt / bare:.2f}x)", flush=True)
            print(f"  ratio collector/bare paho: {n / dt / bare:.2f}  (target >= 0.80)", flush=True)

            if not args.skip_batches:
                m = args.batches
                print(f"backlog of {m:,} messages x 500 readings", flush=True)
                create_session(broker.port, "bench-hand-batch", v5=False)
                create_session(broker.port, "bench-collector-batch", v5=True)
                publish_backlog(broker.port, m, 500, t0)
                dt, stored = HandWritten(tmp / "hand2.db", sync).drain(broker.port, "bench-hand-batch", m)
                assert stored == m * 500, (stored, m * 500)
                print(f"  hand-written: {m * 500 / dt:>10,.0f} readings/s stored  ({dt:.2f} s)", flush=True)
                dt, stored, _, _ = collector_drain(broker.port, "bench-collector-batch", tmp / "c2", m)
                assert stored == m * 500, (stored, m * 500)
                print(f"  collector:    {m * 500 / dt:>10,.0f} readings/s stored  ({dt:.2f} s;"
                      f" target >= 400,000)", flush=True)

            if args.influx:
                influx_batches(broker.port, tmp, args.batches, t0)

            if args.memory:
                k = args.memory_messages
                create_session(broker.port, "bench-memory", v5=True)
                t = time.perf_counter()
                publish_backlog(broker.port, k, 1, t0)
                print(f"backlog of {k:,} single-reading messages queued in {time.perf_counter() - t:.1f} s",
                      flush=True)
                out = subprocess.run([sys.executable, __file__, "--memory-child", str(broker.port), "bench-memory",
                                      str(k)], check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(f"  collector drained {k:,} messages in {r['seconds']:.1f} s ({k / r['seconds']:,.0f} msg/s);"
                      f" peak RSS: MQTT process {r['parent_kib'] / 1024:.0f} MiB, ingest child"
                      f" {r['child_kib'] / 1024:.0f} MiB", flush=True)
                print(f"  bounded by: receive maximum {settings.mqtt.receive_maximum} unacknowledged messages in"
                      f" the MQTT process, at most 3 batches of <= {settings.ingest.batch_max_messages} in the"
                      " pipe to the child, one batch in the child; the backlog itself stays at the broker",
                      flush=True)
        finally:
            broker.stop()
    return 0


def influx_batches(port: int, tmp: Path, m: int, t0: int) -> None:
    from tests.support.services import Influxd

    (tmp / "influx").mkdir()
    influx = Influxd(tmp / "influx")
    influx.start()
    try:
        create_session(port, "bench-collector-influx", v5=True)
        publish_backlog(port, m, 500, t0)
        dt, stored, _, _ = collector_drain(port, "bench-collector-influx", tmp / "c3", m,
                                           store={"backend": "influx", "influx": {"url": influx.url}})
        print(f"  collector, InfluxDB store: {m * 500 / dt:>10,.0f} readings/s stored ({dt:.2f} s;"
              f" {stored:,} counted)", flush=True)
    finally:
        influx.stop()
    print("  PostgreSQL store: not measured: it does not exist yet (issue 15)", flush=True)


if __name__ == "__main__":
    sys.exit(main())

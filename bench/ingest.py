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
``--store-url [URL]``: the same with the metadata and readings in PostgreSQL (a database URL, or a throwaway
local server with fsync on).

    .venv/bin/python bench/ingest.py [--messages 50000] [--batches 1000] [--rounds 2] [--skip-batches]
                                     [--memory [--memory-messages 1000000]] [--influx] [--store-url [URL]]
                                     [--skip-single]

The machine is shared and noisy: each round publishes a fresh backlog and every consumer drains it, in a
rotating order, so a burst of load elsewhere hits them alike; medians and ranges are printed, and the CPU
time each consumer's processes used per message or reading, which the load affects far less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
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


def default_drain(port: int, client_id: str, n: int, handle=None, last=None, what: str = "bare subscriber"
                  ) -> tuple[float, float]:
    """Drain n messages with paho's default client: ``handle`` each (None: count only), ``last`` after the
    n-th. Returns (wall seconds, CPU seconds of this process)."""
    got = 0
    done = threading.Event()

    def on_message(client, userdata, msg) -> None:
        nonlocal got
        if handle is not None:
            handle(client, userdata, msg)
        got += 1
        if got >= n:
            if last is not None:
                last()
            done.set()

    c = default_client(client_id)
    c.on_message = on_message
    t, cpu = time.perf_counter(), time.process_time()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not done.wait(900):
        raise RuntimeError(f"{what} got only {got}/{n}")
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    c.disconnect()
    c.loop_stop()
    return dt, cpu


def bare_drain(port: int, client_id: str, n: int) -> tuple[float, float]:
    """The ceiling: the default client, counting only."""
    return default_drain(port, client_id, n)


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

    def drain(self, port: int, client_id: str, n: int) -> tuple[float, int, float]:
        dt, cpu = default_drain(port, client_id, n, self.on_message, self.commit, "hand-written consumer")
        stored = self.db.execute("SELECT count(*) FROM readings").fetchone()[0]
        self.db.close()
        return dt, stored, cpu


def collector_drain(port: int, client_id: str, data_dir: Path, expect_messages: int,
                    store: dict | None = None) -> tuple[float, int, int, int, float]:
    """(seconds, readings stored, this process's peak RSS KiB, the ingest child's peak RSS KiB, CPU seconds of
    both processes while draining)."""
    from collector.mqtt import MqttCollector

    settings = load_settings(data_dir=data_dir, log_level="WARNING", store=store or {},
                             mqtt={"url": f"mqtt://127.0.0.1:{port}", "client_id": client_id})
    services = build_services(settings)
    before = services.readings.count()  # an existing database (--store-url) may hold readings already
    col = MqttCollector(services.pipeline, settings.mqtt, batch_max_messages=settings.ingest.batch_max_messages,
                        batch_max_wait_ms=settings.ingest.batch_max_wait_ms,
                        worker_settings=settings if settings.ingest.worker_process else None,
                        batch_max_bytes=settings.ingest.batch_max_bytes)
    if col.worker is not None:  # the child process is part of starting up, not of draining
        col.worker.start()
        col.worker.start = lambda: None  # type: ignore[method-assign]
    child_pid = col.worker._proc.pid if col.worker is not None and col.worker._proc else None
    t, cpu = time.perf_counter(), time.process_time() + (_child_cpu_s(child_pid) if child_pid else 0.0)
    col.start(connect_timeout=10)
    while col.processed < expect_messages:  # acknowledged, so committed
        time.sleep(0.02)  # coarse: a busy poll would compete for the GIL with the collector
        if time.perf_counter() - t > 1800:
            raise RuntimeError("collector did not drain the backlog")
    dt = time.perf_counter() - t
    cpu = time.process_time() + (_child_cpu_s(child_pid) if child_pid else 0.0) - cpu
    child_hwm = _hwm_kib(col.worker._proc.pid) if col.worker is not None and col.worker._proc else 0
    n = services.readings.count() - before
    col.stop()
    services.close()
    return dt, n, _hwm_kib(os.getpid()), child_hwm, cpu


def _child_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _hwm_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of a live process, KiB. Not ru_maxrss: Linux carries it over exec."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def memory_run(port: int, client_id: str, n: int, data_dir: Path) -> None:
    """In a fresh interpreter: the collector alone drains the backlog; prints its peak RSS (parent, child)."""
    dt, stored, parent, child, _ = collector_drain(port, client_id, data_dir, n)
    print(json.dumps({"seconds": dt, "stored": stored, "parent_kib": parent, "child_kib": child}), flush=True)


def _med(xs) -> float:
    return statistics.median(list(xs))


def _rng(xs) -> str:
    xs = list(xs)
    return f"{min(xs):,.0f}-{max(xs):,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000, help="single-reading messages")
    ap.add_argument("--batches", type=int, default=1000, help="500-reading messages")
    ap.add_argument("--skip-batches", action="store_true")
    ap.add_argument("--skip-single", action="store_true", help="only the 500-reading figure (and the extras)")
    ap.add_argument("--rounds", type=int, default=2, help="each consumer drains a fresh backlog this many times")
    ap.add_argument("--memory", action="store_true", help="also the peak RSS under a large backlog (slow)")
    ap.add_argument("--memory-messages", type=int, default=1_000_000)
    ap.add_argument("--influx", action="store_true", help="also the batch figure with store.backend=influx")
    ap.add_argument("--store-url", nargs="?", const="", default=None, metavar="URL",
                    help="also the batch figure with the metadata and readings in PostgreSQL: the postgresql://"
                         " URL of an empty database, or without URL a throwaway local server (fsync on)")
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
          f" {settings.ingest.batch_max_bytes // 1024} KiB /"
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
            print(f"Mosquitto on 127.0.0.1:{broker.port} (max_inflight_messages 1000); {args.rounds} rounds, each a"
                  f" backlog of {n:,} single-reading QoS 1 messages from {DEVICES} devices drained by each"
                  " consumer in turn (the order rotates)", flush=True)
            single = {"bare": [], "hand": [], "collector": []}
            for r in range(0 if args.skip_single else args.rounds):
                for who in ("bare", "hand", "collector"):
                    create_session(broker.port, f"bench-{who}-{r}", v5=who == "collector")
                publish_backlog(broker.port, n, 1, t0)
                order = ["bare", "hand", "collector"]
                order = order[r % 3:] + order[:r % 3]
                for who in order:
                    if who == "bare":
                        dt, cpu = bare_drain(broker.port, f"bench-bare-{r}", n)
                        stored = n
                    elif who == "hand":
                        dt, stored, cpu = HandWritten(tmp / f"hand1-{r}.db", sync).drain(broker.port,
                                                                                        f"bench-hand-{r}", n)
                    else:
                        dt, stored, _, _, cpu = collector_drain(broker.port, f"bench-collector-{r}", tmp / f"c1-{r}", n)
                    assert stored == n, (who, stored, n)
                    single[who].append((n / dt, cpu / n * 1e6))
                print(f"  round {r + 1}: " + ", ".join(f"{w} {single[w][-1][0]:,.0f} msg/s" for w in single)
                      + f"; load {os.getloadavg()[0]:.2f}", flush=True)
            labels = {"bare": "paho default client (3.1.1, auto-ack, count only)",
                      "hand": "hand-written (json.loads, insert + commit/200 ms, ack before commit)",
                      "collector": "ColdTrace collector (validate, store, evaluate, ack after commit)"}
            if not args.skip_single:
                ratios = [c[0] / b[0] for c, b in zip(single["collector"], single["bare"], strict=True)]
                print("single-reading messages (median [min-max] over the rounds; CPU of the consumer's processes):")
                for who, rows in single.items():
                    print(f"  {labels[who]:<72} {_med(r[0] for r in rows):>8,.0f} msg/s [{_rng(r[0] for r in rows)}]"
                          f"  {_med(r[1] for r in rows):5.0f} us CPU/msg", flush=True)
                cpu_ratio = _med(r[1] for r in single["bare"]) / _med(r[1] for r in single["collector"])
                print(f"  ratio collector/bare paho, same round: median {_med(ratios):.2f} [{min(ratios):.2f}-"
                      f"{max(ratios):.2f}] (target >= 0.80); by CPU per message: {cpu_ratio:.2f}", flush=True)

            if not args.skip_batches:
                m = args.batches
                print(f"{args.rounds} rounds, each a backlog of {m:,} messages x 500 readings", flush=True)
                batch = {"hand": [], "collector": []}
                for r in range(args.rounds):
                    create_session(broker.port, f"bench-hand-batch-{r}", v5=False)
                    create_session(broker.port, f"bench-collector-batch-{r}", v5=True)
                    publish_backlog(broker.port, m, 500, t0)
                    for who in (("hand", "collector") if r % 2 == 0 else ("collector", "hand")):
                        if who == "hand":
                            dt, stored, cpu = HandWritten(tmp / f"hand2-{r}.db", sync).drain(
                                broker.port, f"bench-hand-batch-{r}", m)
                        else:
                            dt, stored, _, _, cpu = collector_drain(broker.port, f"bench-collector-batch-{r}",
                                                                    tmp / f"c2-{r}", m)
                        assert stored == m * 500, (who, stored, m * 500)
                        batch[who].append((m * 500 / dt, cpu / (m * 500) * 1e6))
                for who, rows in batch.items():
                    print(f"  {labels[who]:<72} {_med(r[0] for r in rows):>8,.0f} readings/s stored"
                          f" [{_rng(r[0] for r in rows)}]  {_med(r[1] for r in rows):5.2f} us CPU/reading",
                          flush=True)
                print("  target for the collector: >= 400,000 readings/s", flush=True)

            if args.influx:
                influx_batches(broker.port, tmp, args.batches, t0)
            if args.store_url is not None:
                postgres_batches(broker.port, tmp, args.batches, t0, args.store_url)

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
                      f" the MQTT process, at most 3 batches of <= {settings.ingest.batch_max_messages} messages and"
                      f" {settings.ingest.batch_max_bytes // 1024} KiB in the"
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
        dt, stored, _, _, _ = collector_drain(port, "bench-collector-influx", tmp / "c3", m,
                                           store={"backend": "influx", "influx": {"url": influx.url}})
        print(f"  collector, InfluxDB store: {m * 500 / dt:>10,.0f} readings/s stored ({dt:.2f} s;"
              f" {stored:,} counted)", flush=True)
    finally:
        influx.stop()


def postgres_batches(port: int, tmp: Path, m: int, t0: int, url: str) -> None:
    """The collector's batch figure with store.url = a PostgreSQL database (metadata and readings there).
    Without a URL: a throwaway server like the tests' (tests/support/postgres.py), made durable first (the
    test fixture turns fsync off; a commit here must survive a power cut, as SQLite's synchronous=FULL)."""
    from coldtrace.store.urls import redact_url

    server = None
    if not url:
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        server.start()
        for sql in ("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET synchronous_commit = on",
                    "ALTER SYSTEM SET full_page_writes = on", "SELECT pg_reload_conf()"):
            server.admin_sql(sql)
        _, url = server.create_database()
    try:
        create_session(port, "bench-collector-pg", v5=True)
        publish_backlog(port, m, 500, t0)
        dt, stored, _, _, _ = collector_drain(port, "bench-collector-pg", tmp / "c4", m, store={"url": url})
        assert stored == m * 500, (stored, m * 500)
        print(f"  collector, PostgreSQL store ({redact_url(url)}{', fsync on' if server else ''}):"
              f" {m * 500 / dt:>10,.0f} readings/s stored ({dt:.2f} s)", flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

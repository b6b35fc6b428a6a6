"""Scale-out benchmark: readings/s stored by 1, 2 and 3 collector processes in one shared MQTT group, on
PostgreSQL next to SQLite (issue 15).

For each store and each number of collectors: a fresh database, N ``coldtrace collector`` processes
(default settings: each with its ingest child) subscribed to ``$share/coldtrace/...`` on one real Mosquitto,
then a burst of 500-reading messages from 100 devices; the figure is readings stored per second from the
first message published to the last reading committed. PostgreSQL is a server of our own (initdb + pg_ctl on
a free loopback port, fsync off like the test fixture: it measures ColdTrace, not the disk).

This machine has 2 cores shared by everything (broker, database server, publisher, the collectors and
their ingest children), so beyond one collector the figure measures contention for those cores and for the
database's write lock, not what more machines would give. The script therefore also prints the CPU time the
collectors and the database server spent per reading, and from it readings/s per core: what one more core
(or machine) running a collector would add while the database's single write lock is not the limit.

    .venv/bin/python bench/scale.py [--messages 200] [--collectors 1,2,3] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.store.db import open_database  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.services import Mosquitto, stop_processes  # noqa: E402

DEVICES = 100
PER_MSG = 500
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pids: set[int]) -> float:
    """CPU seconds (user + system) used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def _tree(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return out


def _postgres_pids() -> set[int]:
    pids = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if Path(f"/proc/{d}/comm").read_text().strip() == "postgres":
                    pids.add(int(d))
            except OSError:
                pass
    return pids


def _publish(port: int, n_msgs: int, t0_ms: int) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="scale-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = []
    for i in range(n_msgs):
        dev, k = f"S-{i % DEVICES:04d}", i // DEVICES
        readings = [{"ts": t0_ms + (k * PER_MSG + j) * 1000, "temp_c": round(4.0 + ((k * PER_MSG + j) % 41) / 10, 2)}
                    for j in range(PER_MSG)]
        infos.append(c.publish(f"coldtrace/v1/devices/{dev}/readings",
                               json.dumps({"v": 1, "device_id": dev, "seq": k + 1, "readings": readings}), qos=1))
    for info in infos:
        info.wait_for_publish(600)
    c.disconnect()
    c.loop_stop()


def run(broker: Mosquitto, store_url: str, n: int, messages: int, tmp: Path, tag: str) -> dict:
    db = open_database(store_url)  # the schema, before the collectors start
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDTRACE_")}
    env.update({"COLDTRACE_STORE__URL": store_url, "COLDTRACE_MQTT__URL": broker.url,
                "COLDTRACE_MQTT__SHARED_GROUP": f"scale-{tag}", "COLDTRACE_LOG_LEVEL": "WARNING",
                "COLDTRACE_STORE__SQLITE_SYNCHRONOUS": "NORMAL"})
    procs, logs = [], []
    try:
        for i in range(n):
            log = open(tmp / f"{tag}-{i}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "coldtrace.cli", "collector", "--data-dir", str(tmp / f"{tag}-{i}")],
                env={**env, "COLDTRACE_MQTT__CLIENT_ID": f"scale-{tag}-{i}"}, stdout=log, stderr=subprocess.STDOUT))
        time.sleep(6 + 2 * n)  # started, connected, subscribed, ingest children up (they print nothing at WARNING)
        pids = set().union(*(_tree(p.pid) for p in procs))
        pg = _postgres_pids() if store_url.startswith("postgresql") else set()
        cpu0, pg0 = _cpu_of(pids), _cpu_of(pg)
        total = messages * PER_MSG
        t_start = time.perf_counter()
        _publish(broker.port, messages, int(time.time() * 1000) - total * 1000 - 3_600_000)
        while db.query_one("SELECT COUNT(*) FROM readings")[0] < total:
            if time.perf_counter() - t_start > 600:
                raise RuntimeError(f"{tag}: not all readings stored after 600 s")
            time.sleep(0.05)
        dt = time.perf_counter() - t_start
        cpu, pg_cpu = _cpu_of(pids) - cpu0, _cpu_of(pg) - pg0
        return {"rate": total / dt, "seconds": dt, "cpu_per_reading_us": (cpu + pg_cpu) / total * 1e6,
                "collector_cpu": cpu, "db_cpu": pg_cpu}
    finally:
        stop_processes(procs, 30)
        for log in logs:
            log.close()
        db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200, help="messages of 500 readings per run (default 200)")
    ap.add_argument("--collectors", default="1,2,3")
    ap.add_argument("--stores", default="sqlite,postgresql")
    args = ap.parse_args()
    counts = [int(x) for x in args.collectors.split(",")]
    stores = args.stores.split(",")
    print(f"{args.messages} messages x {PER_MSG} readings from {DEVICES} devices per run; {os.cpu_count()} cores"
          " on this machine", flush=True)
    with tempfile.TemporaryDirectory(prefix="ct-scale-") as d:
        tmp = Path(d)
        (tmp / "broker").mkdir()
        broker = Mosquitto(tmp / "broker")
        broker.start()
        server = PostgresServer() if "postgresql" in stores else None
        results: dict[tuple[str, int], dict] = {}
        try:
            if server is not None:
                server.start()
            for store in stores:
                for n in counts:
                    tag = f"{store[:2]}{n}"
                    if store == "postgresql":
                        name, url = server.create_database()
                    else:
                        url = f"sqlite:///{tmp / f'{tag}.db'}"
                    r = results[(store, n)] = run(broker, url, n, args.messages, tmp, tag)
                    print(f"  {store:<10} {n} collector(s): {r['rate']:>9,.0f} readings/s ({r['seconds']:.1f} s);"
                          f" CPU {r['cpu_per_reading_us']:.1f} us/reading (collectors {r['collector_cpu']:.1f} s,"
                          f" database server {r['db_cpu']:.1f} s)", flush=True)
                    if store == "postgresql":
                        server.drop_database(name)
        finally:
            if server is not None:
                server.stop()
            broker.stop()
    print()
    print("readings/s        " + "".join(f"{n} collector(s)".rjust(18) for n in counts))
    for store in stores:
        print(f"{store:<18}" + "".join(f"{results[(store, n)]['rate']:>18,.0f}" for n in counts))
    print()
    print(f"On this {os.cpu_count()}-core machine, shared by the broker, the database server, the publisher and every"
          " collector with its ingest child, more collectors measure contention for the cores and for the")
    print("database's one write lock, not added capacity. Per core (readings per CPU-second of the collectors"
          " and the database server together, best run):")
    for store in stores:
        best = min(results[(store, n)]["cpu_per_reading_us"] for n in counts)
        print(f"  {store:<10} ~{1e6 / best:,.0f} readings/s per core")
    print("Every ingest transaction takes the cluster-wide write lock (docs/deployment.md), so on PostgreSQL the"
          " commit path stays serial: more machines add failover and spread decoding, evaluation and")
    print("webhook sending, and the total stays bounded by one writer's rate.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

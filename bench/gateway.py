"""Gateway throughput: serial ptys -> gateway (spool, QoS 1) -> Mosquitto -> collector -> store; then the
spool's drain rate after a broker outage.

Processes: simulated CTL1 loggers on real ptys (a subprocess, dumping as fast as a pty goes), the gateway
(in this process, as `coldtrace gateway` runs it), a real Mosquitto and the real collector (a subprocess,
SQLite store). Phase 1 times dumps of every port to the store. Phase 2 stops the broker, lets the gateway
spool a second set of dumps, starts the broker again and times the spool draining and the store filling.

    .venv/bin/python bench/gateway.py [--ports 6] [--records 5000]

Target: >= 5,000 readings/s over several ports (a real 115200-baud link carries ~330 lines/s), so the
gateway is never the bottleneck. On a shared 2-core machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config import load_config  # noqa: E402
from gateway.service import Gateway  # noqa: E402
from tests.support.services import Mosquitto  # noqa: E402


def wait(cond, timeout: float, what: str, every: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def stored(db: Path, prefix: str) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as c:
            return c.execute("SELECT COUNT(*) FROM readings WHERE device_id LIKE ?", (f"{prefix}-%",)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def start_collector(work: Path, broker: Mosquitto, n: int) -> subprocess.Popen:
    log = work / f"collector-{n}.log"
    env = {**os.environ, "COLDTRACE_MQTT__CLIENT_ID": "bench-gw-collector", "COLDTRACE_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "coldtrace.cli", "collector", "--mqtt-url", broker.url,
                             "--data-dir", str(work / "data")], stdout=open(log, "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, env=env)
    time.sleep(1.5)
    return proc


def start_sims(work: Path, prefix: str, ports: int, records: int) -> tuple[subprocess.Popen, list[str]]:
    paths = [str(work / f"tty{prefix}{i}") for i in range(ports)]
    args = [a for p in paths for a in ("--ctl1", p)]
    proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.serial_instruments", *args, "--records",
                             str(records), "--prefix", prefix], stdout=subprocess.DEVNULL)
    wait(lambda: all(Path(p).exists() for p in paths), 30, "simulated ports")
    return proc, paths


def write_config(work: Path, broker: Mosquitto, paths: list[str], name: str) -> Path:
    inst = "".join(f'[[instruments]]\nkind = "ctl1"\nport = "{p}"\n' for p in paths)
    cfg = work / f"{name}.toml"
    cfg.write_text(f'gateway_id = "GW-BENCH"\n[mqtt]\nurl = "{broker.url}"\n[spool]\npath = "spool.db"\n'
                   f'[publish]\nstatus_interval_s = 2\nbackoff_min_s = 0.05\nbackoff_max_s = 0.25\n{inst}')
    return cfg


def run_gateway(cfg: Path) -> tuple[Gateway, threading.Thread]:
    gw = Gateway(load_config(cfg))
    t = threading.Thread(target=gw.run, daemon=True)
    t.start()
    return gw, t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=6)
    ap.add_argument("--records", type=int, default=5000, help="readings in each logger's memory")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    total = a.ports * a.records
    with tempfile.TemporaryDirectory(prefix="ct-bench-gw-") as tmp:
        work = Path(tmp)
        (work / "mq").mkdir()
        broker = Mosquitto(work / "mq")
        broker.start()
        db = work / "data" / "coldtrace.db"
        collector = start_collector(work, broker, 0)
        sims, paths = start_sims(work, "BENCH", a.ports, a.records)
        try:
            # ---- phase 1: ptys -> store, broker up -------------------------------------------------
            t0 = time.monotonic()
            gw, thread = run_gateway(write_config(work, broker, paths, "phase1"))
            t_read = wait(lambda: sum(r.stats.delivered for r in gw.readers.readers) >= total, 300,
                          "dumps read")
            t_acked = wait(lambda: gw.spool.status().entries == 0 and gw.acked > 0, 300, "PUBACKs")
            t_store = wait(lambda: stored(db, "BENCH") >= total, 300, "readings stored", every=0.2)
            gw.stop()
            thread.join(15)
            print(f"phase 1: {a.ports} ports x {a.records} records = {total} readings")
            print(f"  serial read + spooled : {total / (t_read - t0):8.0f} readings/s ({t_read - t0:.2f} s)")
            print(f"  acknowledged by broker: {total / (t_acked - t0):8.0f} readings/s ({t_acked - t0:.2f} s)")
            print(f"  in the ColdTrace store: {total / (t_store - t0):8.0f} readings/s ({t_store - t0:.2f} s)")
            sims.terminate()
            sims.wait(10)

            # ---- phase 2: outage, spool, drain ---------------------------------------------------
            collector.terminate()
            collector.wait(20)
            broker.stop()
            sims, paths = start_sims(work, "DRAIN", a.ports, a.records)
            t0 = time.monotonic()
            gw, thread = run_gateway(write_config(work, broker, paths, "phase2"))
            t_spooled = wait(lambda: gw.spool.status().readings >= total, 300, "spooled during the outage")
            spooled = gw.spool.status()
            tb = time.monotonic()  # before: the gateway may drain while start() is still polling the port
            broker.start()
            t_drained = wait(lambda: gw.spool.status().entries == 0, 300, "spool drained", every=0.01)
            tc = time.monotonic()
            collector = start_collector(work, broker, 1)  # its persistent session queued everything
            t_store = wait(lambda: stored(db, "DRAIN") >= total, 300, "stored after the outage", every=0.2)
            gw.stop()
            thread.join(15)
            print(f"phase 2: broker down while {spooled.readings} readings ({spooled.entries} messages, "
                  f"{spooled.bytes / 1e6:.1f} MB) were spooled in {t_spooled - t0:.2f} s "
                  f"({spooled.readings / (t_spooled - t0):.0f} readings/s)")
            print(f"  spool drain after the broker returned: {spooled.readings / (t_drained - tb):8.0f} readings/s "
                  f"({t_drained - tb:.2f} s, includes the broker's start and the gateway's reconnect back-off)")
            print(f"  collector catching up from its session: {total / (t_store - tc):8.0f} readings/s "
                  f"({t_store - tc:.2f} s, includes starting the collector process)")
            print("(2 shared cores: the simulator, gateway, broker and collector compete for CPU; figures are noisy)")
        finally:
            sims.terminate()
            sims.wait(10)
            collector.terminate()
            collector.wait(20)
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

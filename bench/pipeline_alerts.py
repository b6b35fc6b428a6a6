"""The ingest pipeline in-process on an alert-heavy series: CPU per reading, and what one alert insert costs.

bench/ingest.py measures the whole collector on quiet series (few excursions, so few alerts). This one feeds
``Pipeline.ingest_raw_many`` directly (no MQTT) with 500-reading messages from 100 devices whose series cross
the 2-8 °C limits every 280 minutes, in flushes of 20 messages as the ingest child commits them, into a
fresh SQLite file (synchronous=FULL): each flush then raises and stores alerts, their webhook outbox rows and
the alert stream's state, which is where a slower statement text shows. It also times the alert insert
itself, ``INSERT OR IGNORE`` against the ``ON CONFLICT`` forms, on the migrated schema: ``alerts`` carries AFTER
INSERT triggers, and SQLite gives any INSERT that could abort into such a table a statement journal
(docs/ARCHITECTURE.md, "The device family's store").

    .venv/bin/python bench/pipeline_alerts.py [--messages 600] [--rounds 3]

Run it with PYTHONPATH set to another checkout to compare two versions of the code on one machine; CPU time
per reading is far less sensitive to the load of a shared machine than wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.core.clock import ManualClock  # noqa: E402
from coldtrace.services.pipeline import Pipeline, RawMessage  # noqa: E402
from coldtrace.store.db import Database  # noqa: E402
from coldtrace.store.sqlite import SqliteReadingStore  # noqa: E402

T0 = 1_795_687_200_000  # 2026-11-26T08:00:00Z
MINUTE = 60_000
DEVICES = 100
PER_MESSAGE = 500
FLUSH = 20


def messages(n: int) -> list[RawMessage]:
    out = []
    for m in range(n):
        dev = f"LOG-{m % DEVICES:03d}"
        k = m // DEVICES
        base = T0 + k * PER_MESSAGE * MINUTE
        rs = [{"ts": base + i * MINUTE,
               "temp_c": round(5 + 4 * ((i + m) % 50) / 50 + (3.5 if (i // 40) % 7 == 3 else 0), 2)}
              for i in range(PER_MESSAGE)]
        out.append(RawMessage(json.dumps({"v": 1, "device_id": dev, "seq": k, "readings": rs}).encode(),
                              "mqtt", dev))
    return out


def pipeline_round(msgs: list[RawMessage]) -> tuple[float, float, int]:
    """(CPU us per reading, readings/s wall, alerts stored) for one fresh database."""
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "bench.db")
        try:
            p = Pipeline(db, SqliteReadingStore(db), ManualClock(T0 + 400 * 24 * 60 * MINUTE))
            c0, w0 = time.process_time(), time.perf_counter()
            for i in range(0, len(msgs), FLUSH):
                p.ingest_raw_many(msgs[i:i + FLUSH])
            c1, w1 = time.process_time(), time.perf_counter()
            alerts = sum(v for k, v in p.counters.items() if k.startswith("alerts."))
        finally:
            db.close()
    n = len(msgs) * PER_MESSAGE
    return 1e6 * (c1 - c0) / n, n / (w1 - w0), alerts


ALERT_ROW = ("INTO alerts (id, type, severity, device_id, shipment_id, excursion_id, ts, created_at, data)"
             " VALUES (?,?,?,?,?,?,?,?,?)")
TEXTS = {"INSERT OR IGNORE": "INSERT OR IGNORE " + ALERT_ROW,
         "INSERT ... ON CONFLICT DO NOTHING": "INSERT " + ALERT_ROW + " ON CONFLICT DO NOTHING",
         "INSERT ... ON CONFLICT (id) DO NOTHING": "INSERT " + ALERT_ROW + " ON CONFLICT (id) DO NOTHING"}


def alert_insert_us(sql: str, n: int = 3000) -> float:
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "alerts.db")
        try:
            c0 = time.process_time()
            with db.write() as c:
                for i in range(n):
                    c.execute(sql, (f"a-{i}", "excursion.alarm", "alarm", "LOG-1", None, None, i, 1, "{}"))
            return 1e6 * (time.process_time() - c0) / n
        finally:
            db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=600, help="500-reading messages (100 devices)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    msgs = messages(args.messages)
    runs = [pipeline_round(msgs) for _ in range(args.rounds)]
    cpu = [r[0] for r in runs]
    wall = [r[1] for r in runs]
    print(f"pipeline in-process, {args.messages} x {PER_MESSAGE} readings, {DEVICES} devices, flushes of {FLUSH}"
          f" messages, {runs[0][2]:,} alerts per round ({Path(__file__).resolve().parents[1]})")
    print(f"  {statistics.median(cpu):.2f} us CPU/reading [{min(cpu):.2f}-{max(cpu):.2f}],"
          f" {statistics.median(wall):,.0f} readings/s wall [{min(wall):,.0f}-{max(wall):,.0f}]")
    print("one alert insert on the migrated schema (CPU, median of 3):")
    for name, sql in TEXTS.items():
        print(f"  {name:<40} {statistics.median(alert_insert_us(sql) for _ in range(3)):6.1f} us")


if __name__ == "__main__":
    main()

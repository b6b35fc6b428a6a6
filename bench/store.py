"""Write throughput and downsampled-query time of the two ReadingStores, in one run.

    .venv/bin/python bench/store.py [--readings 200000] [--devices 20] [--batch 500]

SQLite runs on a temporary file (synchronous=FULL, as in production). influxd is Debian's influxdb package
started on free loopback ports with data in a temporary folder (the same fixture the tests use). Figures on
a shared 2-core machine are noisy: compare orders of magnitude, not percent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.core.model import DAY, MINUTE, Reading  # noqa: E402
from coldtrace.store.db import Database  # noqa: E402
from coldtrace.store.influx import InfluxReadingStore  # noqa: E402
from coldtrace.store.sqlite import SqliteReadingStore  # noqa: E402
from tests.support.services import Influxd  # noqa: E402

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


def make_readings(n: int, devices: int) -> list[list[Reading]]:
    """One-minute readings of ``devices`` loggers, as messages of the given size, time-ordered per device."""
    per = n // devices
    return [[Reading(f"LOG-{d:04d}", T0 + i * MINUTE, round(5 + (i % 97) / 50, 2), i) for i in range(per)]
            for d in range(devices)]


def bench_writes(store, series: list[list[Reading]], batch: int) -> float:
    """Readings/s writing message-sized batches round-robin over devices (as the collector does)."""
    batches = [s[i:i + batch] for i in range(0, max(map(len, series)), batch) for s in series if s[i:i + batch]]
    total = sum(map(len, batches))
    t = time.perf_counter()
    for b in batches:
        store.write(b)
    return total / (time.perf_counter() - t)


def bench_buffered(store: InfluxReadingStore, series: list[list[Reading]], batch: int) -> float:
    """Readings/s through the bulk writer (5,000-line gzip POSTs, 1 s flush)."""
    total = sum(map(len, series))
    t = time.perf_counter()
    with store.buffered() as w:
        for i in range(0, max(map(len, series)), batch):
            for s in series:
                w.add(s[i:i + batch])
    return total / (time.perf_counter() - t)


def bench_downsample(store, device: str, span_ms: int, points: int, repeat: int = 5) -> tuple[float, int]:
    """Median ms to fetch ``points`` min/max/mean buckets over ``span_ms`` of one device."""
    times = []
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = len(store.downsample(device, T0, T0 + span_ms, max(1, span_ms // points)))
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--batch", type=int, default=500, help="readings per write() call (an MQTT message)")
    args = ap.parse_args(argv)
    series = make_readings(args.readings, args.devices)
    per_device = len(series[0])
    span = per_device * MINUTE
    print(f"{args.readings:,} readings, {args.devices} loggers x {per_device:,} one-minute readings "
          f"({span / DAY:.0f} days each), write() batches of {args.batch}")
    print("figures from a shared 2-core machine: noisy, compare orders of magnitude\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "bench.db")
        sqlite = SqliteReadingStore(db)
        w = bench_writes(sqlite, series, args.batch)
        dup = bench_writes(sqlite, series[:2], args.batch)
        q, n = bench_downsample(sqlite, "LOG-0000", span, 1000)
        rows.append(("SQLite (FULL sync)", w, dup, None, q, n))
        db.close()

        server = Influxd(Path(tmp) / "influxd")
        server.start()
        try:
            influx = InfluxReadingStore(server.url, "bench")
            w = bench_writes(influx, series, args.batch)
            dup = bench_writes(influx, series[:2], args.batch)
            bulk_series = [[Reading(r.device_id.replace("LOG", "BULK"), r.ts, r.temp_c, r.seq) for r in s]
                           for s in series]
            bulk = bench_buffered(influx, bulk_series, args.batch)
            q, n = bench_downsample(influx, "LOG-0000", span, 1000)
            rows.append(("influxd 1.6 (loopback)", w, dup, bulk, q, n))
            influx.close()
        finally:
            server.stop()
    print(f"{'store':<24}{'write/s':>12}{'redeliver/s':>13}{'bulk/s':>12}{'downsample':>14}{'buckets':>9}")
    for name, w, dup, bulk, q, n in rows:
        bulk_s = f"{bulk:,.0f}" if bulk else "-"
        print(f"{name:<24}{w:>12,.0f}{dup:>13,.0f}{bulk_s:>12}{q:>11.1f} ms{n:>9}")
    print("\nwrite/s: new readings through write() (synchronous, duplicate check included); redeliver/s: the"
          " same readings again (all duplicates); bulk/s: InfluxReadingStore.buffered();"
          f" downsample: median of 5 queries of 1,000 min/max/mean buckets over {span / DAY:.0f} days")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

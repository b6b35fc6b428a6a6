"""Peak memory of the collector's ingest process with N active devices (run in a fresh interpreter).

Each device sends a day of 5-minute readings in 24 hourly messages of 12 readings, delivered in the
collector's batches of 500 messages through the real Pipeline on a SQLite file: engines, health state,
checkpoints, SQLite's cache and all. Prints the process's peak resident set size.
Usage: python bench/collector_memory.py [--devices 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.core.clock import ManualClock  # noqa: E402
from coldtrace.core.model import HOUR, MINUTE  # noqa: E402
from coldtrace.services.pipeline import RawMessage  # noqa: E402
from coldtrace.settings import load_settings  # noqa: E402
from coldtrace.wiring import build_services  # noqa: E402

T0 = 1_795_600_000_000


def _vm(field: str) -> float:
    """MiB from /proc/self/status. Not ru_maxrss: Linux carries it over exec from the parent process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    args = ap.parse_args()
    n = args.devices
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(T0 + 25 * HOUR)
        services = build_services(load_settings(data_dir=Path(tmp), log_level="WARNING"), clock)
        start_rss = _vm("VmRSS")
        t = time.perf_counter()
        batch: list[RawMessage] = []
        for hour in range(24):
            for d in range(n):
                dev = f"LOG-{d:05d}"
                readings = [{"ts": T0 + hour * HOUR + k * 5 * MINUTE, "temp_c": round(5 + ((d + k) % 7) / 10, 2)}
                            for k in range(12)]
                body = json.dumps({"v": 1, "device_id": dev, "seq": hour, "battery_pct": 90, "readings": readings})
                batch.append(RawMessage(body.encode(), "mqtt", dev))
                if len(batch) == 500:
                    services.pipeline.ingest_raw_many(batch)
                    batch = []
        if batch:
            services.pipeline.ingest_raw_many(batch)
        dt = time.perf_counter() - t
        peak = _vm("VmHWM")
        stored = services.readings.count()
        services.close()
    print(f"collector ingest process, {n:,} active devices ({stored:,} readings in {dt:.1f} s):"
          f" peak RSS {peak:.0f} MiB (after start-up {start_rss:.0f} MiB; target < 300 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

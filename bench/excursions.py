"""Benchmarks of the excursion engine, MKT and engine memory. Prints figures; asserts nothing.

    .venv/bin/python bench/excursions.py [--readings 10000000] [--devices 10000]

Targets (issue 3): batch >= 5 M readings/s for the 5-limit 2-8 °C profile over 10 M readings, streaming
>= 200,000 readings/s, MKT over 10 M readings < 0.5 s, 10,000 active device engines (+ collector) < 300 MB.
Figures are noisy on a shared machine: run it when the CPU is idle.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from coldtrace.core.excursions import SeriesEngine, evaluate
from coldtrace.core.mkt import series_mkt
from coldtrace.core.model import BUILTIN_PROFILES, MINUTE

T0 = 1_795_687_200_000


def fridge_series(n: int, seed: int = 1, step_ms: int = MINUTE) -> tuple[np.ndarray, np.ndarray]:
    """A realistic 2-8 °C fridge: compressor cycling, door openings, power cuts and a few freezes."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * step_ms
    minutes = np.arange(n) * (step_ms / MINUTE)
    v = 5.0 + 0.8 * np.sin(2 * np.pi * minutes / 40.0) + rng.normal(0, 0.08, n)
    days = n * step_ms / (24 * 60 * MINUTE)
    for count, width, shape in ((int(4 * days), 60, "door"), (int(days / 14), 360, "cut"),
                                (int(days / 30), 120, "freeze")):
        starts = rng.integers(0, max(1, n - width), count)
        k = np.arange(width)
        if shape == "door":
            bump = np.exp(-k / 8.0)
            amp = rng.uniform(1.0, 5.0, count)
        elif shape == "cut":
            bump = np.minimum(k, width - k) / (width / 2)
            amp = rng.uniform(4.0, 10.0, count)
        else:
            bump = np.ones(width)
            amp = -rng.uniform(5.5, 7.0, count)
        np.add.at(v, (starts[:, None] + k[None, :]).ravel(), (amp[:, None] * bump[None, :]).ravel())
    return ts, np.round(v, 2)


def bench_batch(n: int) -> None:
    prof = BUILTIN_PROFILES["2-8C"]
    ts, v = fridge_series(n)
    evaluate("warm", prof, ts[:100_000], v[:100_000])
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        excs = evaluate("bench", prof, ts, v)
        best = min(best, time.perf_counter() - t0)
    print(f"batch     {n:>11,} readings, 5-limit 2-8C profile (+MKT limit): {best:6.2f} s = "
          f"{n / best / 1e6:6.2f} M readings/s ({len(excs):,} excursions, "
          f"{(v > 8).mean() * 100:.1f} % of readings above 8 °C)")


def bench_streaming(n: int) -> None:
    prof = BUILTIN_PROFILES["2-8C"]
    ts, v = fridge_series(n, seed=2)
    for chunk in (1, 10, 100, 1000):
        m = n if chunk > 1 else n // 5
        eng = SeriesEngine("s", prof, keep_history=False)
        tl, vl = ts[:m], v[:m]
        t0 = time.perf_counter()
        if chunk == 1:
            feed = eng.feed
            for t, x in zip(tl.tolist(), vl.tolist(), strict=True):
                feed((t,), (x,))
        else:
            for i in range(0, m, chunk):
                eng.feed(tl[i:i + chunk], vl[i:i + chunk])
        dt = time.perf_counter() - t0
        print(f"streaming {m:>11,} readings fed {chunk:>4} at a time: {m / dt:>12,.0f} readings/s")


def bench_mkt(n: int) -> None:
    ts, v = fridge_series(n, seed=3)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        value = series_mkt(ts, v, max_gap_ms=30 * MINUTE)
        best = min(best, time.perf_counter() - t0)
    print(f"MKT       {n:>11,} readings: {best:6.3f} s (MKT {value:.3f} °C)")


def bench_memory(devices: int) -> None:
    """Engines + health state of ``devices`` active loggers, each fed a day of 5-minute readings."""
    from coldtrace.core.health import DeviceHealth

    prof = BUILTIN_PROFILES["2-8C"]
    ts, v = fridge_series(288, seed=4, step_ms=5 * MINUTE)
    gc.collect()
    tracemalloc.start()
    engines, health = {}, {}
    for d in range(devices):
        dev = f"LOG-{d:05d}"
        eng = SeriesEngine(dev, prof, keep_history=False)
        for i in range(0, 288, 12):
            eng.feed(ts[i:i + 12], v[i:i + 12])
        engines[dev] = eng
        health[dev] = DeviceHealth(dev)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"memory    {devices:,} active device engines + health state: {current / 2**20:.1f} MiB held, "
          f"{peak / 2**20:.1f} MiB peak (tracemalloc)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=10_000_000)
    ap.add_argument("--stream", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=10_000)
    args = ap.parse_args()
    bench_batch(args.readings)
    bench_streaming(args.stream)
    bench_mkt(args.readings)
    bench_memory(args.devices)
    # the whole ingest process (pipeline, SQLite, health, checkpoints), in a fresh interpreter
    import subprocess

    subprocess.run([sys.executable, str(Path(__file__).with_name("collector_memory.py")), "--devices",
                    str(args.devices)], check=True)


if __name__ == "__main__":
    main()

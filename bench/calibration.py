"""Calibration maths timings: one big bench session, and drift regression over a large fleet.

    .venv/bin/python bench/calibration.py [--duts 20] [--set-points 3] [--pairs 10000] [--devices 10000]

1. Session: S set points x D DUTs x N paired readings. Timed: stability detection on the reference, pairing
   every DUT with the interpolated reference, and error / s / u / U / ILAC-G8 decision per cell (targets: the
   whole evaluation < 1 s). The vectorised ``evaluate_matrix`` is timed on its own too.
2. Drift: least-squares fit, slope standard error, t statistic, predicted out-of-tolerance date and the drift
   flags for DEVICES devices with ragged histories of 2..12 as-found sessions (target < 1 s).
Figures are the median of 5 runs. On a shared 2-core machine they are noisy: compare orders of magnitude.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.core import calibration as cal  # noqa: E402
from coldtrace.core.calibration_drift import DEFAULT_MAX_RATE_C_PER_YEAR  # noqa: E402
from coldtrace.core.model import DAY, MINUTE  # noqa: E402

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def session_data(set_points: int, duts: int, pairs: int, rng: np.random.Generator):
    """Reference and DUTs at 1 s (DUTs offset by 0.5 s) through each set point's hold: 10 min to settle,
    then N s of capture; an hour without data between set points."""
    settle = 10 * 60
    ref_t: list[np.ndarray] = []
    ref_c: list[np.ndarray] = []
    dut: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {d: ([], []) for d in range(duts)}
    t = T0
    for k in range(set_points):
        sp = -20.0 + 22.5 * k
        n = settle + pairs + 2
        ts = t + np.arange(n, dtype=np.int64) * 1000
        ref_t.append(ts)
        ref_c.append(sp + rng.normal(0, 0.01, n))
        for d in range(duts):
            dts = ts[:-1] + 500  # the DUT logs through the whole hold; the capture picks its N pairs
            dut[d][0].append(dts)
            dut[d][1].append(sp + 0.02 * d + rng.normal(0, 0.02, dts.size))
        t = int(ts[-1]) + 60 * MINUTE
    ref = (np.concatenate(ref_t), np.concatenate(ref_c))
    duts_arr = {d: (np.concatenate(a), np.concatenate(b)) for d, (a, b) in dut.items()}
    return ref, duts_arr


def evaluate_session(ref, duts, set_points: int) -> list[cal.PointResult]:
    rt, rc = ref
    out, cursor = [], int(rt[0])
    for k in range(set_points):
        sp = -20.0 + 22.5 * k
        w = cal.find_stable(rt, rc, sp, after_ms=cursor)
        assert w is not None, f"set point {sp} not found"
        end = w.stable_at_ms + 10_000 * 1000
        for dt, dc in duts.values():
            p = cal.pair(dt, dc, rt, rc, start_ms=w.stable_at_ms, end_ms=end)
            out.append(cal.evaluate_pairs(p.dut, p.ref, mpe_c=0.5, u_ref_expanded_c=0.03, resolution_c=0.01))
        cursor = end
    return out


def fleet_histories(devices: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = 12
    n = rng.integers(2, m + 1, devices)
    T = T0 + (np.arange(m)[None, :] * 365 * DAY / 2 + rng.integers(0, 10 * DAY, (devices, m))).astype(np.float64)
    slope = rng.normal(0, 0.08, devices) / 365 / DAY  # °C per ms (a few loggers drift fast)
    E = rng.normal(0, 0.05, devices)[:, None] + slope[:, None] * (T - T0) + rng.normal(0, 0.03, (devices, m))
    mask = np.arange(m)[None, :] >= n[:, None]
    T[mask] = np.nan
    E[mask] = np.nan
    U = rng.uniform(0.03, 0.12, devices)
    return T, E, U


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duts", type=int, default=20)
    ap.add_argument("--set-points", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--devices", type=int, default=10_000)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1)

    ref, duts = session_data(args.set_points, args.duts, args.pairs, rng)
    cells = args.set_points * args.duts
    t_stable, _ = timed(lambda: [cal.find_stable(*ref, -20.0 + 22.5 * k) for k in range(args.set_points)])
    t_session, results = timed(lambda: evaluate_session(ref, duts, args.set_points))
    assert len(results) == cells and all(r.n == args.pairs for r in results)
    diffs = rng.normal(0.1, 0.02, (cells, args.pairs))
    t_matrix, _ = timed(lambda: cal.evaluate_matrix(diffs, mpe_c=0.5, u_ref_expanded_c=0.03, resolution_c=0.01))
    print(f"session: {args.set_points} set points x {args.duts} DUTs x {args.pairs:,} paired readings"
          f" ({cells * args.pairs:,} pairs, reference {ref[0].size:,} readings)")
    print(f"  stability detection, all set points : {t_stable * 1000:8.1f} ms")
    print(f"  whole evaluation (stable + pair + e/s/U/decision per cell): {t_session * 1000:8.1f} ms"
          f"   target < 1000 ms  {'OK' if t_session < 1 else 'MISSED'}")
    print(f"  evaluate_matrix alone ({cells} x {args.pairs:,})      : {t_matrix * 1000:8.1f} ms")

    T, E, U = fleet_histories(args.devices, rng)
    sessions = int(np.sum(~np.isnan(T)))

    def drift():
        fit = cal.fit_drift(T, E, U_c=U, mpe_c=0.5)
        last = np.nanmax(T, axis=1)
        return fit, cal.drift_flags(fit, last + 365 * DAY)

    t_drift, (fit, (before_due, fast)) = timed(drift)
    print(f"drift: {args.devices:,} devices, {sessions:,} as-found results (2..12 per device)")
    print(f"  fit + se + t + predicted date + flags: {t_drift * 1000:8.1f} ms   target < 1000 ms"
          f"  {'OK' if t_drift < 1 else 'MISSED'}")
    print(f"  flagged: {int(before_due.sum()):,} out of tolerance before the next due date,"
          f" {int(fast.sum()):,} significant and faster than {DEFAULT_MAX_RATE_C_PER_YEAR:.2f} °C/year")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

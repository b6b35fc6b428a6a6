"""Calibration maths (docs/RULES.md, "Calibration"): pure numpy, time as an argument.

Why pure: a calibration result is a record an auditor may ask to recompute years later. Every number a
session produces comes from these functions of stored readings, so the same readings give the same
certificate, whatever order they arrived in and whatever process computed them.

Bench side: stability of the reference at a set point, pairing DUT readings with the linearly interpolated
reference, error / repeatability / uncertainty, and the ILAC-G8 decision. Drift side (``calibration_drift``):
EWMA on a live paired-error stream, least-squares drift over past as-found results, due dates.
Times are epoch ms (int64); temperatures °C (float64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from coldtrace.core.calibration_drift import (  # noqa: F401  (re-exported: calibration.py is the module callers know)
    DriftFit,
    EwmaChart,
    EwmaSeries,
    EwmaState,
    drift_flags,
    due_date,
    due_stage,
    ewma_baseline,
    ewma_run,
    fit_drift,
    pad_histories,
)
from coldtrace.core.model import MINUTE

Rule = Literal["guarded", "simple"]
Decision = Literal["pass", "fail", "indeterminate", "no_data"]
RULES = ("guarded", "simple")

#: ILAC-G8 zones of a guarded decision: where |e| falls relative to MPE - U, MPE, MPE + U.
ZONES = ("pass", "conditional_pass", "conditional_fail", "fail")

PAIR_MAX_DISTANCE_MS = 60_000


@dataclass(frozen=True, slots=True)
class StabilityCriteria:
    """When the reference counts as settled at a set point.

    ``set_point_tolerance_c`` and ``min_readings`` are not in RULES.md: a flat reference 3 °C away from the
    set point is a bath that did not reach it (not a set point to capture), and two readings always have a
    standard deviation small enough to look stable.
    """

    window_ms: int = 10 * MINUTE
    max_std_c: float = 0.05
    max_slope_c_per_min: float = 0.02
    set_point_tolerance_c: float = 1.0
    min_readings: int = 5


@dataclass(frozen=True, slots=True)
class StableWindow:
    set_point_c: float
    start_ms: int  # window [start_ms, stable_at_ms] over which the reference was judged stable
    stable_at_ms: int  # capture starts here
    mean_c: float
    std_c: float
    slope_c_per_min: float
    n: int


def _as_series(ts: np.ndarray | list, temp: np.ndarray | list) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(ts, dtype=np.int64)
    y = np.asarray(temp, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError("timestamps and temperatures must be 1-D arrays of the same length")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        order = np.argsort(t, kind="stable")
        t, y = t[order], y[order]
        keep = np.concatenate(([True], np.diff(t) > 0))
        t, y = t[keep], y[keep]
    return t, y


def trailing_stats(ts: np.ndarray | list, temp: np.ndarray | list, window_ms: int,
                   edge_ms: int = PAIR_MAX_DISTANCE_MS) -> tuple[np.ndarray, ...]:
    """For each reading j, statistics of the readings in [ts_j - window, ts_j].

    Returns (n, mean, std (ddof=1), |slope| in °C/min, covered) arrays; ``covered`` is True when the series
    reaches back to ts_j - window and its first reading inside the window is within ``edge_ms`` of the
    window's start (after a gap in the data, a few fresh readings are not a 10-minute window). Prefix sums
    over centred values make it O(n) for a whole series.
    """
    t, y = _as_series(ts, temp)
    if t.size == 0:
        empty = np.empty(0)
        return empty, empty, empty, empty, np.empty(0, bool)
    x = (t - t[0]) / MINUTE  # minutes from the first reading
    x = x - x.mean()
    yc = y - y.mean()
    zero = np.zeros(1)
    cx, cy = np.concatenate((zero, np.cumsum(x))), np.concatenate((zero, np.cumsum(yc)))
    cxx, cyy = np.concatenate((zero, np.cumsum(x * x))), np.concatenate((zero, np.cumsum(yc * yc)))
    cxy = np.concatenate((zero, np.cumsum(x * yc)))
    lo = np.searchsorted(t, t - window_ms, side="left")
    hi = np.arange(1, t.size + 1)
    n = (hi - lo).astype(np.float64)
    sx, sy = cx[hi] - cx[lo], cy[hi] - cy[lo]
    sxx = (cxx[hi] - cxx[lo]) - sx * sx / n
    syy = (cyy[hi] - cyy[lo]) - sy * sy / n
    sxy = (cxy[hi] - cxy[lo]) - sx * sy / n
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(np.clip(syy, 0.0, None) / (n - 1))
        slope = np.abs(np.where(sxx > 0, sxy / sxx, np.nan))
    mean = sy / n + y.mean()
    covered = (np.searchsorted(t, t - window_ms, side="right") > 0) & (t[lo] - (t - window_ms) <= edge_ms)
    return n, mean, std, slope, covered


def find_stable(ts: np.ndarray | list, temp: np.ndarray | list, set_point_c: float, *,
                after_ms: int | None = None, criteria: StabilityCriteria = StabilityCriteria()
                ) -> StableWindow | None:
    """The first instant (a reference reading at or after ``after_ms``) where the reference is stable at
    ``set_point_c``: std over the trailing window <= max_std, |slope| <= max_slope, mean within tolerance."""
    t, y = _as_series(ts, temp)
    if t.size == 0:
        return None
    n, mean, std, slope, covered = trailing_stats(t, y, criteria.window_ms)
    ok = (covered & (n >= criteria.min_readings) & (std <= criteria.max_std_c)
          & (slope <= criteria.max_slope_c_per_min)
          & (np.abs(mean - set_point_c) <= criteria.set_point_tolerance_c))
    if after_ms is not None:
        ok &= t >= after_ms
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        return None
    j = int(hits[0])
    return StableWindow(float(set_point_c), int(t[j] - criteria.window_ms), int(t[j]), float(mean[j]),
                        float(std[j]), float(slope[j]), int(n[j]))


@dataclass(frozen=True, slots=True)
class Pairs:
    ts: np.ndarray  # DUT timestamps that were paired
    dut: np.ndarray
    ref: np.ndarray  # reference interpolated at ts

    @property
    def diff(self) -> np.ndarray:
        return self.dut - self.ref

    def __len__(self) -> int:
        return int(self.ts.size)


def pair(dut_ts: np.ndarray | list, dut_c: np.ndarray | list, ref_ts: np.ndarray | list,
         ref_c: np.ndarray | list, *, start_ms: int | None = None, end_ms: int | None = None,
         max_distance_ms: int = PAIR_MAX_DISTANCE_MS) -> Pairs:
    """Pair DUT readings in [start, end] with the reference interpolated linearly at the same instant.

    A DUT reading more than ``max_distance_ms`` from every reference reading is not paired; neither is one
    outside the reference's span (we interpolate, never extrapolate).
    """
    dt, dy = _as_series(dut_ts, dut_c)
    rt, ry = _as_series(ref_ts, ref_c)
    keep = np.ones(dt.size, bool)
    if start_ms is not None:
        keep &= dt >= start_ms
    if end_ms is not None:
        keep &= dt <= end_ms
    dt, dy = dt[keep], dy[keep]
    if rt.size == 0 or dt.size == 0:
        e = np.empty(0)
        return Pairs(np.empty(0, np.int64), e, e)
    inside = (dt >= rt[0]) & (dt <= rt[-1])
    idx = np.searchsorted(rt, dt)
    left = rt[np.clip(idx - 1, 0, rt.size - 1)]
    right = rt[np.clip(idx, 0, rt.size - 1)]
    nearest = np.minimum(np.abs(dt - left), np.abs(right - dt))
    ok = inside & (nearest <= max_distance_ms)
    dt, dy = dt[ok], dy[ok]
    return Pairs(dt, dy, np.interp(dt.astype(np.float64), rt.astype(np.float64), ry))


def standard_uncertainty(s_c: np.ndarray | float, n: np.ndarray | int, *, u_ref_expanded_c: float,
                         resolution_c: np.ndarray | float, u_medium_c: float = 0.0) -> np.ndarray | float:
    """u = sqrt((U_ref/2)^2 + s^2/n + resolution^2/12 + u_medium^2): reference (k=2 certificate), the
    standard error of the mean error, the DUT's rounding (rectangular), the bath's uniformity/stability."""
    s = np.asarray(s_c, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    res = np.asarray(resolution_c, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.sqrt((u_ref_expanded_c / 2.0) ** 2 + s * s / nn + res * res / 12.0 + u_medium_c ** 2)
    return float(u) if np.ndim(u) == 0 else u


def zone(error_c: np.ndarray | float, U_c: np.ndarray | float, mpe_c: float) -> np.ndarray | str:
    """ILAC-G8 zone of |e|: pass (<= MPE-U), conditional_pass (<= MPE), conditional_fail (<= MPE+U), fail."""
    a = np.abs(np.asarray(error_c, dtype=np.float64))
    U = np.asarray(U_c, dtype=np.float64)
    z = np.where(a <= mpe_c - U, "pass", np.where(a <= mpe_c, "conditional_pass",
                                                  np.where(a <= mpe_c + U, "conditional_fail", "fail")))
    z = np.where(np.isnan(a) | np.isnan(U), "no_data", z)
    return str(z) if z.ndim == 0 else z


def decide(error_c: np.ndarray | float, U_c: np.ndarray | float, mpe_c: float,
           rule: Rule = "guarded") -> np.ndarray | str:
    """Guarded acceptance (guard band w = U): pass if |e| <= MPE - U, fail if |e| > MPE + U, otherwise
    indeterminate (not a pass). Simple rule: pass if |e| <= MPE, else fail (U reported, not used)."""
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r} (guarded | simple)")
    a = np.abs(np.asarray(error_c, dtype=np.float64))
    U = np.asarray(U_c, dtype=np.float64)
    if rule == "simple":
        d = np.where(a <= mpe_c, "pass", "fail")
    else:
        d = np.where(a <= mpe_c - U, "pass", np.where(a > mpe_c + U, "fail", "indeterminate"))
    d = np.where(np.isnan(a) | np.isnan(U), "no_data", d)
    return str(d) if d.ndim == 0 else d


@dataclass(frozen=True, slots=True)
class PointResult:
    """One DUT at one set point."""

    n: int
    error_c: float  # mean(dut - ref)
    s_c: float  # repeatability: std(dut - ref), ddof=1
    u_c: float
    U_c: float
    decision: str
    zone: str
    ref_mean_c: float
    dut_mean_c: float

    def to_dict(self) -> dict[str, object]:
        return {"n": self.n, "error_c": self.error_c, "s_c": self.s_c, "u_c": self.u_c, "U_c": self.U_c,
                "decision": self.decision, "zone": self.zone, "ref_mean_c": self.ref_mean_c,
                "dut_mean_c": self.dut_mean_c}


def evaluate_pairs(dut: np.ndarray, ref: np.ndarray, *, mpe_c: float, u_ref_expanded_c: float,
                   resolution_c: float, u_medium_c: float = 0.0, rule: Rule = "guarded",
                   min_pairs: int = 2) -> PointResult:
    """Error, repeatability, u, U and the decision of one DUT at one set point from its pairs.

    Fewer than ``min_pairs`` pairs (at least 2: one pair has no repeatability) gives ``no_data``.
    """
    d = np.asarray(dut, np.float64) - np.asarray(ref, np.float64)
    n = int(d.size)
    if n < max(2, min_pairs):
        nan = float("nan")
        return PointResult(n, float(d.mean()) if n else nan, nan, nan, nan, "no_data", "no_data",
                           float(np.mean(ref)) if n else nan, float(np.mean(dut)) if n else nan)
    e, s = float(d.mean()), float(d.std(ddof=1))
    u = float(standard_uncertainty(s, n, u_ref_expanded_c=u_ref_expanded_c, resolution_c=resolution_c,
                                   u_medium_c=u_medium_c))
    U = 2.0 * u
    return PointResult(n, e, s, u, U, str(decide(e, U, mpe_c, rule)), str(zone(e, U, mpe_c)),
                       float(np.mean(ref)), float(np.mean(dut)))


@dataclass(frozen=True, slots=True)
class PointsArrays:
    """Vectorised results of K (DUT, set point) cells: each field an array of length K."""

    n: np.ndarray
    error_c: np.ndarray
    s_c: np.ndarray
    u_c: np.ndarray
    U_c: np.ndarray
    decision: np.ndarray
    zone: np.ndarray


def evaluate_matrix(diffs: np.ndarray, *, mpe_c: float, u_ref_expanded_c: float,
                    resolution_c: np.ndarray | float, u_medium_c: float = 0.0, rule: Rule = "guarded"
                    ) -> PointsArrays:
    """Evaluate K cells at once: ``diffs`` is (K, N) dut - ref with NaN where a cell has fewer pairs."""
    D = np.asarray(diffs, dtype=np.float64)
    if D.ndim != 2:
        raise ValueError("diffs must be a 2-D (cells x pairs) array")
    n = np.sum(~np.isnan(D), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.nansum(D, axis=1) / n
        s = np.sqrt(np.nansum((D - e[:, None]) ** 2, axis=1) / (n - 1))
    s = np.where(n >= 2, s, np.nan)
    e = np.where(n >= 2, e, np.nan)
    u = np.asarray(standard_uncertainty(s, n, u_ref_expanded_c=u_ref_expanded_c, resolution_c=resolution_c,
                                        u_medium_c=u_medium_c), dtype=np.float64)
    U = 2.0 * u
    return PointsArrays(n, e, s, u, U, np.asarray(decide(e, U, mpe_c, rule)), np.asarray(zone(e, U, mpe_c)))


def overall_decision(decisions: list[str]) -> str:
    """A DUT's decision over its set points: any fail -> fail; else any indeterminate/no_data ->
    indeterminate (not a pass); pass only when every set point passed."""
    if not decisions:
        return "no_data"
    if "fail" in decisions:
        return "fail"
    if all(d == "pass" for d in decisions):
        return "pass"
    return "indeterminate"

"""Pure numbers of a shipment's series: coverage, statistics, MKT, time beyond each limit, gaps.

Coverage follows RULES.md: a reading holds its value until the next reading, for at most ``max_gap``; the
last reading holds until the series end when one is known (a delivered shipment), else covers nothing yet.
Everything takes arrays and times as arguments; nothing here touches a store or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coldtrace.core.excursions import data_gaps
from coldtrace.core.model import Profile

R_GAS = 8.3144598  # J/(mol·K)


def coverage(ts: np.ndarray, start: int | None, end: int | None, max_gap_ms: int) -> np.ndarray:
    """Milliseconds each reading covers inside [start, end)."""
    n = len(ts)
    cov = np.zeros(n, dtype=np.int64)
    if n == 0:
        return cov
    if n > 1:
        cov[:-1] = np.minimum(np.diff(ts), max_gap_ms)
    if end is not None and end > ts[-1]:
        cov[-1] = min(int(end - ts[-1]), max_gap_ms)
    return cov


def mkt_c(temps: np.ndarray, weights: np.ndarray, activation_energy_kj: float = 83.144) -> float | None:
    """Time-weighted mean kinetic temperature (RULES.md), °C; None without covered time."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= 0:
        return None
    dh_r = activation_energy_kj * 1000.0 / R_GAS
    k = -dh_r / (np.asarray(temps, dtype=np.float64) + 273.15)
    m = float(k.max())  # log-sum-exp: exact for any temperature range
    mean_exp_log = m + np.log(float((w * np.exp(k - m)).sum()) / total)
    return float(dh_r / -mean_exp_log - 273.15)


def in_range_bounds(profile: Profile) -> tuple[float, float]:
    """The band no limit objects to: above the highest 'below' threshold and below the lowest 'above' one."""
    lo = max((lim.threshold_c for lim in profile.limits if lim.direction == "below"), default=-np.inf)
    hi = min((lim.threshold_c for lim in profile.limits if lim.direction == "above"), default=np.inf)
    return float(lo), float(hi)


@dataclass
class SeriesStats:
    count: int
    min_c: float | None
    max_c: float | None
    mean_c: float | None  # time-weighted over covered time (plain mean when nothing is covered yet)
    mkt_c: float | None
    window_ms: int | None
    covered_ms: int
    in_range_ms: int
    gap_ms: int | None
    gaps: list[tuple[int, int]] = field(default_factory=list)
    beyond_ms: dict[str, int] = field(default_factory=dict)  # limit id -> covered ms beyond its threshold

    @property
    def time_in_range_pct(self) -> float | None:
        return None if self.covered_ms == 0 else 100.0 * self.in_range_ms / self.covered_ms

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "min_c": self.min_c, "max_c": self.max_c, "mean_c": self.mean_c,
                "mkt_c": self.mkt_c, "window_ms": self.window_ms, "covered_ms": self.covered_ms,
                "in_range_ms": self.in_range_ms, "time_in_range_pct": self.time_in_range_pct,
                "gap_ms": self.gap_ms, "gaps": [list(g) for g in self.gaps], "beyond_ms": dict(self.beyond_ms)}


def series_stats(ts: np.ndarray, temps: np.ndarray, profile: Profile, start: int | None, end: int | None
                 ) -> SeriesStats:
    ts = np.asarray(ts, dtype=np.int64)
    v = np.asarray(temps, dtype=np.float64)
    cov = coverage(ts, start, end, profile.max_gap_ms)
    covered = int(cov.sum())
    lo, hi = in_range_bounds(profile)
    in_range = int(cov[(v >= lo) & (v <= hi)].sum())
    beyond = {}
    for lim in profile.limits:
        mask = v > lim.threshold_c if lim.direction == "above" else v < lim.threshold_c
        beyond[lim.id] = int(cov[mask].sum())
    window = None if start is None or end is None else int(end - start)
    gaps: list[tuple[int, int]] = []
    if len(ts):
        if start is not None and ts[0] > start:
            gaps.append((int(start), int(ts[0])))
        gaps.extend(data_gaps(ts, profile.max_gap_ms))
        if end is not None and end > ts[-1] + profile.max_gap_ms:
            gaps.append((int(ts[-1] + profile.max_gap_ms), int(end)))
    elif start is not None and end is not None and end > start:
        gaps.append((int(start), int(end)))
    gap_ms = None if window is None else max(0, window - covered)
    if not len(v):
        return SeriesStats(0, None, None, None, None, window, 0, 0, gap_ms, gaps, beyond)
    mean = float((v * cov).sum() / covered) if covered else float(v.mean())
    return SeriesStats(int(len(v)), float(v.min()), float(v.max()), round(mean, 4),
                       None if not covered else round(mkt_c(v, cov, profile.activation_energy_kj), 4),
                       window, covered, in_range, gap_ms, gaps, beyond)


def combine_mkt(parts: list[tuple[np.ndarray, np.ndarray]], activation_energy_kj: float) -> float | None:
    """One MKT over several loggers' (temps, coverage) pairs: the shipment's MKT."""
    if not parts:
        return None
    v = np.concatenate([p[0] for p in parts]) if parts else np.empty(0)
    w = np.concatenate([p[1] for p in parts]) if parts else np.empty(0)
    r = mkt_c(v, w, activation_energy_kj)
    return None if r is None else round(r, 4)

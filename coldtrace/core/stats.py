"""Per-series summary over a time window: min/max/mean/MKT, covered time, time in range and beyond each
limit, data gaps. Pure numpy; the API's device summary and reports call it with stored arrays.

Window [start, end): the readings inside it; each holds its value until the next reading, at most max_gap,
and the last one until ``end`` (again at most max_gap). Time not covered is a gap: neither in nor out of range.
When ``prev`` (the last reading before ``start``) is given, its hold into the window counts too, so a summary
of a window that starts between two readings does not report a false gap at its start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coldtrace.core.mkt import DEFAULT_ACTIVATION_ENERGY_KJ, arrhenius_terms, ea_over_r, mkt_from_ratio
from coldtrace.core.model import Profile


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    start: int | None
    end: int | None
    count: int
    min_c: float | None
    max_c: float | None
    mean_c: float | None  # time-weighted (weights = covered time)
    mkt_c: float | None
    covered_ms: int
    in_range_ms: int
    beyond_ms: dict[str, int] = field(default_factory=dict)  # per limit id: covered time beyond its threshold
    gaps: list[tuple[int, int]] = field(default_factory=list)
    gap_ms: int = 0

    @property
    def in_range_pct(self) -> float | None:
        return None if self.covered_ms == 0 else round(100.0 * self.in_range_ms / self.covered_ms, 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start, "end": self.end, "count": self.count, "min_c": self.min_c,
            "max_c": self.max_c, "mean_c": self.mean_c, "mkt_c": self.mkt_c, "covered_ms": self.covered_ms,
            "in_range_ms": self.in_range_ms, "in_range_pct": self.in_range_pct, "beyond_ms": self.beyond_ms,
            "gaps": [{"from": a, "to": b} for a, b in self.gaps], "gap_ms": self.gap_ms,
        }


def in_range_mask(temps: np.ndarray, profile: Profile) -> np.ndarray:
    """True where no limit of the profile sees the value beyond its threshold."""
    ok = np.ones(len(temps), dtype=bool)
    for lim in profile.limits:
        ok &= (temps <= lim.threshold_c) if lim.direction == "above" else (temps >= lim.threshold_c)
    return ok


def summarise(ts: np.ndarray, temps: np.ndarray, profile: Profile, *, start: int | None = None,
              end: int | None = None, prev: tuple[int, float] | None = None) -> SeriesSummary:
    """Summary of sorted readings (already restricted to [start, end)) under ``profile``."""
    t = np.asarray(ts, dtype=np.int64)
    v = np.asarray(temps, dtype=np.float64)
    count = len(t)
    max_gap = profile.max_gap_ms
    virtual = prev is not None and start is not None and prev[0] < start and (count == 0 or t[0] > start)
    if virtual:
        assert prev is not None and start is not None
        t = np.concatenate((np.array([start], dtype=np.int64), t))
        v = np.concatenate(([float(prev[1])], v))
    w = np.zeros(len(t), dtype=np.int64)
    if len(t) > 1:
        w[:-1] = np.minimum(np.diff(t), max_gap)
    if len(t) and end is not None and end > t[-1]:
        w[-1] = min(end - int(t[-1]), max_gap)
    if virtual:
        assert prev is not None and start is not None
        w[0] = max(0, min(int(w[0]), prev[0] + max_gap - start))  # the previous reading's hold runs out
    gaps = _gaps(t, w, start, end)
    gap_ms = sum(b - a for a, b in gaps)
    covered = int(w.sum())
    shown = (w > 0) | (np.arange(len(t)) >= int(virtual))  # real readings, and the held value if it covers
    if not shown.any():
        return SeriesSummary(start, end, 0, None, None, None, None, 0, 0, {}, gaps, gap_ms)
    wf = w.astype(np.float64)
    mean = float(np.dot(wf, v) / covered) if covered else float(v[shown].mean())
    ea_r = ea_over_r(profile.activation_energy_kj or DEFAULT_ACTIVATION_ENERGY_KJ)
    mkt = mkt_from_ratio(float(np.dot(wf, arrhenius_terms(v, ea_r))) / covered, ea_r) if covered else None
    beyond = {}
    for lim in profile.limits:
        mask = (v > lim.threshold_c) if lim.direction == "above" else (v < lim.threshold_c)
        beyond[lim.id] = int(w[mask].sum())
    return SeriesSummary(start, end, count, float(v[shown].min()), float(v[shown].max()), _r(mean), _r(mkt),
                         covered, int(w[in_range_mask(v, profile)].sum()), beyond, gaps, gap_ms)


def _gaps(t: np.ndarray, w: np.ndarray, start: int | None, end: int | None) -> list[tuple[int, int]]:
    """Uncovered intervals inside [start, end): before the first reading, between holds, after the last."""
    out: list[tuple[int, int]] = []
    if len(t) == 0:
        return [(start, end)] if start is not None and end is not None and end > start else []
    if start is not None and t[0] > start:
        out.append((start, int(t[0])))
    held = t + w
    idx = np.flatnonzero(held[:-1] < t[1:])
    out.extend((int(held[i]), int(t[i + 1])) for i in idx)
    if end is not None and int(held[-1]) < end:
        out.append((int(held[-1]), end))
    return out


def _r(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 4)

"""Mean kinetic temperature (docs/RULES.md), time-weighted, with a configurable activation energy.

MKT = (ΔH/R) / (-ln(Σ w_i·exp(-ΔH/(R·T_i)) / Σ w_i)) - 273.15 with w_i the covered time of reading i.

Pure numpy. The Arrhenius terms are always computed with ``np.exp`` (never ``math.exp``): numpy's exp is
the same for an element whatever the array's length, while ``math.exp`` differs from it in the last bit for a
few per cent of inputs. The excursion engine relies on that to give identical answers streaming and batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

GAS_CONSTANT = 8.3144598  # J/(mol·K)
DEFAULT_ACTIVATION_ENERGY_KJ = 83.144
KELVIN = 273.15


def ea_over_r(activation_energy_kj: float = DEFAULT_ACTIVATION_ENERGY_KJ) -> float:
    """ΔH/R in kelvin."""
    if not activation_energy_kj > 0:
        raise ValueError("activation energy must be positive")
    return activation_energy_kj * 1000.0 / GAS_CONSTANT


def arrhenius_terms(temps_c: Sequence[float] | np.ndarray, ea_r: float) -> np.ndarray:
    """exp(-ΔH/(R·T)) for each temperature (°C); the summand of the MKT formula."""
    out = np.asarray(temps_c, dtype=np.float64) + KELVIN  # a new array: the steps below work in place
    np.divide(-ea_r, out, out=out)
    return np.exp(out, out=out)


_TERM_CACHE: dict[tuple[float, float], float] = {}
_TERM_CACHE_MAX = 1 << 16


def arrhenius_term_list(temps_c: list[float], ea_r: float) -> list[float]:
    """``arrhenius_terms`` for a few readings, as Python floats, with a cache: loggers repeat the same
    rounded temperatures, and one numpy call per reading costs more than the rest of the engine's step.
    Cached values come from ``np.exp`` too, so they equal the vectorised ones bit for bit."""
    cache = _TERM_CACHE
    out = []
    for v in temps_c:
        x = cache.get((ea_r, v))
        if x is None:
            if len(cache) >= _TERM_CACHE_MAX:
                cache.clear()
            x = cache[(ea_r, v)] = float(arrhenius_terms((v,), ea_r)[0])
        out.append(x)
    return out


def mkt_from_ratio(ratio: float, ea_r: float) -> float:
    """MKT (°C) from the weighted mean of the Arrhenius terms."""
    if not ratio > 0:
        return math.nan
    return ea_r / -math.log(ratio) - KELVIN


def ratio_for(mkt_c: float, ea_r: float) -> float:
    """Inverse of :func:`mkt_from_ratio`: the weighted mean of terms whose MKT is ``mkt_c``.

    Comparing ratios instead of MKTs avoids a logarithm per reading (MKT is increasing in the ratio)."""
    return math.exp(-ea_r / (mkt_c + KELVIN))


def covered_weights(ts: Sequence[int] | np.ndarray, max_gap_ms: int, end_ts: int | None = None) -> np.ndarray:
    """Covered time (ms) of each reading: until the next reading, at most ``max_gap_ms``.

    The last reading covers until ``end_ts`` (bounded by max_gap) or nothing when no end is given: its
    hold is not known yet. ``ts`` must be sorted."""
    t = np.asarray(ts, dtype=np.int64)
    w = np.zeros(len(t), dtype=np.int64)
    if len(t) > 1:
        np.minimum(np.diff(t), max_gap_ms, out=w[:-1])
    if len(t) and end_ts is not None and end_ts > t[-1]:
        w[-1] = min(end_ts - int(t[-1]), max_gap_ms)
    return w


def mkt(temps_c: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None,
        activation_energy_kj: float = DEFAULT_ACTIVATION_ENERGY_KJ) -> float:
    """MKT (°C) of temperatures with optional weights (equal weights when omitted). NaN if no weight."""
    v = np.ascontiguousarray(temps_c, dtype=np.float64)
    ea_r = ea_over_r(activation_energy_kj)
    terms = arrhenius_terms(v, ea_r)
    if weights is None:
        if len(v) == 0:
            return math.nan
        return mkt_from_ratio(float(terms.mean()), ea_r)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != v.shape:
        raise ValueError("weights and temperatures differ in length")
    total = float(w.sum())
    if not total > 0:
        return math.nan
    return mkt_from_ratio(float(np.dot(w, terms)) / total, ea_r)


def series_mkt(ts: Sequence[int] | np.ndarray, temps_c: Sequence[float] | np.ndarray, *,
               max_gap_ms: int, end_ts: int | None = None,
               activation_energy_kj: float = DEFAULT_ACTIVATION_ENERGY_KJ) -> float:
    """MKT of a sorted series, each reading weighted by the time it covers (gaps weigh nothing)."""
    return mkt(temps_c, covered_weights(ts, max_gap_ms, end_ts), activation_energy_kj)


def time_weighted_mean(ts: Sequence[int] | np.ndarray, temps_c: Sequence[float] | np.ndarray, *,
                       max_gap_ms: int, end_ts: int | None = None) -> float:
    """Mean temperature weighted by covered time (the arithmetic mean of equally spaced readings)."""
    w = covered_weights(ts, max_gap_ms, end_ts).astype(np.float64)
    total = float(w.sum())
    if not total > 0:
        return math.nan
    return float(np.dot(w, np.asarray(temps_c, dtype=np.float64))) / total

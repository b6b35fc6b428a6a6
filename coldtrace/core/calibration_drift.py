"""Drift maths (docs/RULES.md, "Calibration"): live EWMA, long-term regression, due dates. Pure numpy.

Why a drift prediction: a logger that drifts out of tolerance between two calibrations makes every shipment
it travelled with doubtful after the fact. Fitting the as-found errors of past sessions tells QA *before*
the next calibration that a logger will be out, so it can be pulled from service in time.

Long-term drift is vectorised over devices: histories are (D, M) arrays padded with NaN, so 10,000 devices
are fitted in one pass of numpy reductions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coldtrace.core.model import DAY

EWMA_LAMBDA = 0.2
EWMA_L = 3.0
T_SIGNIFICANT = 2.0
DEFAULT_MAX_RATE_C_PER_YEAR = 0.2  # not in RULES.md; see docs/RULES.md "Calibration decisions"
DUE_WARNINGS_DAYS = (90, 30)
YEAR_DAYS = 365.25


# ---------------------------------------------------------------- live drift: EWMA chart on paired error
@dataclass(frozen=True, slots=True)
class EwmaChart:
    """Baseline of a live chart: the mean and std of the paired error over the first stable window.

    ``n0`` is the baseline's size when mu0 and sigma were estimated from it (None: known values). The
    limits then also carry the standard error of mu0, sigma/sqrt(n0): with 20 baseline pairs that error is
    two thirds of the EWMA's own asymptotic std, and ignoring it makes a sound logger alarm on a bench
    several times more often than the nominal 3-sigma rate (seen in the bench simulation).
    """

    mu0: float
    sigma: float
    lam: float = EWMA_LAMBDA
    L: float = EWMA_L
    n0: int | None = None

    def sigma_z(self, i: int | np.ndarray) -> np.ndarray | float:
        """Std of z_i - mu0 after i points: sigma sqrt(lam/(2-lam) (1-(1-lam)^2i)) (+ sigma^2/n0)."""
        lam = self.lam
        var = lam / (2 - lam) * (1 - (1 - lam) ** (2 * np.asarray(i, np.float64)))
        if self.n0:
            var = var + 1.0 / self.n0
        return self.sigma * np.sqrt(var)


def ewma_baseline(diff: np.ndarray | list, *, resolution_c: float = 0.0, lam: float = EWMA_LAMBDA,
                  L: float = EWMA_L) -> EwmaChart:
    """Chart from the paired errors of the first stable window.

    sigma is floored at the DUT's rounding (resolution/sqrt(12)) and 0.001 °C: a quantised logger reading a
    still bath can show a sample std of zero, and limits of zero width would alarm on the first tick.
    """
    d = np.asarray(diff, np.float64)
    if d.size < 2:
        raise ValueError("an EWMA baseline needs at least two paired readings")
    sigma = max(float(d.std(ddof=1)), resolution_c / np.sqrt(12.0), 1e-3)
    return EwmaChart(float(d.mean()), sigma, lam, L, int(d.size))


@dataclass(frozen=True, slots=True)
class EwmaState:
    z: float
    i: int = 0  # points consumed


@dataclass(frozen=True, slots=True)
class EwmaSeries:
    z: np.ndarray
    lcl: np.ndarray
    ucl: np.ndarray
    out_of_limits: np.ndarray  # z outside mu0 +- L sigma_z
    over_mpe: np.ndarray  # |z| + U > MPE
    state: EwmaState

    @property
    def drift(self) -> np.ndarray:
        return self.out_of_limits | self.over_mpe

    def first_drift_index(self) -> int | None:
        hits = np.flatnonzero(self.drift)
        return int(hits[0]) if hits.size else None


def ewma_run(chart: EwmaChart, x: np.ndarray | list, *, U_c: float, mpe_c: float,
             state: EwmaState | None = None) -> EwmaSeries:
    """Feed paired errors ``x`` into the chart from ``state`` (None: start at z = mu0).

    z_i = lam x_i + (1 - lam) z_{i-1}; the recursion is a first-order filter, unrolled here with the
    closed form z_i = (1-lam)^k z_0 + lam sum (1-lam)^(k-j) x_j over short chunks (no underflow).
    """
    xs = np.asarray(x, np.float64)
    st = state or EwmaState(chart.mu0, 0)
    lam, q = chart.lam, 1.0 - chart.lam
    z = np.empty(xs.size)
    prev = st.z
    chunk = 64  # q**64 = 6e-7 for lam 0.2: well inside float64 range
    for a in range(0, xs.size, chunk):
        seg = xs[a:a + chunk]
        k = np.arange(1, seg.size + 1)
        w = q ** (-k.astype(np.float64))  # q^-j, at most q^-64
        z[a:a + seg.size] = q ** k * (prev + lam * np.cumsum(seg * w))
        prev = float(z[a + seg.size - 1])
    i = st.i + np.arange(1, xs.size + 1)
    half = chart.L * np.asarray(chart.sigma_z(i))
    lcl, ucl = chart.mu0 - half, chart.mu0 + half
    out = (z < lcl) | (z > ucl)
    over = np.abs(z) + U_c > mpe_c
    return EwmaSeries(z, lcl, ucl, out, over, EwmaState(prev, st.i + int(xs.size)))


# ---------------------------------------------------------------- long-term drift: least squares
@dataclass(frozen=True, slots=True)
class DriftFit:
    """Per-device fit of e(t) = a + b t (arrays of length D). t in days; times in epoch ms.

    ``intercept_c`` is e at ``t_ref_ms`` (the device's first session); ``predicted_oot_ms`` is NaN when the
    line never reaches |e| + U >= MPE (flat or too few sessions).
    """

    n: np.ndarray
    t_ref_ms: np.ndarray
    intercept_c: np.ndarray
    slope_c_per_day: np.ndarray
    slope_se_c_per_day: np.ndarray
    t_stat: np.ndarray
    last_ms: np.ndarray
    predicted_oot_ms: np.ndarray

    @property
    def slope_c_per_year(self) -> np.ndarray:
        return self.slope_c_per_day * YEAR_DAYS


def fit_drift(t_ms: np.ndarray, error_c: np.ndarray, *, U_c: np.ndarray | float,
              mpe_c: np.ndarray | float) -> DriftFit:
    """Least-squares drift for D devices at once.

    ``t_ms`` and ``error_c`` are (D, M) arrays of past as-found results padded with NaN; ``U_c`` and
    ``mpe_c`` scalars or (D,) arrays (U of the latest result). Fewer than two sessions: NaN slope and no
    prediction. Two sessions: a slope but no standard error (no residual degrees of freedom).
    The predicted date is the first t >= the latest session with |a + b t| + U >= MPE.
    """
    T = np.atleast_2d(np.asarray(t_ms, np.float64))
    E = np.atleast_2d(np.asarray(error_c, np.float64))
    if T.shape != E.shape:
        raise ValueError("t_ms and error_c must have the same shape")
    w = ~(np.isnan(T) | np.isnan(E))
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_ref = np.where(n > 0, np.nanmin(np.where(w, T, np.nan), axis=1), np.nan)
        last = np.where(n > 0, np.nanmax(np.where(w, T, np.nan), axis=1), np.nan)
        x = np.where(w, (T - t_ref[:, None]) / DAY, 0.0)
        y = np.where(w, E, 0.0)
        xbar, ybar = x.sum(1) / n, y.sum(1) / n
        dx = np.where(w, x - xbar[:, None], 0.0)
        dy = np.where(w, y - ybar[:, None], 0.0)
        sxx, sxy = (dx * dx).sum(1), (dx * dy).sum(1)
        b = np.where((n >= 2) & (sxx > 0), sxy / sxx, np.nan)
        a = ybar - b * xbar
        sse = (np.where(w, dy - b[:, None] * dx, 0.0) ** 2).sum(1)
        se = np.where(n > 2, np.sqrt(sse / (n - 2) / sxx), np.nan)
        tstat = np.where(se > 0, b / se, np.where(se == 0, np.sign(b) * np.inf, np.nan))
        tstat = np.where((se == 0) & (b == 0), 0.0, tstat)
        U = np.broadcast_to(np.asarray(U_c, np.float64), n.shape)
        mpe = np.broadcast_to(np.asarray(mpe_c, np.float64), n.shape)
        margin = mpe - U  # the line may wander within +-margin
        x_last = (last - t_ref) / DAY
        e_last = a + b * x_last
        already = np.abs(e_last) + U >= mpe
        target = np.where(b > 0, margin, -margin)
        x_cross = (target - a) / b
        x_pred = np.where(already, x_last, np.where(np.isfinite(x_cross) & (b != 0), x_cross, np.nan))
        pred = np.where(np.isnan(b), np.nan, t_ref + x_pred * DAY)
    return DriftFit(n, t_ref, a, b, se, tstat, last, pred)


def drift_flags(fit: DriftFit, next_due_ms: np.ndarray | float, *,
                max_rate_c_per_year: float = DEFAULT_MAX_RATE_C_PER_YEAR,
                t_significant: float = T_SIGNIFICANT) -> tuple[np.ndarray, np.ndarray]:
    """(before_due, fast) per device: the predicted out-of-tolerance date falls before the next scheduled
    calibration; or the slope is significant (|t| > 2) and faster than the configured rate."""
    pred = fit.predicted_oot_ms
    due = np.broadcast_to(np.asarray(next_due_ms, np.float64), pred.shape)
    with np.errstate(invalid="ignore"):
        before_due = np.isfinite(pred) & (pred < due)
        fast = (np.abs(fit.t_stat) > t_significant) & (np.abs(fit.slope_c_per_year) > max_rate_c_per_year)
    return before_due, np.asarray(fast & np.isfinite(fit.slope_c_per_day))


def pad_histories(histories: list[tuple[list[int], list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """[(times, errors), ...] of D devices -> (D, M) arrays padded with NaN, ready for ``fit_drift``."""
    m = max((len(t) for t, _ in histories), default=0)
    T = np.full((len(histories), m), np.nan)
    E = np.full((len(histories), m), np.nan)
    for i, (t, e) in enumerate(histories):
        T[i, :len(t)] = t
        E[i, :len(e)] = e
    return T, E


# ---------------------------------------------------------------- due dates
def due_date(last_calibrated_ms: int, interval_days: float) -> int:
    return int(last_calibrated_ms + round(interval_days * DAY))


def due_stage(due_ms: int | None, now_ms: int) -> str | None:
    """Where a device stands against its due date: 'expired' (now >= due), 'due_30', 'due_90', or None.
    ``calibration.due`` is raised once per stage (its alert id is derived from the due date and stage)."""
    if due_ms is None:
        return None
    left = due_ms - now_ms
    if left <= 0:
        return "expired"
    for days in sorted(DUE_WARNINGS_DAYS):
        if left <= days * DAY:
            return f"due_{days}"
    return None

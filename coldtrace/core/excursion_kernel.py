"""Vectorised stepping of a ``SeriesEngine`` over one chunk of readings (numpy).

It computes exactly what the per-reading loop ``excursions.SeriesEngine._feed_scalar`` computes, from the
carried state of the engine, and leaves the engine in the same final state.

How the hysteresis state machine is vectorised: a reading is a *candidate* when it is beyond the exit level
(x > T - h). Any other reading ends an episode or keeps none open, so episodes live inside runs of consecutive
candidates: within a run, the episode starts at its first reading beyond T (or at the run's first reading when
an episode was carried open into the chunk) and lasts to the run's end; the reading after the run ends it.
Durations, degree-minutes and cumulative time beyond T are differences of integer prefix sums over the
candidates; the alarm reading of each episode is a ``searchsorted`` on those prefix sums (consecutive: covered
time since the episode start >= delay; cumulative: time beyond T since the series start >= budget). Peaks are
``maximum.reduceat``. Only the candidates (a few per cent of a normal series) are gathered.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coldtrace.core.model import HOUR, MINUTE, Excursion

# The kernel is a leaf: ``excursions`` imports it, never the other way round. The engine and its machines are
# passed in; their types are ``excursions.SeriesEngine`` and ``excursions._Machine``.
SeriesEngine = Any
_Machine = Any

MKT_MIN_COVERED_MS = 24 * HOUR  # an MKT window is judged once it covers 24 h (RULES.md)
DM_UNITS = 1_000_000  # degree-minutes are kept as integers of 1e-6 °C·min
DM_SCALE = DM_UNITS / MINUTE  # (ms · °C) -> micro °C·min


def covers(t: np.ndarray, max_gap: int) -> np.ndarray:
    """Covered ms of each reading of a chunk; raises if ``t`` is not strictly increasing."""
    cov = np.empty(len(t), dtype=np.int64)
    np.subtract(t[1:], t[:-1], out=cov[:-1])
    if len(t) > 1 and int(cov[:-1].min()) <= 0:
        raise ValueError("SeriesEngine.feed needs strictly increasing timestamps")
    np.minimum(cov[:-1], max_gap, out=cov[:-1])
    cov[-1] = 0  # the last reading's hold is pending until the next feed (or finish)
    return cov


def _runs(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last positions (in ``idx``) of each run of consecutive indices."""
    brk = np.flatnonzero(np.diff(idx) != 1) + 1
    a = np.concatenate(([0], brk))
    b = np.concatenate((brk - 1, [len(idx) - 1]))
    return a, b


def _prefix(x: np.ndarray, start: int = 0) -> np.ndarray:
    """Exclusive prefix sums of integers, starting at ``start`` (len(x) + 1 values)."""
    out = np.empty(len(x) + 1, dtype=np.int64)
    out[0] = 0
    np.cumsum(x, out=out[1:])
    if start:
        out += start
    return out


def feed_vector(eng: SeriesEngine, t: np.ndarray, v: np.ndarray, q: np.ndarray, cov: np.ndarray
                ) -> list[Excursion]:
    """Step ``eng`` over sorted readings (t, v) with MKT terms ``q`` and covered times ``cov``; the previous
    reading's hold has already been settled. Returns the excursions the chunk touched (unsorted)."""
    out: list[Excursion] = []
    for m in eng.machines:
        _machine(eng, m, t, v, cov, out)
    if eng.mkt is not None:
        _mkt(eng, t, cov, q, out)
    return out


def _machine(eng: SeriesEngine, m: _Machine, t: np.ndarray, v: np.ndarray, cov: np.ndarray,
             out: list[Excursion]) -> None:
    n = len(t)
    cand = (v > m.E) if m.sign > 0 else (v < -m.E)
    if m.open and not cand[0]:  # the carried episode ends at the chunk's first reading
        t0 = int(t[0])
        m.check_alarms(t0, m.dur)
        out.extend(eng.machine_excursions(m, t0))
        m.open = False
    idx = np.flatnonzero(cand)
    k = len(idx)
    if k == 0:
        return
    xc = v[idx] if m.sign > 0 else -v[idx]
    abovec = xc > m.T
    ap = np.flatnonzero(abovec)
    carried = m.open  # still open here means cand[0]: the first run continues it
    if len(ap) == 0 and not carried:
        return
    covc = cov[idx]
    run_a, run_b = _runs(idx)
    if len(ap):
        pos = np.searchsorted(ap, run_a)
        p = np.where(pos < len(ap), ap[np.minimum(pos, len(ap) - 1)], k)
    else:
        p = np.full(len(run_a), k)
    if carried:
        p[0] = 0
    keep = p <= run_b
    p, b = p[keep], run_b[keep]
    ne = len(p)
    Cc = _prefix(covc)
    Ac = _prefix(np.where(abovec, covc, 0), m.cum)
    Dc = _prefix(np.where(abovec, np.rint(covc * (xc - m.T) * DM_SCALE), 0.0).astype(np.int64))
    end_idx = idx[b] + 1
    closed = end_idx < n
    d0 = np.zeros(ne, dtype=np.int64)
    if carried:
        d0[0] = m.dur
    dur = d0 + Cc[b + 1] - Cc[p]
    dm = Dc[b + 1] - Dc[p]
    seg = np.empty(2 * ne, dtype=np.int64)
    seg[0::2], seg[1::2] = p, b + 1
    peak = np.maximum.reduceat(np.append(xc, -np.inf), seg)[0::2]
    ts_c = t[idx]
    end_ts = t[np.minimum(end_idx, n - 1)]
    starts = ts_c[p].tolist()
    peaks, dms = peak.tolist(), dm.tolist()
    if carried:
        starts[0] = m.start
        peaks[0] = max(peaks[0], m.peak)
        dms[0] += m.dm
    closed_l = closed.tolist()
    ends = [e if c else None for e, c in zip(end_ts.tolist(), closed_l, strict=True)]
    durs = dur.tolist()
    sign = m.sign
    real_peaks = [sign * x for x in peaks]
    dmf = [x / DM_UNITS for x in dms]
    sid = eng.series_id
    last_alarm: list[tuple[int | None, str | None]] = []
    for i, lim in enumerate(m.limits):
        jc = np.maximum(np.searchsorted(Cc, Cc[p] + (lim.delay_ms - d0), "left"), p)
        if lim.cumulative_ms is not None:
            jcum = np.maximum(np.searchsorted(Ac, lim.cumulative_ms, "left"), p)
            jj = np.minimum(jc, jcum)
            cons = (jc <= jcum).tolist()
        else:
            jj = jc
            cons = None
        has = ((jj <= b) | ((jj == b + 1) & closed)).tolist()
        ats = np.where(jj <= b, ts_c[np.minimum(jj, k - 1)], end_ts).tolist()
        a_ts = [a if h else None for a, h in zip(ats, has, strict=True)]
        if cons is None:
            a_kind = ["consecutive" if h else None for h in has]
        else:
            a_kind = [("consecutive" if c else "cumulative") if h else None
                      for c, h in zip(cons, has, strict=True)]
        if carried and m.alarm_ts[i] is not None:
            a_ts[0], a_kind[0] = m.alarm_ts[i], m.alarm_kind[i]
        last_alarm.append((a_ts[-1], a_kind[-1]))
        lid, dirn, thr, sev = lim.id, lim.direction, lim.threshold_c, lim.severity
        out.extend([Excursion(sid, lid, dirn, thr, sev, s, e, d, pk, dmv, at, ak)  # type: ignore[arg-type]
                    for s, e, d, pk, dmv, at, ak in zip(starts, ends, durs, real_peaks, dmf, a_ts, a_kind,
                                                        strict=True)])
    m.cum = int(Ac[-1])
    if closed_l[-1]:
        m.open = False
    else:
        m.open, m.start, m.dur, m.peak, m.dm = True, int(starts[-1]), int(durs[-1]), float(peaks[-1]), dms[-1]
        m.alarm_ts = [a for a, _ in last_alarm]
        m.alarm_kind = [kd for _, kd in last_alarm]


def _mkt(eng: SeriesEngine, t: np.ndarray, cov: np.ndarray, q: np.ndarray, out: list[Excursion]) -> None:
    """The MKT limit: D (Σ covered ms · q) and W (Σ covered ms) at each reading, exclusive of its own hold."""
    mk = eng.mkt
    assert mk is not None
    n = len(t)
    D = np.empty(n + 1, dtype=np.float64)
    D[0] = eng.D
    np.multiply(cov, q, out=D[1:])
    np.cumsum(D, out=D)  # sequential from the carried value: the same additions as per reading
    W = _prefix(cov, eng.W)
    first = int(np.searchsorted(W[:n], MKT_MIN_COVERED_MS, "left"))  # W is non-decreasing
    above = np.zeros(n, dtype=bool)
    np.greater(D[first:n], 0.0, out=above[first:])
    if mk.open and not above[0]:
        out.extend(eng.mkt_excursions(int(t[0])))
        mk.open = False
    idx = np.flatnonzero(above)
    eng.D, eng.W = float(D[n]), int(W[n])
    if len(idx) == 0:
        return
    a, b = _runs(idx)
    ratio = D[idx] / W[idx] + eng.mkt_ratio
    seg = np.empty(2 * len(a), dtype=np.int64)
    seg[0::2], seg[1::2] = a, b + 1
    peaks = np.maximum.reduceat(np.append(ratio, -np.inf), seg)[0::2].tolist()
    durs = (W[idx[b] + 1] - W[idx[a]]).tolist()
    end_idx = idx[b] + 1
    starts, ends = t[idx[a]].tolist(), t[np.minimum(end_idx, n - 1)].tolist()
    closed = (end_idx < n).tolist()
    if mk.open:  # carried: the first run continues it
        starts[0] = mk.start
        durs[0] += mk.dur
        peaks[0] = max(peaks[0], mk.peak)
    for s, e, d, pk, c in zip(starts, ends, durs, peaks, closed, strict=True):
        mk.open, mk.start, mk.dur, mk.peak = True, int(s), int(d), float(pk)
        out.extend(eng.mkt_excursions(int(e) if c else None))
    mk.open = not closed[-1]

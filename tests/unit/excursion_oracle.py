"""A slow, literal reading of docs/RULES.md used as the test oracle for the excursion engine.

Written independently of coldtrace.core.excursions (per limit, per reading, batch only, no shared state machine),
so that "vectorised equals reference" compares two implementations, not one with itself. It shares only the
documented numeric decisions: degree-minutes as integers of 1e-6 °C·min and numpy's exp for MKT terms.
"""

from __future__ import annotations

import numpy as np

from coldtrace.core.excursions import DM_SCALE, DM_UNITS, MKT_EPSILON_C, MKT_MIN_COVERED_MS
from coldtrace.core.mkt import ea_over_r, mkt_from_ratio, ratio_for
from coldtrace.core.model import Excursion, Limit, Profile


def covers(ts: list[int], max_gap: int, end_ts: int | None) -> list[int]:
    cov = [min(ts[i + 1] - ts[i], max_gap) for i in range(len(ts) - 1)]
    if ts:
        last = ts[-1]
        cov.append(min(end_ts - last, max_gap) if end_ts is not None and end_ts > last else 0)
    return cov


def oracle(series_id: str, profile: Profile, ts: list[int], temps: list[float],
           end_ts: int | None = None) -> list[Excursion]:
    ts = [int(t) for t in ts]
    temps = [float(v) for v in temps]
    cov = covers(ts, profile.max_gap_ms, end_ts)
    out: list[Excursion] = []
    for lim in profile.limits:
        out.extend(_limit_oracle(series_id, lim, ts, temps, cov, end_ts))
    if profile.mkt_max_c is not None:
        out.extend(_mkt_oracle(series_id, profile, ts, temps, cov, end_ts))
    return sorted(out, key=lambda e: (e.start_ts, e.limit_id))


def _limit_oracle(series_id: str, lim: Limit, ts: list[int], temps: list[float], cov: list[int],
                  end_ts: int | None) -> list[Excursion]:
    out: list[Excursion] = []
    s = 1.0 if lim.direction == "above" else -1.0
    T = s * lim.threshold_c
    E = T - lim.hysteresis_c
    cum = 0  # covered time beyond T of the readings before the current one
    ep: dict | None = None

    def alarm_due(covered: int) -> str | None:
        nonlocal cum
        if covered >= lim.delay_ms:
            return "consecutive"
        if lim.cumulative_ms is not None and cum >= lim.cumulative_ms:
            return "cumulative"
        return None

    def close(e: dict, end: int | None) -> None:
        out.append(Excursion(series_id, lim.id, lim.direction, lim.threshold_c, lim.severity, e["start"],
                             end, e["covered"], s * e["peak"], e["dm"] / DM_UNITS, e["alarm_ts"],
                             e["alarm_kind"]))

    for i, t in enumerate(ts):
        x = s * temps[i]
        if ep is None and x > T:
            ep = {"start": t, "covered": 0, "peak": x, "dm": 0, "alarm_ts": None, "alarm_kind": None}
            kind = alarm_due(0)
            if kind:
                ep["alarm_ts"], ep["alarm_kind"] = t, kind
        elif ep is not None:
            if ep["alarm_ts"] is None:
                kind = alarm_due(ep["covered"])
                if kind:
                    ep["alarm_ts"], ep["alarm_kind"] = t, kind
            if x <= E:
                close(ep, t)
                ep = None
            else:
                ep["peak"] = max(ep["peak"], x)
        if ep is not None:
            ep["covered"] += cov[i]
            if x > T:
                ep["dm"] += int(round(cov[i] * (x - T) * DM_SCALE))
        if x > T:
            cum += cov[i]
    if ep is not None:
        if end_ts is not None and ep["alarm_ts"] is None:
            kind = alarm_due(ep["covered"])
            if kind:
                ep["alarm_ts"], ep["alarm_kind"] = end_ts, kind
        close(ep, None)
    return out


def _mkt_oracle(series_id: str, profile: Profile, ts: list[int], temps: list[float], cov: list[int],
                end_ts: int | None) -> list[Excursion]:
    assert profile.mkt_max_c is not None
    ea_r = ea_over_r(profile.activation_energy_kj)
    limit_ratio = ratio_for(profile.mkt_max_c + MKT_EPSILON_C, ea_r)
    out = []
    D, W = 0.0, 0  # Σ covered·(term - term of mkt_max_c): the running MKT exceeds mkt_max_c iff D > 0
    ep: dict | None = None

    def exc(e: dict, end: int | None) -> Excursion:
        return Excursion(series_id, "mkt", "above", profile.mkt_max_c, "alarm", e["start"], end, e["covered"],
                         round(mkt_from_ratio(e["peak"], ea_r), 6), 0.0, e["start"], "mkt")

    for i, t in enumerate(ts):
        above = W >= MKT_MIN_COVERED_MS and D > 0.0
        if ep is not None and not above:
            out.append(exc(ep, t))
            ep = None
        elif above:
            if ep is None:
                ep = {"start": t, "covered": 0, "peak": D / W + limit_ratio}
            else:
                ep["peak"] = max(ep["peak"], D / W + limit_ratio)
        term = float(np.exp(np.array([-ea_r / (temps[i] + 273.15)]))[0])
        D = D + cov[i] * (term - limit_ratio)
        W += cov[i]
        if ep is not None:
            ep["covered"] += cov[i]
    if end_ts is not None and W > 0 and (ep is not None or D > 0.0):
        # the window's MKT is final at its end: the episode closes there; one judged only at the end is the
        # whole window's (first reading to end, all covered time), alarmed at the end
        if ep is None:
            e = {"start": ts[0], "covered": W, "peak": D / W + limit_ratio}
            out.append(Excursion(series_id, "mkt", "above", profile.mkt_max_c, "alarm", ts[0], end_ts, W,
                                 round(mkt_from_ratio(e["peak"], ea_r), 6), 0.0, end_ts, "mkt"))
        else:
            if D > 0.0:
                ep["peak"] = max(ep["peak"], D / W + limit_ratio)
            out.append(exc(ep, end_ts))
        return out
    if ep is not None:
        out.append(exc(ep, None))
    return out

"""Excursion engine: pure, deterministic, streaming per series (see docs/RULES.md).

A series is a sorted sequence of (timestamp ms, temp °C) with unique timestamps. Each reading covers the time
until the next reading, at most ``profile.max_gap_ms``; the last reading covers nothing until a later reading
(or the series end, when one is given) arrives.

``evaluate`` is the batch form; ``SeriesEngine`` the streaming form. Both run the same per-limit state
machine, so they give identical results for the same readings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .model import MINUTE, Alert, Excursion, Limit, Profile, stable_id


@dataclass(slots=True)
class _Episode:
    start_ts: int
    duration_ms: int
    peak_c: float
    degree_minutes: float
    alarm_ts: int | None
    alarm_kind: str | None
    end_ts: int | None = None


class _LimitState:
    """Hysteresis state machine of one limit on one series."""

    __slots__ = ("limit", "sign", "threshold", "exit_level", "cum_above", "episode", "closed")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        # mirror "below" into "above" by negating values
        self.sign = 1.0 if limit.direction == "above" else -1.0
        self.threshold = self.sign * limit.threshold_c
        self.exit_level = self.threshold - limit.hysteresis_c
        self.cum_above = 0  # covered ms beyond the threshold over the whole series so far
        self.episode: _Episode | None = None
        self.closed: list[_Episode] = []

    def _alarm_due(self, covered: int) -> str | None:
        lim = self.limit
        if covered >= lim.delay_ms:
            return "consecutive"
        if lim.cumulative_ms is not None and self.cum_above >= lim.cumulative_ms:
            return "cumulative"
        return None

    def step(self, ts: int, value: float, cov: int, touched: list[_Episode]) -> None:
        """Reading (ts, value) arrives; ``cov`` is the time it covers (known once the next reading exists)."""
        v = self.sign * value
        ep = self.episode
        if ep is None:
            if v > self.threshold:
                ep = self.episode = _Episode(ts, 0, v, 0.0, None, None)
                kind = self._alarm_due(0)
                if kind:
                    ep.alarm_ts, ep.alarm_kind = ts, kind
            else:
                return
        else:
            if ep.alarm_ts is None:
                kind = self._alarm_due(ep.duration_ms)
                if kind:
                    ep.alarm_ts, ep.alarm_kind = ts, kind
            if v <= self.exit_level:
                ep.end_ts = ts
                self.closed.append(ep)
                self.episode = None
                touched.append(ep)
                return
            if v > ep.peak_c:
                ep.peak_c = v
        touched.append(ep)

    def add_coverage(self, value: float, cov: int) -> None:
        """The reading last stepped with ``value`` now covers ``cov`` ms (its successor arrived)."""
        v = self.sign * value
        if v > self.threshold:
            self.cum_above += cov
        ep = self.episode
        if ep is not None:
            ep.duration_ms += cov
            if v > self.threshold:
                ep.degree_minutes += cov * (v - self.threshold) / MINUTE

    def finish(self, end_ts: int) -> _Episode | None:
        """Series end reached (e.g. shipment end): an open episode may reach its alarm at the end."""
        ep = self.episode
        if ep is not None and ep.alarm_ts is None:
            kind = self._alarm_due(ep.duration_ms)
            if kind:
                ep.alarm_ts, ep.alarm_kind = end_ts, kind
        return ep

    def to_excursion(self, series_id: str, ep: _Episode) -> Excursion:
        lim = self.limit
        return Excursion(
            series_id=series_id,
            limit_id=lim.id,
            direction=lim.direction,
            threshold_c=lim.threshold_c,
            severity=lim.severity,
            start_ts=ep.start_ts,
            end_ts=ep.end_ts,
            duration_ms=int(ep.duration_ms),
            peak_c=float(self.sign * ep.peak_c),
            degree_minutes=round(float(ep.degree_minutes), 6),
            alarm_ts=ep.alarm_ts,
            alarm_kind=ep.alarm_kind,  # type: ignore[arg-type]
        )


class SeriesEngine:
    """Streaming evaluation of one series: feed readings in timestamp order, get the excursions they touched."""

    def __init__(self, series_id: str, profile: Profile) -> None:
        self.series_id = series_id
        self.profile = profile
        self.limits = [_LimitState(lim) for lim in profile.limits]
        self.last_ts: int | None = None
        self.last_value: float | None = None

    def feed(self, ts: Sequence[int] | np.ndarray, temps: Sequence[float] | np.ndarray) -> list[Excursion]:
        """Readings strictly after the last one fed, sorted. Returns the current state of touched excursions."""
        max_gap = self.profile.max_gap_ms
        touched: list[tuple[_LimitState, _Episode]] = []
        for t, v in zip(ts, temps, strict=True):
            t = int(t)
            v = float(v)
            if self.last_ts is not None:
                if t <= self.last_ts:
                    raise ValueError("SeriesEngine.feed needs strictly increasing timestamps")
                cov = min(t - self.last_ts, max_gap)
                for st in self.limits:
                    st.add_coverage(self.last_value, cov)  # type: ignore[arg-type]
            for st in self.limits:
                eps: list[_Episode] = []
                st.step(t, v, 0, eps)
                touched.extend((st, e) for e in eps)
            self.last_ts, self.last_value = t, v
        seen: dict[tuple[str, int], Excursion] = {}
        for st, ep in touched:
            seen[(st.limit.id, ep.start_ts)] = st.to_excursion(self.series_id, ep)
        return list(seen.values())

    def finish(self, end_ts: int) -> list[Excursion]:
        """Close the series at ``end_ts`` (exclusive end of a shipment window)."""
        out = []
        if self.last_ts is not None and end_ts > self.last_ts:
            cov = min(end_ts - self.last_ts, self.profile.max_gap_ms)
            for st in self.limits:
                st.add_coverage(self.last_value, cov)  # type: ignore[arg-type]
        for st in self.limits:
            ep = st.finish(end_ts)
            if ep is not None:
                out.append(st.to_excursion(self.series_id, ep))
        return out

    def excursions(self) -> list[Excursion]:
        out = []
        for st in self.limits:
            for ep in st.closed:
                out.append(st.to_excursion(self.series_id, ep))
            if st.episode is not None:
                out.append(st.to_excursion(self.series_id, st.episode))
        return sort_excursions(out)


def sort_excursions(excs: Iterable[Excursion]) -> list[Excursion]:
    return sorted(excs, key=lambda e: (e.start_ts, e.limit_id))


def evaluate(series_id: str, profile: Profile, ts: Sequence[int] | np.ndarray,
             temps: Sequence[float] | np.ndarray, end_ts: int | None = None) -> list[Excursion]:
    """Batch evaluation of a whole series. ``ts`` must be sorted and unique."""
    eng = SeriesEngine(series_id, profile)
    eng.feed(ts, temps)
    if end_ts is not None:
        eng.finish(end_ts)
    return eng.excursions()


def normalise_series(ts: Sequence[int] | np.ndarray, temps: Sequence[float] | np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sort by timestamp and keep one reading per timestamp (the first given), as a store would."""
    t = np.asarray(ts, dtype=np.int64)
    v = np.asarray(temps, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if len(t):
        keep = np.ones(len(t), dtype=bool)
        keep[1:] = t[1:] != t[:-1]
        t, v = t[keep], v[keep]
    return t, v


def data_gaps(ts: Sequence[int] | np.ndarray, max_gap_ms: int) -> list[tuple[int, int]]:
    """Intervals not covered by any reading: (from, to) where a reading's hold ran out before the next."""
    t = np.asarray(ts, dtype=np.int64)
    if len(t) < 2:
        return []
    d = np.diff(t)
    idx = np.nonzero(d > max_gap_ms)[0]
    return [(int(t[i] + max_gap_ms), int(t[i + 1])) for i in idx]


def alert_id(series_id: str, limit_id: str, start_ts: int, type_: str) -> str:
    return stable_id("alert", series_id, limit_id, start_ts, type_)


def alerts_for(exc: Excursion, device_id: str, shipment_id: str | None = None) -> list[Alert]:
    """The alerts an excursion in its current state implies; ids are stable, so re-deriving never duplicates."""
    base = {
        "excursion_id": exc.id,
        "limit_id": exc.limit_id,
        "direction": exc.direction,
        "threshold_c": exc.threshold_c,
        "start_ts": exc.start_ts,
    }
    mk = lambda type_, sev, ts, extra: Alert(  # noqa: E731
        id=alert_id(exc.series_id, exc.limit_id, exc.start_ts, type_),
        type=type_, severity=sev, device_id=device_id, ts=ts,
        data={**base, **extra}, shipment_id=shipment_id, excursion_id=exc.id,
    )
    out = [mk("excursion.opened", "info", exc.start_ts, {"peak_c": exc.peak_c})]
    if exc.alarm_ts is not None:
        out.append(mk("excursion.alarm", exc.severity, exc.alarm_ts,
                      {"alarm_kind": exc.alarm_kind, "peak_c": exc.peak_c, "duration_ms": exc.duration_ms}))
    if exc.end_ts is not None:
        out.append(mk("excursion.closed", "info", exc.end_ts,
                      {"end_ts": exc.end_ts, "duration_ms": exc.duration_ms, "peak_c": exc.peak_c,
                       "degree_minutes": exc.degree_minutes, "alarmed": exc.alarm_ts is not None}))
    return out


def revised_alert(old: Excursion, new: Excursion, device_id: str, shipment_id: str | None,
                  now_ms: int) -> Alert:
    """``excursion.revised``: late data changed an excursion that had already alerted."""
    digest = stable_id("rev", *new.to_dict().values())
    return Alert(
        id=stable_id("alert", new.series_id, new.limit_id, new.start_ts, "excursion.revised", digest),
        type="excursion.revised", severity=new.severity if new.alarm_ts else "info", device_id=device_id,
        ts=now_ms, data={"excursion_id": new.id, "before": old.to_dict(), "after": new.to_dict()},
        shipment_id=shipment_id, excursion_id=new.id,
    )


def with_series(exc: Excursion, series_id: str) -> Excursion:
    return replace(exc, series_id=series_id)

"""Excursion engine: pure, deterministic, streaming per series (docs/RULES.md, "Excursions").

A series is a sorted sequence of (timestamp ms, temp °C) with unique timestamps. Each reading covers the time
until the next reading, at most ``profile.max_gap_ms``; the last reading covers nothing until a later reading
(or the series end, when one is given) arrives.

One engine, two ways of stepping it: a per-reading loop for small feeds and a vectorised numpy form for
larger ones (``excursion_kernel``). ``evaluate`` is one big feed, ``SeriesEngine.feed`` any number of small
ones. Both give bit-identical results because every quantity is either an integer (covered ms, degree-minutes
in micro °C·min), a maximum, a comparison, or a float sum accumulated in the same sequential order (MKT).

Decisions (also in docs/RULES.md):
- The end reading of an episode counts for its alarm: the alarm is checked at every reading of the episode
  and at the reading that ends it, with the covered duration so far.
- Once a limit's cumulative budget is exhausted, every later episode of that limit alarms at its first
  reading. When both conditions hold at the same reading the alarm kind is "consecutive".
- Limits sharing (direction, threshold, hysteresis) share their episodes; only their alarms differ.
- Degree-minutes accumulate per reading as integers of 1e-6 °C·min (each reading's share rounded), so any
  batching sums them exactly.
- Limit "mkt" (when ``profile.mkt_max_c`` is set): the running MKT of the series (covered time up to a
  reading) is judged at each reading once 24 h are covered, and at ``finish(end_ts)`` whatever the coverage.
  An episode starts at the first reading where it exceeds ``mkt_max_c`` (by more than 1e-9 °C: rounding noise
  of a constant series is not an excursion), alarms there (kind "mkt"), and ends at the first reading where it
  no longer does. Its peak is the highest running MKT; its degree-minutes are 0 (not defined for an aggregate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter

import numpy as np

from coldtrace.core import excursion_kernel as _k
from coldtrace.core.excursion_kernel import DM_SCALE, DM_UNITS, MKT_MIN_COVERED_MS
from coldtrace.core.mkt import arrhenius_term_list, arrhenius_terms, ea_over_r, mkt_from_ratio, ratio_for
from coldtrace.core.model import Alert, Excursion, Limit, Profile, stable_id

MKT_LIMIT_ID = "mkt"
MKT_EPSILON_C = 1e-9
SCALAR_FEED_MAX = 24  # feeds up to this many readings step in Python; larger ones go through numpy

__all__ = [
    "MKT_LIMIT_ID", "SeriesEngine", "evaluate", "normalise_series", "data_gaps", "alerts_for",
    "revised_alert", "sort_excursions", "alert_id", "with_series",
]


def dm_units(cov_ms: int, beyond_c: float) -> int:
    """One reading's degree-minutes in micro °C·min (same operations as the numpy kernel)."""
    return int(round(cov_ms * beyond_c * DM_SCALE))


class _Machine:
    """Hysteresis episodes of one (direction, threshold, hysteresis), mirrored so that beyond means '>'."""

    __slots__ = ("limits", "sign", "T", "E", "cum", "open", "start", "dur", "peak", "dm", "alarm_ts",
                 "alarm_kind")

    def __init__(self, limits: tuple[Limit, ...]) -> None:
        lim = limits[0]
        if lim.hysteresis_c < 0:
            raise ValueError(f"limit {lim.id}: hysteresis must be >= 0")
        self.limits = limits
        self.sign = 1.0 if lim.direction == "above" else -1.0
        self.T = self.sign * lim.threshold_c
        self.E = self.T - lim.hysteresis_c
        self.cum = 0  # covered ms beyond T over the whole series, excluding the last reading's pending hold
        self.open = False
        self.start = 0
        self.dur = 0
        self.peak = 0.0
        self.dm = 0
        self.alarm_ts: list[int | None] = [None] * len(limits)
        self.alarm_kind: list[str | None] = [None] * len(limits)

    def check_alarms(self, ts: int, covered: int) -> None:
        """Alarm check of the open episode at a reading (or the series end) with ``covered`` ms so far."""
        for i, lim in enumerate(self.limits):
            if self.alarm_ts[i] is not None:
                continue
            if covered >= lim.delay_ms:
                self.alarm_ts[i], self.alarm_kind[i] = ts, "consecutive"
            elif lim.cumulative_ms is not None and self.cum >= lim.cumulative_ms:
                self.alarm_ts[i], self.alarm_kind[i] = ts, "cumulative"

    def open_at(self, ts: int, x: float) -> None:
        self.open, self.start, self.dur, self.peak, self.dm = True, ts, 0, x, 0
        self.alarm_ts = [None] * len(self.limits)
        self.alarm_kind = [None] * len(self.limits)

    def state(self) -> list:
        return [self.cum, self.open, self.start, self.dur, self.peak, self.dm, list(self.alarm_ts),
                list(self.alarm_kind)]

    def load(self, s: Sequence) -> None:
        self.cum, self.open, self.start, self.dur, self.peak, self.dm = (
            int(s[0]), bool(s[1]), int(s[2]), int(s[3]), float(s[4]), int(s[5]))
        self.alarm_ts, self.alarm_kind = list(s[6]), list(s[7])


class _MktState:
    __slots__ = ("open", "start", "dur", "peak")

    def __init__(self) -> None:
        self.open, self.start, self.dur, self.peak = False, 0, 0, 0.0  # peak: highest ratio (see mkt.py)


class SeriesEngine:
    """Streaming evaluation of one series: feed readings in timestamp order, get the excursions they touched.

    The state is a few numbers per limit (see ``snapshot``), so an engine can be checkpointed at any reading and
    late data re-evaluated from the last checkpoint before it (``reevaluate``) instead of the whole history.
    """

    __slots__ = ("series_id", "profile", "machines", "mkt", "ea_r", "mkt_ratio", "first_ts", "last_ts",
                 "last_value", "last_q", "D", "W", "history", "finished")

    def __init__(self, series_id: str, profile: Profile, *, keep_history: bool = True) -> None:
        self.series_id = series_id
        self.profile = profile
        groups: dict[tuple, list[Limit]] = {}
        for lim in profile.limits:
            if lim.id == MKT_LIMIT_ID:
                raise ValueError(f"limit id {MKT_LIMIT_ID!r} is reserved for the MKT limit")
            groups.setdefault((lim.direction, lim.threshold_c, lim.hysteresis_c), []).append(lim)
        self.machines = [_Machine(tuple(g)) for g in groups.values()]
        self.ea_r = ea_over_r(profile.activation_energy_kj)
        self.mkt = _MktState() if profile.mkt_max_c is not None else None
        self.mkt_ratio = (ratio_for(profile.mkt_max_c + MKT_EPSILON_C, self.ea_r)
                          if profile.mkt_max_c is not None else 0.0)
        self.first_ts: int | None = None  # the series' first reading (a window MKT judged at finish starts here)
        self.last_ts: int | None = None
        self.last_value = 0.0
        # MKT limit, in the exp domain: q = exp(-ΔH/RT) - (the term of mkt_max_c); the running MKT exceeds
        # mkt_max_c exactly when D = Σ covered ms · q (a sequential float sum) is > 0.
        self.last_q = 0.0
        self.D = 0.0
        self.W = 0  # Σ covered ms
        self.history: list[Excursion] | None = [] if keep_history else None
        self.finished = False

    # -- feeding ---------------------------------------------------------------------------------------
    def feed(self, ts: Sequence[int] | np.ndarray, temps: Sequence[float] | np.ndarray) -> list[Excursion]:
        """Readings strictly after the last one fed, sorted. Returns the current state of touched excursions."""
        if self.finished:
            raise ValueError("SeriesEngine.feed after finish()")
        n = len(ts)
        if n != len(temps):
            raise ValueError("ts and temps must be of equal length")
        if n == 0:
            return []
        if self.first_ts is None:
            self.first_ts = int(ts[0])
        if n == 1:  # the most common feed of all (one live reading): no lists to build or check
            x, y = int(ts[0]), float(temps[0])
            if (self.last_ts is not None and x <= self.last_ts) or not math.isfinite(y):
                raise ValueError("SeriesEngine.feed needs strictly increasing timestamps and finite "
                                 "temperatures")
            q = arrhenius_term_list((y,), self.ea_r)[0] - self.mkt_ratio if self.mkt is not None else 0.0
            if self.last_ts is not None:
                self._settle(x - self.last_ts)
            out = self._feed_scalar((x,), (y,), (q,))
            self.last_ts, self.last_value, self.last_q = x, y, q
            if not out:
                return out
        elif n <= SCALAR_FEED_MAX:  # small feeds: Python lists are cheaper than numpy calls
            tl = [int(x) for x in ts]
            vl = [float(x) for x in temps]
            prev = self.last_ts
            for x, y in zip(tl, vl, strict=True):
                if (prev is not None and x <= prev) or not math.isfinite(y):
                    raise ValueError("SeriesEngine.feed needs strictly increasing timestamps and finite "
                                     "temperatures")
                prev = x
            if self.mkt is not None:
                r = self.mkt_ratio
                ql = [x - r for x in arrhenius_term_list(vl, self.ea_r)]
            else:
                ql = [0.0] * n
            if self.last_ts is not None:
                self._settle(tl[0] - self.last_ts)
            out = self._feed_scalar(tl, vl, ql)
            self.last_ts, self.last_value, self.last_q = tl[-1], vl[-1], ql[-1]
            if not out:
                return out
        else:
            t = np.ascontiguousarray(ts, dtype=np.int64)
            v = np.ascontiguousarray(temps, dtype=np.float64)
            if t.ndim != 1 or v.shape != t.shape:
                raise ValueError("ts and temps must be 1-D and of equal length")
            if self.last_ts is not None and int(t[0]) <= self.last_ts:
                raise ValueError("SeriesEngine.feed needs strictly increasing timestamps")
            cov = _k.covers(t, self.profile.max_gap_ms)
            if not bool(np.isfinite(v).all()):
                raise ValueError("temperatures must be finite")
            q = self._mkt_q(v) if self.mkt is not None else np.zeros(n)
            if self.last_ts is not None:
                self._settle(int(t[0]) - self.last_ts)
            out = _k.feed_vector(self, t, v, q, cov)
            self.last_ts, self.last_value, self.last_q = int(t[-1]), float(v[-1]), float(q[-1])
        if self.history is not None:
            self.history.extend(x for x in out if x.end_ts is not None)
        return sort_excursions(out)

    def _mkt_q(self, v: Sequence[float] | np.ndarray) -> np.ndarray:
        q = arrhenius_terms(v, self.ea_r)
        q -= self.mkt_ratio
        return q

    def _settle(self, gap_ms: int) -> None:
        """The last reading's successor (or the series end) is ``gap_ms`` later: add the time it covers."""
        cov = min(gap_ms, self.profile.max_gap_ms)
        v = self.last_value
        for m in self.machines:
            x = m.sign * v
            if m.open:
                m.dur += cov
            if x > m.T:
                m.cum += cov
                m.dm += dm_units(cov, x - m.T)
        if self.mkt is not None:
            self.D = self.D + cov * self.last_q
            self.W += cov
            if self.mkt.open:
                self.mkt.dur += cov

    def _feed_scalar(self, ts: list[int], vs: list[float], qs: list[float]) -> list[Excursion]:
        """Step reading by reading; closed episodes are reported as they close, open ones at the end."""
        out: list[Excursion] = []
        mk = self.mkt
        machines = self.machines
        for i, (t, v) in enumerate(zip(ts, vs, strict=True)):
            if i:
                self.last_value, self.last_q = vs[i - 1], qs[i - 1]
                self._settle(t - ts[i - 1])
            for m in machines:
                x = m.sign * v
                if not m.open:
                    if x > m.T:
                        m.open_at(t, x)
                        m.check_alarms(t, 0)
                    continue
                m.check_alarms(t, m.dur)
                if x <= m.E:
                    out.extend(self.machine_excursions(m, t))
                    m.open = False
                elif x > m.peak:
                    m.peak = x
            if mk is not None:
                above = self.W >= MKT_MIN_COVERED_MS and self.D > 0.0
                if mk.open and not above:
                    out.extend(self.mkt_excursions(t))
                    mk.open = False
                elif above:
                    r = self.D / self.W + self.mkt_ratio
                    if not mk.open:
                        mk.open, mk.start, mk.dur, mk.peak = True, t, 0, r
                    elif r > mk.peak:
                        mk.peak = r
        if mk is not None and mk.open or any(m.open for m in machines):
            out.extend(self.open_excursions())
        return out

    def finish(self, end_ts: int) -> list[Excursion]:
        """Close the series at ``end_ts`` (exclusive end of a shipment window): the last reading's hold counts
        until then, open episodes may reach their alarm there, and the final MKT is judged. Episodes still
        open stay open (end None). The engine accepts no further readings."""
        if self.finished:
            raise ValueError("SeriesEngine.finish called twice")
        self.finished = True
        if self.last_ts is None:
            return []
        if end_ts > self.last_ts:
            self._settle(end_ts - self.last_ts)
        for m in self.machines:
            if m.open:
                m.check_alarms(end_ts, m.dur)
        closed: list[Excursion] = []
        mk, mkt_max = self.mkt, self.profile.mkt_max_c
        if mk is not None and mkt_max is not None and self.W > 0 and (mk.open or self.D > 0.0):
            # The window's MKT is final at its end: an MKT episode is closed there (never "ongoing"). One
            # judged only now (less than 24 h covered) is the whole window's: from the first reading to the
            # end, its covered time, alarmed at the end where the judgement was made.
            r = self.D / self.W + self.mkt_ratio
            if mk.open:
                peak = max(mk.peak, r) if self.D > 0.0 else mk.peak
                start, dur, alarm = mk.start, mk.dur, mk.start
            else:
                peak = r
                start = self.first_ts if self.first_ts is not None else end_ts
                dur, alarm = self.W, end_ts
            mk.open = False
            closed.append(Excursion(self.series_id, MKT_LIMIT_ID, "above", mkt_max, "alarm", start, end_ts, dur,
                                    round(mkt_from_ratio(peak, self.ea_r), 6), 0.0, alarm, "mkt"))
            if self.history is not None:
                self.history.extend(closed)
        return sort_excursions([*closed, *self.open_excursions()])

    # -- results ---------------------------------------------------------------------------------------
    def machine_excursions(self, m: _Machine, end: int | None) -> list[Excursion]:
        """The excursions (one per limit) of machine ``m``'s current episode, ended at ``end`` if given."""
        return [Excursion(self.series_id, lim.id, lim.direction, lim.threshold_c, lim.severity, m.start, end,
                          m.dur, m.sign * m.peak, m.dm / DM_UNITS, m.alarm_ts[i],
                          m.alarm_kind[i])  # type: ignore[arg-type]
                for i, lim in enumerate(m.limits)]

    def mkt_excursions(self, end: int | None) -> list[Excursion]:
        mk, mkt_max = self.mkt, self.profile.mkt_max_c
        assert mk is not None and mkt_max is not None
        return [Excursion(self.series_id, MKT_LIMIT_ID, "above", mkt_max, "alarm", mk.start, end, mk.dur,
                          round(mkt_from_ratio(mk.peak, self.ea_r), 6), 0.0, mk.start, "mkt")]

    def open_excursions(self) -> list[Excursion]:
        out = [x for m in self.machines if m.open for x in self.machine_excursions(m, None)]
        if self.mkt is not None and self.mkt.open:
            out.extend(self.mkt_excursions(None))
        return out

    def excursions(self) -> list[Excursion]:
        """Closed excursions kept so far (when ``keep_history``) and the open ones."""
        return sort_excursions([*(self.history or ()), *self.open_excursions()])

    @property
    def idle(self) -> bool:
        """No episode open: a checkpoint here is just the cumulative sums."""
        return not any(m.open for m in self.machines) and not (self.mkt is not None and self.mkt.open)

    # -- checkpoints -----------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """The whole state as JSON-able data (after the last reading fed; its hold still pending)."""
        mk = self.mkt
        return {
            "v": 1, "first_ts": self.first_ts, "last_ts": self.last_ts, "last_value": self.last_value,
            "last_q": self.last_q,
            "D": self.D, "W": self.W, "finished": self.finished,
            "machines": [m.state() for m in self.machines],
            "mkt": None if mk is None else [mk.open, mk.start, mk.dur, mk.peak],
        }

    @classmethod
    def restore(cls, series_id: str, profile: Profile, snap: dict, *, keep_history: bool = True
                ) -> SeriesEngine:
        """An engine in the state of ``snap``, taken with the same profile."""
        eng = cls(series_id, profile, keep_history=keep_history)
        if snap.get("v") != 1 or len(snap["machines"]) != len(eng.machines):
            raise ValueError("snapshot does not match this profile")
        eng.last_ts = snap["last_ts"]
        eng.first_ts = snap.get("first_ts")
        eng.last_value, eng.last_q, eng.D, eng.W = (float(snap["last_value"]), float(snap["last_q"]),
                                                     float(snap["D"]), int(snap["W"]))
        eng.finished = bool(snap["finished"])
        for m, s in zip(eng.machines, snap["machines"], strict=True):
            m.load(s)
        if eng.mkt is not None and snap["mkt"] is not None:
            mk = eng.mkt
            mk.open, mk.start, mk.dur, mk.peak = (bool(snap["mkt"][0]), int(snap["mkt"][1]),
                                                  int(snap["mkt"][2]), float(snap["mkt"][3]))
        return eng


_SORT_KEY = attrgetter("start_ts", "limit_id")


def sort_excursions(excs: Iterable[Excursion]) -> list[Excursion]:
    return sorted(excs, key=_SORT_KEY)


def evaluate(series_id: str, profile: Profile, ts: Sequence[int] | np.ndarray,
             temps: Sequence[float] | np.ndarray, end_ts: int | None = None) -> list[Excursion]:
    """Batch evaluation of a whole series. ``ts`` must be sorted and unique (see ``normalise_series``)."""
    eng = SeriesEngine(series_id, profile)
    eng.feed(ts, temps)
    if end_ts is not None:
        eng.finish(end_ts)
    return eng.excursions()


def reevaluate(series_id: str, profile: Profile, ts: Sequence[int] | np.ndarray,
               temps: Sequence[float] | np.ndarray, checkpoint: dict | None = None,
               end_ts: int | None = None, *, keep_history: bool = True) -> tuple[list[Excursion], SeriesEngine]:
    """Re-evaluate a series from a checkpoint: ``ts``/``temps`` are all stored readings after the
    checkpoint's last reading (the whole series when ``checkpoint`` is None).

    Returns the excursions of that window (episodes open at the checkpoint included: compare them with the
    stored excursions selected by ``in_window``) and the engine, ready for further readings."""
    eng = (SeriesEngine(series_id, profile, keep_history=keep_history) if checkpoint is None
           else SeriesEngine.restore(series_id, profile, checkpoint, keep_history=keep_history))
    carried = eng.open_excursions()
    touched = eng.feed(ts, temps)
    if end_ts is not None:
        touched += eng.finish(end_ts)
    by_id = {e.id: e for e in carried}
    by_id.update((e.id, e) for e in touched)
    return sort_excursions(by_id.values()), eng


def in_window(exc: Excursion, since_ts: int | None) -> bool:
    """Whether a stored excursion is recomputed by a re-evaluation from a checkpoint taken at ``since_ts``:
    it started after it, or was still open there."""
    return since_ts is None or exc.start_ts > since_ts or exc.end_ts is None or exc.end_ts > since_ts


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
    """The alerts an excursion in its current state implies; ids are stable, so re-deriving never duplicates.
    (The live pipeline announces excursions through ``alert_stream`` instead: revision-numbered alerts that
    replay to the stored state; this content-derived form is the pure model's, used by ``diff_excursions``.)"""
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


def revised_alert(old: Excursion, new: Excursion | None, device_id: str, shipment_id: str | None,
                  now_ms: int) -> Alert:
    """``excursion.revised``: late data changed (or, with ``new`` None, superseded) an excursion that had
    already alerted. The id derives from the revision's content: the same revision is never raised twice."""
    digest = stable_id("rev", *(new.to_dict().values() if new is not None else ("superseded",)))
    subject = new if new is not None else old
    return Alert(
        id=stable_id("alert", old.series_id, old.limit_id, old.start_ts, "excursion.revised", digest),
        type="excursion.revised",
        severity=subject.severity if subject.alarm_ts is not None else "info",
        device_id=device_id, ts=now_ms,
        data={"excursion_id": old.id, "before": old.to_dict(),
              "after": None if new is None else new.to_dict(), "superseded": new is None},
        shipment_id=shipment_id, excursion_id=old.id,
    )


def had_alerted(exc: Excursion) -> bool:
    """Whether ``excursion.alarm`` was raised for ``exc``. Before its alarm an excursion only said
    ``excursion.opened``; its later alerts carry the revised numbers anyway."""
    return exc.alarm_ts is not None


def material_change(old: Excursion, new: Excursion) -> bool:
    """A change QA must hear about: the alarm moved or vanished, or a closed excursion changed.
    (An open alarmed excursion growing with new readings is not a revision.)"""
    if old.alarm_ts != new.alarm_ts or old.alarm_kind != new.alarm_kind:
        return True
    return old.end_ts is not None and old != new


@dataclass(frozen=True, slots=True)
class ExcursionDiff:
    upserts: list[Excursion]  # new or changed excursions, to store
    superseded: list[str]  # ids of stored excursions that no longer exist (mark superseded, never delete)
    alerts: list[Alert]  # alerts_for(upserts) (stable ids: insert-or-ignore) + excursion.revised

    def __bool__(self) -> bool:
        return bool(self.upserts or self.superseded or self.alerts)


def diff_excursions(old: Iterable[Excursion], new: Iterable[Excursion], *, device_id: str,
                    shipment_id: str | None = None, now_ms: int) -> ExcursionDiff:
    """Compare the stored excursions of a re-evaluated window with the recomputed ones."""
    old_by = {e.id: e for e in old}
    new_by = {e.id: e for e in new}
    upserts = [e for i, e in new_by.items() if old_by.get(i) != e]
    superseded = [i for i in old_by if i not in new_by]
    alerts: list[Alert] = []
    for e in upserts:
        alerts.extend(alerts_for(e, device_id, shipment_id))
        before = old_by.get(e.id)
        if before is not None and had_alerted(before) and material_change(before, e):
            alerts.append(revised_alert(before, e, device_id, shipment_id, now_ms))
    for i in superseded:  # every stored excursion raised at least excursion.opened
        alerts.append(revised_alert(old_by[i], None, device_id, shipment_id, now_ms))
    return ExcursionDiff(sort_excursions(upserts), sorted(superseded), alerts)


def with_series(exc: Excursion, series_id: str) -> Excursion:
    return replace(exc, series_id=series_id)

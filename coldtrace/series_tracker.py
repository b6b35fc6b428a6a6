"""Incremental evaluation of one series that always agrees with the batch evaluation of its stored readings.

In-order readings are fed to the engine. Late or out-of-order readings re-evaluate the series from the last
checkpoint taken before the earliest of them (a checkpoint is ``SeriesEngine.snapshot()``: a few numbers per
limit), not from the start of its history; the stored excursions of that window are then diffed against the
recomputed ones (upserts, superseded ids, ``excursion.revised``). Pure: readings come from a ``load`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .excursions import (
    ExcursionDiff,
    SeriesEngine,
    diff_excursions,
    in_window,
    normalise_series,
    reevaluate,
)
from .model import HOUR, Excursion, Profile

Loader = Callable[[int | None], tuple[np.ndarray, np.ndarray]]
"""load(since_ts) -> (ts, temps) of all stored readings with ts > since_ts (all when None), sorted."""


class SeriesTracker:
    __slots__ = ("series_id", "profile", "device_id", "shipment_id", "engine", "stored", "checkpoints",
                 "checkpoint_every_ms", "max_checkpoints", "reevaluations")

    def __init__(self, series_id: str, profile: Profile, *, device_id: str | None = None,
                 shipment_id: str | None = None, checkpoint_every_ms: int = HOUR,
                 max_checkpoints: int = 12) -> None:
        self.series_id = series_id
        self.profile = profile
        self.device_id = device_id or series_id
        self.shipment_id = shipment_id
        self.engine = SeriesEngine(series_id, profile, keep_history=False)
        self.stored: dict[str, Excursion] = {}  # the series' current (not superseded) excursions
        self.checkpoints: list[tuple[int, dict]] = []  # (ts of the last reading fed, snapshot), ascending
        self.checkpoint_every_ms = checkpoint_every_ms
        self.max_checkpoints = max_checkpoints
        self.reevaluations = 0

    def ingest(self, ts: Sequence[int] | np.ndarray, temps: Sequence[float] | np.ndarray, *, load: Loader,
               now_ms: int) -> ExcursionDiff:
        """``ts``/``temps``: readings just stored (any order). Returns what to store and which alerts to raise."""
        t, v = normalise_series(ts, temps)
        if len(t) == 0:
            return ExcursionDiff([], [], [])
        last = self.engine.last_ts
        if last is None or int(t[0]) > last:
            new = self.engine.feed(t, v)
            old = [self.stored[e.id] for e in new if e.id in self.stored]
        else:
            self.reevaluations += 1
            first = int(t[0])
            self.checkpoints = [cp for cp in self.checkpoints if cp[0] < first]
            since, snap = self.checkpoints[-1] if self.checkpoints else (None, None)
            lt, lv = load(since)
            new, self.engine = reevaluate(self.series_id, self.profile, lt, lv, checkpoint=snap,
                                          keep_history=False)
            old = [e for e in self.stored.values() if in_window(e, since)]
        diff = diff_excursions(old, new, device_id=self.device_id, shipment_id=self.shipment_id,
                               now_ms=now_ms)
        for e in diff.upserts:
            self.stored[e.id] = e
        for i in diff.superseded:
            del self.stored[i]
        self._maybe_checkpoint()
        return diff

    def _maybe_checkpoint(self) -> None:
        last = self.engine.last_ts
        if last is None:
            return
        if self.checkpoints and last - self.checkpoints[-1][0] < self.checkpoint_every_ms:
            return
        self.checkpoints.append((last, self.engine.snapshot()))
        if len(self.checkpoints) > self.max_checkpoints:
            del self.checkpoints[0]

    def excursions(self) -> list[Excursion]:
        return sorted(self.stored.values(), key=lambda e: (e.start_ts, e.limit_id))

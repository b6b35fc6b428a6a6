"""Live excursion evaluation of device series, inside the pipeline's transaction.

In-order readings are fed to an in-memory ``SeriesEngine`` per device. Anything else (late or out-of-order
readings, a restart, another process having evaluated the device, a profile change) re-evaluates from the
last stored checkpoint before the earliest new reading and diffs the stored excursions of that window, so
the stored excursions always equal the batch evaluation of the stored readings (docs/RULES.md), at a cost
bounded by the checkpoint interval rather than by the device's history.

The alerts of every excursion stored or superseded here are derived by ``alert_stream`` from the state the
stream last announced (``excursion_alert_state``, updated in the same transaction), so that replaying the
alerts always gives the stored excursions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from coldtrace.core import alert_stream
from coldtrace.core import excursions as exc_engine
from coldtrace.core.model import HOUR, Alert, Excursion, Profile, Reading
from coldtrace.ports import ReadingStore
from coldtrace.store.db import insert_many
from coldtrace.store.excursions import row_to_excursion, upsert_excursion

log = logging.getLogger(__name__)
_TS, _TEMP = itemgetter(1), itemgetter(2)  # Reading.ts, Reading.temp_c

CHECKPOINT_EVERY_MS = HOUR
CHECKPOINTS_KEPT = 48  # about two days of data per device


def profile_hash(profile: Profile) -> str:
    return hashlib.sha256(json.dumps(profile.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class LiveEvaluator:
    def __init__(self, readings: ReadingStore) -> None:
        self.readings = readings
        self._engines: dict[str, exc_engine.SeriesEngine] = {}
        self._last_checkpoint: dict[str, int] = {}
        self._pending_checkpoints: list[tuple[str, int, str, str]] = []
        self.reevaluations = 0

    def forget(self) -> None:
        """Profiles changed, or a transaction rolled back: drop the in-memory state (engines rebuild from the
        stored checkpoints, which are matched by profile hash)."""
        self._engines.clear()
        self._last_checkpoint.clear()
        self._pending_checkpoints.clear()

    def last_ts(self, device_id: str) -> int | None:
        eng = self._engines.get(device_id)
        return None if eng is None else eng.last_ts

    def evaluate(self, c: sqlite3.Connection, dev: str, profile: Profile, readings: Sequence[Reading],
                 evaluated_ts: int | None, now: int) -> list[Alert]:
        """Readings of ``dev`` just stored (any order). Stores excursions; returns the alerts they imply."""
        ts = np.fromiter(map(_TS, readings), np.int64, len(readings))  # C getters: no Python frame per reading
        vals = np.fromiter(map(_TEMP, readings), np.float64, len(readings))
        ts, vals = exc_engine.normalise_series(ts, vals)
        eng = self._engines.get(dev)
        if (eng is not None and eng.profile is profile and eng.last_ts is not None
                and eng.last_ts == evaluated_ts and int(ts[0]) > eng.last_ts):
            touched = eng.feed(ts, vals)
            for e in touched:
                upsert_excursion(c, e, dev, None, now)
            alerts = announce(c, dev, touched, (), now)
        else:
            alerts = self._reevaluate(c, dev, profile, int(ts[0]), now)
        self._maybe_checkpoint(c, dev, profile)
        return alerts

    def _reevaluate(self, c: sqlite3.Connection, dev: str, profile: Profile, first_ts: int, now: int
                    ) -> list[Alert]:
        self.reevaluations += 1
        phash = profile_hash(profile)
        self._pending_checkpoints = [cp for cp in self._pending_checkpoints if cp[0] != dev or cp[1] < first_ts]
        c.execute("DELETE FROM series_checkpoints WHERE series_id = ? AND ts >= ?", (dev, first_ts))
        row = c.execute("SELECT ts, snapshot FROM series_checkpoints WHERE series_id = ? AND ts < ?"
                        " AND profile_hash = ? ORDER BY ts DESC LIMIT 1", (dev, first_ts, phash)).fetchone()
        since, snap = (row[0], json.loads(row[1])) if row else (None, None)
        t, v = self.readings.arrays(dev, None if since is None else since + 1)
        new, eng = exc_engine.reevaluate(dev, profile, t, v, checkpoint=snap, keep_history=False)
        self._engines[dev] = eng
        sql = "SELECT * FROM excursions WHERE series_id = ? AND superseded = 0"
        params: tuple = (dev,)
        if since is not None:
            sql += " AND (start_ts > ? OR end_ts IS NULL OR end_ts > ?)"
            params = (dev, since, since)
        old = [row_to_excursion(r) for r in c.execute(sql, params)]
        diff = exc_engine.diff_excursions(old, new, device_id=dev, now_ms=now)
        for e in diff.upserts:
            upsert_excursion(c, e, dev, None, now)
        if diff.superseded:
            c.executemany("UPDATE excursions SET superseded = 1, updated_at = ? WHERE id = ?",
                          [(now, i) for i in diff.superseded])
        log.debug("re-evaluated %s from %s: %d readings, %d changed, %d superseded", dev, since, len(t),
                  len(diff.upserts), len(diff.superseded))
        if row is not None:
            self._last_checkpoint[dev] = row[0]
        old_by = {e.id: e for e in old}
        return announce(c, dev, diff.upserts, [old_by[i] for i in diff.superseded], now)

    def _maybe_checkpoint(self, c: sqlite3.Connection, dev: str, profile: Profile) -> None:
        eng = self._engines[dev]
        last = eng.last_ts
        if last is None:
            return
        prev = self._last_checkpoint.get(dev)
        if prev is None:
            r = c.execute("SELECT MAX(ts) FROM series_checkpoints WHERE series_id = ?", (dev,)).fetchone()
            prev = r[0] if r and r[0] is not None else -(2**62)
            self._last_checkpoint[dev] = prev
        if last - prev < CHECKPOINT_EVERY_MS:
            return
        self._pending_checkpoints.append((dev, last, profile_hash(profile), json.dumps(eng.snapshot())))
        self._last_checkpoint[dev] = last

    def write_checkpoints(self, c: sqlite3.Connection) -> None:
        """Store the checkpoints taken during this flush (two statements for all of them) and drop those
        older than the kept span of each device checkpointed."""
        rows, self._pending_checkpoints = self._pending_checkpoints, []
        if not rows:
            return
        insert_many(c, "INSERT INTO series_checkpoints (series_id, ts, profile_hash, snapshot) VALUES",
                    _last_per_key(rows), 4, "ON CONFLICT (series_id, ts) DO UPDATE SET"
                    " profile_hash = excluded.profile_hash, snapshot = excluded.snapshot")
        cutoff = min(r[1] for r in rows) - CHECKPOINT_EVERY_MS * CHECKPOINTS_KEPT
        devices = sorted({r[0] for r in rows})
        for i in range(0, len(devices), 500):
            part = devices[i:i + 500]
            c.execute(f"DELETE FROM series_checkpoints WHERE ts < ? AND series_id IN ({','.join('?' * len(part))})",
                      [cutoff, *part])


def _last_per_key(rows: list) -> list:
    """One row per (series_id, ts), the last one (what INSERT OR REPLACE kept): an upsert may not touch a row
    twice in one statement on PostgreSQL."""
    return list({(r[0], r[1]): r for r in rows}.values()) if len({(r[0], r[1]) for r in rows}) < len(rows) else rows


def announce(c: sqlite3.Connection, dev: str, stored: Sequence[Excursion], superseded: Sequence[Excursion],
             now: int, shipment_id: str | None = None) -> list[Alert]:
    """The alerts that bring the stream of these excursions (just stored, or just marked superseded) to
    their stored state; records the revision reached and the announced state in the caller's transaction."""
    subjects = [(e, False) for e in stored] + [(e, True) for e in superseded]
    if not subjects:
        return []
    ids = [e.id for e, _ in subjects]
    prior: dict[str, tuple[int, dict]] = {}
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        for r in c.execute("SELECT excursion_id, revision, state FROM excursion_alert_state"
                           f" WHERE excursion_id IN ({','.join('?' * len(part))})", part):
            prior[r[0]] = (r[1], json.loads(r[2]))
    alerts: list[Alert] = []
    rows = []
    for e, gone in subjects:
        revision, announced = prior.get(e.id, (0, None))
        new, revision, state = alert_stream.alerts_for_change(
            e, announced, revision, alert_stream.state_of(e, gone), device_id=dev, shipment_id=shipment_id,
            now_ms=now)
        if new:
            alerts.extend(new)
            rows.append((e.id, revision, json.dumps(state), now))
    if rows:
        c.executemany("INSERT INTO excursion_alert_state (excursion_id, revision, state, updated_at)"
                      " VALUES (?,?,?,?) ON CONFLICT (excursion_id) DO UPDATE SET revision = excluded.revision,"
                      " state = excluded.state, updated_at = excluded.updated_at", rows)
    return alerts

"""`coldtrace run --simulate` restarts resume instead of duplicating.

* The fleet is built from an anchor time kept in the store (``meta`` key ``sim.anchor_ms``), not from the
  time of this start, so a logger's value at a timestamp is the same on every start (the thermal models are
  functions of time; only the failing cooler's failure is placed relative to the anchor).
* Each simulated logger carries on from what the store already holds: readings after its newest stored one,
  with ``seq`` continuing from the stored one (no re-upload of the history, no false data gap). After a long
  stop (more than ``history_ms``) it starts again at ``now - history_ms``, like a logger that was away.
* The simulated calibration bench reuses its session: the same start, so the same readings (the bench model
  is seeded), which the store takes as duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from coldtrace.store import calibration as calibration_store
from coldtrace.store import devices as device_store
from coldtrace.store import meta as meta_store
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

ANCHOR_KEY = "sim.anchor_ms"
BENCH_NOTES = "simulated bench (coldtrace run --simulate)"
BENCH_CREATOR = "simulator"


def fleet_anchor(db: Database, now_ms: int) -> tuple[int, bool]:
    """(anchor, reused): the time the simulated fleet was first built in this store."""
    with db.write() as c:
        stored = meta_store.get(c, ANCHOR_KEY)
        if stored is not None:
            return int(stored), True
        meta_store.add(c, ANCHOR_KEY, str(now_ms))
    return now_ms, False


def resume_fleet(db: Database, fleet: list[Any], now_ms: int, history_ms: int) -> int:
    """Set each simulated logger's last sent reading and seq from the store. Returns how many resumed."""
    ids = [lg.device_id for lg in fleet]
    if not ids:
        return 0
    state = {d: (s.last_ts, s.last_seq) for d, s in device_store.resume_states(db.conn(), ids).items()}
    resumed = 0
    for lg in fleet:
        last_ts, last_seq = state.get(lg.device_id, (None, None))
        if last_seq is not None:
            lg.seq = int(last_seq)
        if last_ts is not None and last_ts >= now_ms - history_ms:
            lg.last_sent_ts = int(last_ts)
            resumed += 1
    return resumed


@dataclass(frozen=True)
class BenchSession:
    session_id: str
    start_ms: int
    reused: bool


def bench_session(services: Any, spec: Any, now_ms: int) -> BenchSession:
    """The simulated bench's calibration session: the one opened by an earlier start, else a new one."""
    from coldtrace.core.model import MINUTE
    from coldtrace.services.calibration_service import SessionSpec, for_services

    row = calibration_store.latest_session_by(services.db.conn(), BENCH_CREATOR, BENCH_NOTES, spec.reference_id)
    if row is not None:
        return BenchSession(row[0], row[1], True)
    start = now_ms - spec.duration_ms - MINUTE
    sid = for_services(services).create_session(SessionSpec(
        reference_id=spec.reference_id, duts={lg.device_id: lg.resolution_c for lg in spec.loggers},
        set_points=tuple(spec.set_points), mpe_c=0.5, u_ref_c=spec.reference_U_c, start_ms=start,
        created_by=BENCH_CREATOR, notes=BENCH_NOTES))
    return BenchSession(sid, start, False)

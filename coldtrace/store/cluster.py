"""SQL of the cluster's named leases (migration 1780_cluster_leases.sql) and what several processes on one
database need from it: one leader for the clock tick, row locks that skip what another process holds.

A lease is one row (name, holder, term, expires_at). ``acquire`` is one statement: insert the row, or take it
over when it is ours or has expired, in the same transaction as every other writer (SQLite's write lock,
PostgreSQL's row lock on the lease), so two processes can never both be told they hold it for the same
time. Times are the callers' clocks (epoch ms): across machines they must agree to well within the lease's
length (NTP does; docs/deployment.md).
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from coldtrace.store.db import Database

CLOCK_TICK = "clock-tick"  # the lease of the process that runs the clock tick (collector/service.py)


def holder_id(role: str) -> str:
    """A name for this process in leases and attempts: role, host, pid and a random part (a restarted
    process with a recycled pid is a new holder)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def dialect(db: Any) -> str:
    """``sqlite`` or ``postgresql`` (the SQLite Database predates the attribute)."""
    return getattr(db, "dialect", "sqlite")


def skip_locked(db: Any) -> str:
    """`` FOR UPDATE SKIP LOCKED`` on PostgreSQL (rows another transaction holds are passed over, so two
    notifiers claim different rows at once); nothing on SQLite, where the write transaction holds the whole
    file and no other writer can hold a row."""
    return " FOR UPDATE SKIP LOCKED" if dialect(db) == "postgresql" else ""


def row_locked_write(db: Any) -> AbstractContextManager:
    """A write transaction for statements that lock the rows they change themselves (SKIP LOCKED claims):
    on PostgreSQL without the cluster-wide write lock (``write(lock=False)``), so claiming deliveries does not
    wait behind ingest; on SQLite the one write transaction there is."""
    if dialect(db) == "postgresql":
        return db.write(lock=False)
    return db.write()


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    holder: str
    term: int
    acquired_at: int
    renewed_at: int
    expires_at: int


_LEASE_COLS = "name, holder, term, acquired_at, renewed_at, expires_at"


def acquire(db: Database, name: str, holder: str, now: int, ttl_ms: int) -> Lease | None:
    """Take or renew lease ``name`` for ``holder`` until ``now + ttl_ms``; None when another holder has it
    and it has not expired. A change of holder increments ``term``."""
    if ttl_ms <= 0:
        raise ValueError("a lease needs a positive length")
    with db.write() as c:
        r = c.execute(
            f"INSERT INTO cluster_leases ({_LEASE_COLS}) VALUES (?,?,1,?,?,?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, renewed_at = excluded.renewed_at,"
            " expires_at = excluded.expires_at,"
            " term = CASE WHEN cluster_leases.holder = excluded.holder THEN cluster_leases.term"
            " ELSE cluster_leases.term + 1 END,"
            " acquired_at = CASE WHEN cluster_leases.holder = excluded.holder THEN cluster_leases.acquired_at"
            " ELSE excluded.acquired_at END"
            " WHERE cluster_leases.holder = excluded.holder OR cluster_leases.expires_at <= excluded.renewed_at"
            f" RETURNING {_LEASE_COLS}",
            (name, holder, now, now, now + ttl_ms)).fetchone()
    return None if r is None else Lease(*(r[i] for i in range(6)))


def release(db: Database, name: str, holder: str) -> bool:
    """Give the lease up at once (a clean shutdown): another process takes it at its next tick."""
    with db.write() as c:
        return c.execute("DELETE FROM cluster_leases WHERE name = ? AND holder = ?", (name, holder)).rowcount == 1


def current(db: Database, name: str) -> Lease | None:
    r = db.query_one(f"SELECT {_LEASE_COLS} FROM cluster_leases WHERE name = ?", (name,))
    return None if r is None else Lease(*(r[i] for i in range(6)))


class LeaderLease:
    """One process's side of a named lease: ``hold(now)`` takes or renews it and says whether this process
    leads until the next call. The clock tick calls it once per tick, so the leader renews it every tick;
    a leader that stops (killed, stuck, cut off from the database) is replaced once ``ttl_ms`` has passed.

    A failed renewal counts as not leading: two processes may both skip a tick, never both run one while
    their clocks agree. ``term`` is the lease's term the last time it was held (it grows with each change
    of leader)."""

    def __init__(self, db: Database, holder: str, ttl_ms: int, name: str = CLOCK_TICK) -> None:
        self.db = db
        self.holder = holder
        self.ttl_ms = int(ttl_ms)
        self.name = name
        self.term: int | None = None
        self._until = 0  # clock time (ms) until which the last successful hold() is good

    def hold(self, now: int) -> bool:
        lease = acquire(self.db, self.name, self.holder, now, self.ttl_ms)
        if lease is None:
            self._until = 0
            return False
        self.term = lease.term
        self._until = lease.expires_at
        return True

    def held(self, now: int) -> bool:
        """Whether the last hold() still covers ``now`` (no database round trip: for a second loop of the
        same process, e.g. the alert-lifecycle tick beside the clock tick)."""
        return now < self._until

    def release(self) -> None:
        if self._until:
            self._until = 0
            release(self.db, self.name, self.holder)

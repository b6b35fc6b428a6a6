"""Ports: the small contracts the core needs from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coldtrace.core.clock import Clock
from coldtrace.core.model import Reading

__all__ = ["Clock", "ReadingStore", "WriteResult", "Bucket", "Conflict"]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A reading for a (device_id, ts) already stored (or earlier in the same write) with another value."""

    reading: Reading  # the one not stored
    stored_temp_c: float
    stored_seq: int | None


@dataclass(frozen=True, slots=True)
class WriteResult:
    accepted: int  # readings newly stored
    duplicates: int  # readings already present with the same (device_id, ts): nothing changed
    # those of the duplicates whose value differs from the stored one (the stored, first value is kept)
    conflicts: tuple[Conflict, ...] = ()


@dataclass(frozen=True, slots=True)
class Bucket:
    """One downsampled interval of a series: [ts, ts + interval)."""

    ts: int
    min_c: float
    max_c: float
    mean_c: float
    count: int


class ReadingStore(Protocol):
    """The time series. Idempotent on (device_id, ts): a redelivered reading changes nothing, and the first
    stored value is kept; ``write`` reports a duplicate with another value as a ``Conflict``."""

    def write(self, readings: Sequence[Reading]) -> WriteResult: ...

    def query(self, device_id: str, start: int | None = None, end: int | None = None,
              limit: int | None = None, descending: bool = False) -> list[Reading]:
        """Readings of one device with start <= ts < end, ordered by ts."""
        ...

    def arrays(self, device_id: str, start: int | None = None, end: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(ts int64 ms, temp_c float64) arrays, sorted, for start <= ts < end."""
        ...

    def downsample(self, device_id: str, start: int, end: int, interval_ms: int) -> list[Bucket]: ...

    def count(self, device_id: str | None = None) -> int: ...

    def close(self) -> None: ...


# The metadata store's ports, one per table family (issue 15). Each is implemented in coldtrace/store/<family>.py
# for both SQLite and PostgreSQL (the same portable statements) and has a contract suite in tests/contract/.

# --- devices, profiles, quarantine, device health, excursions and checkpoints, meta (store/devices.py ...)


# --- alerts, alert lifecycle, outbox (store/alerts.py)


# --- people, tokens, sessions, login throttle, audit chain (store/auth.py, store/audit.py)


# --- calibration, certificates, shipments (store/calibration.py, store/shipments.py)


# --- webhook subscriptions, deliveries and their leases, cluster leases (store/webhooks.py, store/cluster.py)

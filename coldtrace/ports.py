"""Ports: the small contracts the core needs from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from coldtrace.core.clock import Clock
from coldtrace.core.model import Excursion, Reading

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
# Implemented as module functions (a module satisfies a Protocol structurally): coldtrace/store/devices.py,
# store/health.py, store/excursions.py, store/meta.py. ``c`` is a connection: the caller's write transaction
# (``with db.write() as c``) or ``db.conn()`` for a read; rows the API returns as they are come back as dicts.
# Contract suites: tests/contract/test_devices_store.py, test_device_health_store.py, test_excursions_store.py,
# test_meta_store.py.


class DeviceState(NamedTuple):
    """What the pipeline needs of a device to ingest its readings."""

    id: str
    last_ts: int | None
    last_seq: int | None
    profile_id: str | None
    evaluated_ts: int | None
    role: str | None
    kind: str
    judged_from: int | None


class DeviceUpdate(NamedTuple):
    """A device's state after an ingest flush."""

    last_seen_at: int
    last_seq: int | None
    seq_gaps_added: int
    battery_pct: float | None  # None: keep the stored one
    last_ts: int | None  # None: keep the stored newest reading (and its temperature)
    last_ts_again: int | None  # the same value: the statement tests it once more
    last_temp_c: float | None
    evaluated_ts: int | None
    id: str


class RoleState(NamedTuple):
    role: str | None
    kind: str
    last_ts: int | None
    judged_from: int | None


class MonitoredDevice(NamedTuple):
    """A device the deadman watches: marked monitored or on a shipment in transit, and seen at least once."""

    id: str
    profile_id: str | None
    last_seen_at: int
    state: str | None  # its health state (JSON), None before the first


class DeviceStore(Protocol):
    """``devices``: the one writer of the table (registration, ingest state, roles, status, profile)."""

    def ensure_devices(self, c: Any, ids: Iterable[str], now: int) -> None: ...
    def ensure_device(self, c: Any, device_id: str, now: int) -> None: ...
    def device_states(self, c: Any, ids: Sequence[str]) -> dict[str, DeviceState]: ...
    def update_device_states(self, c: Any, updates: Sequence[DeviceUpdate] | Sequence[tuple]) -> None: ...
    def known_devices(self, c: Any, ids: Iterable[str]) -> set[str]: ...
    def set_status(self, c: Any, device_id: str, status_json: str, online: bool | None) -> bool: ...
    def set_online(self, c: Any, device_ids: Iterable[str], online: bool) -> None: ...
    def register_device(self, c: Any, device_id: str, kind: str, name: str | None, profile_id: str | None,
                        monitored: bool, now: int) -> None: ...
    def register_unmonitored(self, c: Any, device_id: str, kind: str, name: str, now: int) -> None: ...
    def get_device(self, c: Any, device_id: str) -> dict[str, Any] | None: ...
    def device_profile_id(self, c: Any, device_id: str) -> tuple[bool, str | None]: ...
    def list_devices(self, c: Any, *, kind: str | None = None, role: str | None = None, limit: int = 1000,
                     offset: int = 0) -> list[dict[str, Any]]: ...
    def effective_role_of(self, c: Any, device_id: str) -> str | None: ...
    def session_roles(self, c: Any) -> dict[str, str]: ...
    def role_state(self, c: Any, device_id: str) -> RoleState | None: ...
    def set_role(self, c: Any, device_id: str, role: str | None, judged_from: int | None = None) -> None: ...
    def set_judged_from(self, c: Any, device_id: str, judged_from: int) -> None: ...
    def assign_profile(self, c: Any, device_id: str, profile_id: str, previous: str | None, now: int,
                       by: str) -> None: ...
    def profile_assignments(self, c: Any, device_id: str) -> list[dict[str, Any]]: ...
    def count_devices(self, c: Any) -> int: ...
    def count_devices_ahead(self, c: Any, ts: int) -> int: ...


class ProfileStore(Protocol):
    """``profiles`` and ``profile_changes`` (every change: who, when, the body)."""

    def ensure_builtin_profile(self, c: Any, profile_id: str, name: str, body: str, now: int) -> None: ...
    def profile_body(self, c: Any, profile_id: str) -> str | None: ...
    def get_profile(self, c: Any, profile_id: str) -> dict[str, Any] | None: ...
    def list_profiles(self, c: Any) -> list[dict[str, Any]]: ...
    def save_profile(self, c: Any, profile_id: str, name: str, body: str, now: int, by: str) -> None: ...
    def profile_changes(self, c: Any, profile_id: str) -> list[dict[str, Any]]: ...


class QuarantineStore(Protocol):
    """``quarantine``: everything that arrived and was not stored, with its reason; QA resolves conflicts."""

    def add_quarantine_many(self, c: Any, rows: Sequence[tuple]) -> None: ...
    def add_quarantine(self, c: Any, row: tuple) -> None: ...
    def open_conflict_exists(self, c: Any, device_id: str, reading_ts: int, received_temp_c: float) -> bool: ...
    def add_conflicts(self, c: Any, rows: Sequence[tuple]) -> None: ...
    def open_conflicts(self, c: Any, device_ids: Sequence[str] | None = None) -> dict[str, int]: ...
    def list_quarantine(self, c: Any, *, reason: str | None = None, device_id: str | None = None,
                        open_only: bool = False, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]: ...
    def get_quarantine(self, c: Any, quarantine_id: int) -> dict[str, Any] | None: ...
    def resolve_quarantine(self, c: Any, quarantine_id: int, now: int, by: str, resolution: str) -> None: ...
    def quarantine_by_reason(self, c: Any) -> dict[str, int]: ...
    def count_quarantine(self, c: Any) -> int: ...
    def quarantined_for(self, c: Any, reason: str) -> tuple[int, int | None]: ...


class HealthStore(Protocol):
    """``device_health``: one JSON state per device (coldtrace/core/health.py)."""

    def state(self, c: Any, device_id: str) -> str | None: ...
    def states(self, c: Any, device_ids: Sequence[str]) -> dict[str, str]: ...
    def save(self, c: Any, device_id: str, state_json: str, now: int) -> None: ...
    def save_many(self, c: Any, rows: Sequence[tuple[str, str, int]]) -> None: ...
    def monitored(self, c: Any) -> list[MonitoredDevice]: ...


class ExcursionStore(Protocol):
    """``excursions`` (by stable id, superseded rather than deleted), ``excursion_alert_state`` and the live
    evaluation's ``series_checkpoints``."""

    def upsert_excursion(self, c: Any, e: Excursion, device_id: str, shipment_id: str | None,
                         now_ms: int) -> None: ...
    def stored_excursions(self, c: Any, series_id: str, since: int | None = None) -> list[Excursion]: ...
    def supersede(self, c: Any, ids: Sequence[str], now_ms: int) -> None: ...
    def alert_states(self, c: Any, excursion_ids: Sequence[str]) -> dict[str, tuple[int, str]]: ...
    def save_alert_states(self, c: Any, rows: Sequence[tuple[str, int, str, int]]) -> None: ...
    def delete_checkpoints_from(self, c: Any, series_id: str, ts: int) -> None: ...
    def checkpoint_before(self, c: Any, series_id: str, ts: int, profile_hash: str) -> tuple[int, str] | None: ...
    def last_checkpoint_ts(self, c: Any, series_id: str) -> int | None: ...
    def save_checkpoints(self, c: Any, rows: Sequence[tuple[str, int, str, str]], cutoff: int) -> None: ...
    def list_excursions(self, c: Any, *, start: int, end: int, device_id: str | None = None,
                        shipment_id: str | None = None, limit_id: str | None = None, open: bool | None = None,
                        alarmed: bool | None = None, limit: int = 500, offset: int = 0) -> list[dict[str, Any]]: ...
    def get_excursion(self, c: Any, excursion_id: str) -> dict[str, Any] | None: ...


class MetaStore(Protocol):
    """``meta``: small key/value settings shared by the processes (config version, broker counters...)."""

    def get(self, c: Any, key: str) -> str | None: ...
    def put(self, c: Any, key: str, value: str) -> None: ...
    def add(self, c: Any, key: str, value: str) -> None: ...
    def first_with_prefix(self, c: Any, prefix: str) -> str | None: ...
    def ping(self, c: Any) -> None: ...
    def migrations_applied(self, c: Any) -> int: ...


# --- alerts, alert lifecycle, outbox (store/alerts.py)


# --- people, tokens, sessions, login throttle, audit chain (store/auth.py, store/audit.py)


# --- calibration, certificates, shipments (store/calibration.py, store/shipments.py)


# --- webhook subscriptions, deliveries and their leases, cluster leases (store/webhooks.py, store/cluster.py)

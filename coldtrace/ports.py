"""Ports: the small contracts the core needs from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

import numpy as np

from coldtrace.core.clock import Clock
from coldtrace.core.model import Alert, Reading

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

class AlertRow(TypedDict):
    """A row of ``alerts`` (0001_core.sql, 1151_alarm_lifecycle.sql); ``data`` is the JSON text as stored."""

    id: str
    type: str
    severity: str
    device_id: str | None
    shipment_id: str | None
    excursion_id: str | None
    ts: int
    created_at: int
    data: str
    state: str  # open | acknowledged | resolved
    condition: str  # active | cleared
    cleared_at: int | None
    shelved_until: int | None


class AlertListed(AlertRow):
    """An alert as the lists show it: with its assignee (NULL when nobody has handled it yet)."""

    assignee: str | None


class AlertLifecycleRow(TypedDict):
    """A row of ``alert_lifecycle``: the current handling of one alert."""

    alert_id: str
    assignee: str | None
    acknowledged_at: int | None
    acknowledged_by: str | None
    ack_comment: str | None
    resolved_at: int | None
    resolved_by: str | None
    resolution: str | None
    escalations: int
    last_escalated_at: int | None
    next_escalation_at: int | None
    shelved_at: int | None
    shelved_by: str | None
    shelve_reason: str | None


class AlertHandlingRow(AlertRow):
    """An alert joined with its handling (the lifecycle columns are NULL while it has no lifecycle row)."""

    assignee: str | None
    acknowledged_at: int | None
    acknowledged_by: str | None
    ack_comment: str | None
    resolved_at: int | None
    resolved_by: str | None
    resolution: str | None
    escalations: int | None
    last_escalated_at: int | None
    next_escalation_at: int | None
    shelved_at: int | None
    shelved_by: str | None
    shelve_reason: str | None


class AlertEventRow(TypedDict):
    """A row of ``alert_events`` (append-only); ``data`` is JSON text or None."""

    id: int
    alert_id: str
    at: int
    actor: str
    action: str
    comment: str | None
    data: str | None


class EpisodeStageRow(TypedDict):
    """One limit of an excursion episode (same series, direction, threshold and start) and its newest
    ``excursion.alarm`` alert, if any."""

    excursion_id: str
    limit_id: str
    severity: str
    alarm_ts: int | None
    alarm_kind: str | None
    alert_id: str | None
    alert_state: str | None


class SelfResolvableRow(TypedDict):
    """An unresolved info/warning alert whose condition has been quiet long enough (``excursion_end_ts``:
    when its excursion ended; None for an alert without an excursion)."""

    alert_id: str
    severity: str
    device_id: str | None
    excursion_end_ts: int | None


class AlarmRow(TypedDict):
    """An alarm for the alarm-system health report; ``detail`` is what in the device it is about (the first
    of the data's limit_id, kind, set_point_c, stage; an object or array as compact JSON text)."""

    id: str
    created_at: int
    ts: int
    type: str
    severity: str
    device_id: str | None
    state: str
    detail: Any


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """The filters of an alert listing (all optional; ``view``: None, "inbox" or "shelved")."""

    type: str | None = None
    severity: str | None = None
    severities: tuple[str, ...] | None = None  # any of these (a minimum severity)
    device_id: str | None = None
    shipment_id: str | None = None
    state: str | None = None
    condition: str | None = None
    since: int | None = None  # created at or after
    view: str | None = None


class TxConnection(Protocol):
    """A connection inside ``db.write()`` (sqlite3 or the PostgreSQL adapter): one transaction."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


class AlertStore(Protocol):
    """The alerts family (coldtrace/store/alerts.py): ``alerts``, ``alert_lifecycle``, ``alert_events`` and
    the reads the lifecycle and the alarm-system health need. Reads take a database or a connection inside
    a transaction; writes take the transaction's connection. The outbox rows the lifecycle writes go through
    store/webhooks.py (``insert_event``), the outbox's one writer."""

    def insert_alert(self, c: TxConnection, alert: Alert, created_at: int) -> bool: ...
    def get_alert(self, db: Any, alert_id: str) -> AlertRow | None: ...
    def get_handling(self, db: Any, alert_id: str) -> AlertHandlingRow | None: ...
    def list_alerts(self, db: Any, query: AlertQuery, now: int, limit: int, offset: int = 0
                    ) -> list[AlertListed]: ...
    def events(self, db: Any, alert_id: str) -> list[AlertEventRow]: ...
    def episode_stages(self, db: Any, excursion_id: str, direction: str, threshold_c: float, start_ts: int
                       ) -> tuple[int | None, list[EpisodeStageRow]] | None: ...
    def ensure_lifecycle(self, c: TxConnection, alert_id: str) -> None: ...
    def get_lifecycle(self, db: Any, alert_id: str) -> AlertLifecycleRow | None: ...
    def insert_event(self, c: TxConnection, alert_id: str, at: int, actor: str, action: str,
                     comment: str | None, data: str | None) -> int: ...
    def open_episode_alerts(self, c: TxConnection, episode_id: str, device_id: str | None, exclude_id: str
                            ) -> list[str]: ...
    def mark_acknowledged(self, c: TxConnection, alert_id: str, at: int, actor: str,
                          comment: str | None) -> None: ...
    def mark_resolved(self, c: TxConnection, alert_id: str, at: int, actor: str, resolution: str) -> None: ...
    def set_assignee(self, c: TxConnection, alert_id: str, assignee: str | None) -> None: ...
    def active_username(self, db: Any, username: str) -> str | None: ...
    def mark_shelved(self, c: TxConnection, alert_id: str, until: int, at: int, actor: str,
                     reason: str) -> None: ...
    def clear_shelving(self, c: TxConnection, alert_id: str) -> None: ...
    def record_escalation(self, c: TxConnection, alert_id: str, level: int, at: int,
                          next_at: int | None) -> None: ...
    def expired_shelvings(self, db: Any, now: int) -> list[str]: ...
    def acknowledged_and_cleared(self, db: Any) -> list[str]: ...
    def due_escalations(self, db: Any, now: int, escalate_after_ms: Mapping[str, int],
                        excluded_types: Sequence[str], cap: int | None) -> list[str]: ...
    def self_resolvable(self, db: Any, quiet_since: int) -> list[SelfResolvableRow]: ...
    def device_profile_bodies(self, db: Any, device_ids: Sequence[str]) -> list[tuple[str, str, str]]: ...
    def alarms_raised(self, db: Any, start: int, end: int, severities: Sequence[str]) -> list[AlarmRow]: ...
    def standing_alarms(self, db: Any, active_since_before: int, severities: Sequence[str],
                        not_a_condition: Sequence[str]) -> list[AlarmRow]: ...



# --- people, tokens, sessions, login throttle, audit chain (store/auth.py, store/audit.py)


# --- calibration, certificates, shipments (store/calibration.py, store/shipments.py)


# --- webhook subscriptions, deliveries and their leases, cluster leases (store/webhooks.py, store/cluster.py)

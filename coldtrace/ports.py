"""Ports: the small contracts the core needs from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypedDict

import numpy as np

from coldtrace.core.clock import Clock
from coldtrace.core.model import Alert, Excursion, Reading

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
    def record_sources(self, c: Any, pairs: Iterable[tuple[str, str]], now: int) -> None: ...
    def sources_of(self, c: Any, ids: Sequence[str]) -> dict[str, set[str]]: ...
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
    def device_profile_bodies(self, db: Any, device_ids: Sequence[str]) -> list[tuple[str, str, str]]: ...
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
    def open_conflicts_in(self, db: Any, device_id: str, start: int, end: int | None) -> int: ...
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
    def supersede_shipment_excursions(self, c: Any, shipment_id: str, keep: set[str],
                                      now_ms: int) -> list[str]: ...



class MetaStore(Protocol):
    """``meta``: small key/value settings shared by the processes (config version, broker counters...)."""

    def get(self, c: Any, key: str) -> str | None: ...
    def put(self, c: Any, key: str, value: str) -> None: ...
    def add(self, c: Any, key: str, value: str) -> None: ...
    def first_with_prefix(self, c: Any, prefix: str) -> str | None: ...
    def ping(self, c: Any) -> None: ...
    def migrations_applied(self, c: Any) -> int: ...


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

    def insert_alert(self, c: TxConnection, alert: Alert, created_at: int, data: str | None = None) -> bool: ...

    def insert_outbox(self, c: TxConnection, row: tuple) -> None: ...

    def open_alerts_of_type(self, c: Any, alert_type: str) -> list[tuple[str, str]]: ...

    def alerts_by_type(self, c: Any) -> dict[str, int]: ...

    def outbox_pending(self, c: Any) -> int: ...

    def alert_kinds(self, c: Any) -> list[tuple[str | None, str, str]]: ...
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
    def shipment_alerts(self, db: Any, shipment_id: str, device_windows: Sequence[tuple[str, int, int]],
                        limit: int = 1000) -> list[dict[str, Any]]: ...
    def shipment_alarms(self, db: Any, shipment_id: str, shipment_types: Sequence[str],
                        device_windows: Sequence[tuple[str, int, int]]) -> list[dict[str, Any]]: ...
    def events_with_actions(self, db: Any, alert_id: str, actions: Sequence[str], limit: int | None = None
                            ) -> list[dict[str, Any]]: ...
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
    def alarms_raised(self, db: Any, start: int, end: int, severities: Sequence[str]) -> list[AlarmRow]: ...
    def standing_alarms(self, db: Any, active_since_before: int, severities: Sequence[str],
                        not_a_condition: Sequence[str]) -> list[AlarmRow]: ...



# --- people, tokens, sessions, login throttle, audit chain (store/auth.py, store/audit.py)
# ``c`` is the caller's write transaction (``with db.write() as c``); ``src`` a Database or such a transaction
# (a read inside a transaction sees what it wrote). Rows are TypedDicts: the API returns some of them as they are.


class UserRow(TypedDict):
    id: str
    username: str
    full_name: str
    role: str  # viewer, qa, admin
    active: int  # 0/1
    created_at: int


class LoginRow(TypedDict):
    """What a sign-in needs of a user (the argon2 hash included: never leaves the service)."""

    id: str
    username: str
    full_name: str
    role: str
    active: int
    password_hash: str


@dataclass(frozen=True, slots=True)
class FailureCount:
    """A user's consecutive failed sign-ins after one more failure, and the lock it led to (epoch ms)."""

    failed_logins: int
    locked_until: int | None


class TokenRow(TypedDict):
    id: str
    name: str
    user_id: str | None
    role: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


class BearerRow(TypedDict):
    """A live (not revoked) API token with its user (None fields for a service token)."""

    id: str
    name: str
    role: str
    user_id: str | None
    created_at: int
    expires_at: int | None
    username: str | None
    user_role: str | None
    active: int | None


@dataclass(frozen=True, slots=True)
class DeviceTokenInfo:
    id: str
    name: str
    device_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """Whose a token is: ``kind`` api or device; ``user_id`` the person of a personal API token."""

    kind: str
    user_id: str | None


class TokenListing(TypedDict):
    """API and device tokens in one list (``coldtrace token list``)."""

    id: str
    kind: str  # api, device
    name: str
    role: str
    user: str | None
    devices: list[str] | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None


class LoginSessionRow(TypedDict):
    id_hash: str
    user_id: str
    csrf_token: str
    created_at: int
    expires_at: int
    last_seen_at: int
    revoked_at: int | None
    username: str
    role: str
    active: int


class UnknownFailures(TypedDict):
    """Failed sign-ins for usernames that do not exist, of one client in one window."""

    client: str
    attempts: int
    first_ts: int
    last_ts: int


@dataclass(frozen=True, slots=True)
class ThrottleEntry:
    """A sign-in throttle key's unforgiven attempts and the time of the last one."""

    key: str
    attempts: int
    last_ms: int


class AuditRow(TypedDict):
    id: int
    ts: int
    actor: str
    action: str
    entity: str
    entity_id: str | None
    old_value: str | None  # canonical JSON
    new_value: str | None
    reason: str | None
    prev_hash: str
    hash: str
    key_id: str | None  # None: a plain SHA-256 record from before keying began


class AuthStore(Protocol):
    """coldtrace/store/auth.py: users, API and device tokens, sessions, failed sign-ins, the shared throttle."""

    def insert_user(self, c: Any, *, id: str, username: str, full_name: str, password_hash: str, role: str,
                    now: int) -> bool: ...
    def get_user(self, src: Any, user_id: str) -> UserRow | None: ...
    def find_user(self, src: Any, username: str) -> UserRow | None: ...
    def find_user_by_id_or_name(self, src: Any, user: str) -> UserRow | None: ...
    def list_users(self, src: Any) -> list[UserRow]: ...
    def active_admins_other_than(self, c: Any, user_id: str) -> int: ...
    def update_user(self, c: Any, user_id: str, *, full_name: str, role: str, active: bool, now: int) -> None: ...
    def login_row(self, src: Any, username: str) -> LoginRow | None: ...
    def record_login_failure(self, c: Any, user_id: str, now: int, *, max_failures: int,
                             lock_ms: int) -> FailureCount | None: ...
    def clear_login_failures(self, c: Any, user_id: str, now: int) -> bool: ...
    def replace_password_hash(self, c: Any, user_id: str, new_hash: str, old_hash: str) -> bool: ...
    def set_password(self, c: Any, user_id: str, password_hash: str, now: int) -> bool: ...
    def note_unknown_failure(self, c: Any, window_start: int, client: str, now: int) -> None: ...
    def ended_unknown_windows(self, src: Any, window_ms: int, now: int) -> list[int]: ...
    def unknown_failures(self, c: Any, window_start: int) -> list[UnknownFailures]: ...
    def delete_unknown_window(self, c: Any, window_start: int) -> None: ...
    def insert_api_token(self, c: Any, *, id: str, token_hash: str, name: str, user_id: str | None, role: str,
                         created_at: int, expires_at: int | None) -> None: ...
    def insert_device_token(self, c: Any, *, id: str, token_hash: str, name: str, created_at: int,
                            device_ids: list[str]) -> None: ...
    def revoke_token(self, c: Any, token_id: str, now: int) -> bool: ...
    def list_api_tokens(self, src: Any) -> list[TokenRow]: ...
    def list_all_tokens(self, src: Any) -> list[TokenListing]: ...
    def api_token_id(self, src: Any, token_hash: str) -> str | None: ...
    def token_owner(self, src: Any, token_id: str) -> TokenOwner | None: ...
    def bearer_api_token(self, src: Any, token_hash: str) -> BearerRow | None: ...
    def bearer_device_token(self, src: Any, token_hash: str) -> DeviceTokenInfo | None: ...
    def token_last_used(self, src: Any, kind: str, token_id: str) -> tuple[bool, int | None]: ...
    def touch_token(self, c: Any, kind: str, token_id: str, now: int) -> None: ...
    def insert_session(self, c: Any, *, id_hash: str, user_id: str, csrf_token: str, created_at: int,
                       expires_at: int) -> None: ...
    def session(self, src: Any, id_hash: str) -> LoginSessionRow | None: ...
    def touch_session(self, c: Any, id_hash: str, now: int) -> None: ...
    def revoke_session(self, c: Any, id_hash: str, now: int) -> None: ...
    def revoke_user_sessions(self, c: Any, user_id: str, now: int) -> int: ...
    def any_active_user(self, src: Any) -> bool: ...
    def any_live_api_token(self, src: Any, now: int) -> bool: ...
    def any_user_or_api_token(self, src: Any) -> bool: ...
    def throttle_entries(self, src: Any, keys: list[str]) -> list[ThrottleEntry]: ...
    def throttle_put(self, c: Any, key: str, attempts: int, last_ms: int) -> None: ...
    def throttle_forget(self, c: Any, keys: list[str]) -> None: ...
    def throttle_prune(self, c: Any, older_than_ms: int) -> int: ...
    def throttle_size(self, src: Any) -> int: ...


class AuditStore(Protocol):
    """coldtrace/store/audit.py: the append-only audit chain."""

    def lock_chain(self, c: Any) -> None: ...
    def chain_head(self, src: Any) -> tuple[int, str] | None: ...
    def next_id(self, c: Any) -> int: ...
    def append(self, c: Any, row: AuditRow) -> None: ...
    def records_after(self, src: Any, after_id: int, limit: int) -> list[AuditRow]: ...
    def search(self, src: Any, *, entity: str | None = None, entity_id: str | None = None, actor: str | None = None,
               action: str | None = None, start: int | None = None, end: int | None = None, after_id: int = 0,
               limit: int = 100) -> list[AuditRow]: ...
    def has_keyed_records(self, src: Any) -> bool: ...
    def last_unkeyed_id(self, src: Any) -> int | None: ...
    def database_file(self, src: Any) -> str: ...



# --- calibration, certificates, shipments (store/calibration.py, store/shipments.py)
# ``c`` is the caller's write transaction (``with db.write() as c``); ``db`` a Database (either dialect) or such a
# transaction (a read inside it sees what it wrote). Rows are TypedDicts (the API returns most as they are); the
# modules coldtrace/store/calibration.py and coldtrace/store/shipments.py implement the two Protocols below.


class DeviceCalibration(TypedDict):
    device_id: str
    last_calibrated_at: int | None
    interval_days: float
    due_at: int | None
    status: str  # valid | failed | indeterminate | unknown
    certificate_ref: str | None
    expanded_uncertainty_c: float | None
    resolution_c: float | None
    traceability: str | None
    due_alerted: str | None
    updated_at: int
    make: str | None
    model: str | None
    serial_number: str | None
    calibrated_by: str | None
    drift_predicted_ms: int | None
    drift_judged_at: int | None


class DueRow(TypedDict):
    device_id: str
    due_at: int
    due_alerted: str | None


class SessionRow(TypedDict):
    id: str
    reference_id: str
    set_points: str  # JSON list of °C, in bench order
    mpe_c: float
    rule: str
    kind: str
    capture_ms: int
    tolerance_c: float
    u_medium_c: float
    u_ref_c: float
    state: str
    point_index: int
    cursor_ms: int
    started_at: int
    completed_at: int | None
    created_at: int
    created_by: str | None
    notes: str | None
    customer: str | None
    location: str | None
    ambient_c: float | None
    ambient_rh_pct: float | None


class Dut(TypedDict):
    device_id: str
    resolution_c: float


class PointRow(TypedDict):
    session_id: str
    point_index: int
    set_point_c: float
    stable_from: int
    stable_at: int
    capture_end: int
    ref_mean_c: float
    ref_std_c: float
    ref_slope_c_per_min: float
    evaluated: int


class EwmaRow(TypedDict):
    session_id: str
    device_id: str
    point_index: int
    mu0: float
    sigma: float
    n0: int
    z: float
    i: int
    last_ts: int
    drift_at: int | None


class ResultRow(TypedDict):
    session_id: str
    device_id: str
    point_index: int
    set_point_c: float
    n: int
    error_c: float | None
    s_c: float | None
    u_c: float | None
    expanded_u_c: float | None
    decision: str
    zone: str
    ref_mean_c: float | None
    dut_mean_c: float | None
    capture_from: int
    capture_to: int
    created_at: int


class HistoryRow(TypedDict):
    set_point_c: float
    ts: int
    error_c: float
    expanded_u_c: float
    mpe_c: float


class CalibratedDevice(TypedDict):
    """Reverse traceability: one device under test of a completed session that used a reference."""

    device_id: str
    session_id: str
    kind: str
    completed_at: int | None
    u_ref_c: float
    state: str


class SignatureRow(TypedDict):
    id: str
    session_id: str
    role: str
    meaning: str
    signer_user_id: str
    signer_username: str
    printed_name: str
    signed_at: int
    record_hash: str
    signature_hash: str


class CertificateRevision(TypedDict):
    """An issued revision of a certificate without its body."""

    number: str
    revision: int
    session_id: str
    device_id: str
    issued_at: int
    approver_username: str
    approver_name: str
    changes: str | None
    body_hash: str
    signature_hash: str


class ShipmentTick(TypedDict):
    id: str
    product: str
    lot: str


class CalibrationStore(Protocol):
    """Device calibration state, sessions, set points, live charts, results, history, signatures, certificates
    (coldtrace/store/calibration.py)."""

    def device_calibration(self, db: Any, device_id: str) -> DeviceCalibration | None: ...
    def device_calibrations(self, db: Any) -> dict[str, DeviceCalibration]: ...
    def calibration_device_ids(self, db: Any) -> list[str]: ...
    def save_device_calibration(self, c: Any, device_id: str, values: dict[str, Any], now_ms: int) -> None: ...
    def set_drift_judgement(self, c: Any, device_id: str, predicted_ms: int | None, judged_at: int) -> None: ...
    def devices_to_rejudge(self, db: Any, judged_before: int) -> list[str]: ...
    def due_within(self, db: Any, now_ms: int, horizon_ms: int) -> list[DueRow]: ...
    def mark_due_alerted(self, c: Any, marks: Sequence[tuple[str, str]]) -> None: ...
    def session_exists(self, db: Any, session_id: str) -> bool: ...
    def get_session(self, db: Any, session_id: str) -> SessionRow: ...
    def insert_session(self, c: Any, row: dict[str, Any], duts: Sequence[tuple[str, float]]) -> None: ...
    def update_session_conditions(self, c: Any, session_id: str, fields: dict[str, Any]) -> None: ...
    def finish_session(self, c: Any, session_id: str, state: str, completed_at: int) -> None: ...
    def next_set_point(self, c: Any, session_id: str, cursor_ms: int) -> None: ...
    def running_session_ids(self, db: Any) -> list[str]: ...
    def list_sessions(self, db: Any, *, reference_id: str | None = None, device_id: str | None = None,
                      state: str | None = None, limit: int = 100, offset: int = 0) -> list[SessionRow]: ...
    def session_duts(self, db: Any, session_id: str) -> list[Dut]: ...
    def session_dut(self, db: Any, session_id: str, device_id: str) -> Dut | None: ...
    def delete_session(self, c: Any, session_id: str) -> None: ...
    def has_points(self, db: Any, session_id: str) -> bool: ...
    def sessions_with_reference(self, db: Any, reference_id: str) -> list[CalibratedDevice]: ...
    def point(self, db: Any, session_id: str, point_index: int) -> PointRow | None: ...
    def points(self, db: Any, session_id: str) -> list[PointRow]: ...
    def add_point(self, c: Any, session_id: str, point_index: int, set_point_c: float, *, stable_from: int,
                  stable_at: int, capture_end: int, ref_mean_c: float, ref_std_c: float,
                  ref_slope_c_per_min: float) -> bool: ...
    def mark_point_evaluated(self, c: Any, session_id: str, point_index: int) -> None: ...
    def last_capture_end(self, db: Any, session_id: str) -> int | None: ...
    def add_ewma(self, c: Any, session_id: str, device_id: str, point_index: int, *, mu0: float, sigma: float,
                 n0: int, last_ts: int) -> bool: ...
    def ewma(self, db: Any, session_id: str, device_id: str, point_index: int) -> EwmaRow | None: ...
    def update_ewma(self, c: Any, session_id: str, device_id: str, point_index: int, *, z: float, i: int,
                    last_ts: int, drift_at: int | None) -> None: ...
    def save_result(self, c: Any, row: dict[str, Any]) -> None: ...
    def results(self, db: Any, session_id: str, device_id: str | None = None) -> list[ResultRow]: ...
    def save_history(self, c: Any, device_id: str, set_point_c: float, ts: int, *, error_c: float,
                     expanded_u_c: float, mpe_c: float, source: str) -> None: ...
    def history(self, db: Any, device_id: str) -> list[HistoryRow]: ...
    def performed_signature(self, db: Any, session_id: str) -> SignatureRow | None: ...
    def insert_signature(self, c: Any, row: dict[str, Any]) -> bool: ...
    def certificate_revisions(self, db: Any, session_id: str, device_id: str) -> list[CertificateRevision]: ...
    def certificate_body(self, db: Any, session_id: str, device_id: str, revision: int | None = None
                         ) -> str | None: ...
    def insert_certificate(self, c: Any, row: dict[str, Any]) -> bool: ...
    def certificate_session(self, db: Any, number: str, device_id: str) -> str | None: ...

    def session_roles(self, c: Any) -> dict[str, str]: ...

    def latest_session_by(self, c: Any, created_by: str, notes: str, reference_id: str
                          ) -> tuple[str, int] | None: ...


class ShipmentStore(Protocol):
    """Shipments, their loggers and signed decisions, and what the trip report and the release checklist read
    about a shipment (coldtrace/store/shipments.py)."""

    def insert_shipment(self, c: Any, row: dict[str, Any]) -> bool: ...
    def update_shipment(self, c: Any, shipment_id: str, **fields: Any) -> None: ...
    def get_shipment(self, db: Any, shipment_id: str) -> dict[str, Any]: ...
    def list_shipments(self, db: Any, *, state: str | None = None, product: str | None = None,
                       lot: str | None = None, device_id: str | None = None, after: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]: ...
    def lot_shipments(self, db: Any, product: str, lot: str) -> list[dict[str, Any]]: ...
    def loggers(self, db: Any, shipment_id: str) -> list[dict[str, Any]]: ...
    def attach_logger(self, c: Any, row: dict[str, Any]) -> bool: ...
    def detach_logger(self, c: Any, shipment_id: str, device_id: str) -> int: ...
    def active_shipments_of_devices(self, db: Any, device_ids: list[str]) -> list[str]: ...
    def shipments_to_tick(self, db: Any) -> list[ShipmentTick]: ...
    def insert_decision(self, c: Any, row: dict[str, Any]) -> None: ...
    def decisions(self, db: Any, shipment_id: str) -> list[dict[str, Any]]: ...


# --- webhook subscriptions, deliveries and their leases, cluster leases (store/webhooks.py, store/cluster.py)

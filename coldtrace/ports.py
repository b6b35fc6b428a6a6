"""Ports: the small contracts the core needs from the outside world. Adapters implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

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


class SessionRow(TypedDict):
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
    def session(self, src: Any, id_hash: str) -> SessionRow | None: ...
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


# --- webhook subscriptions, deliveries and their leases, cluster leases (store/webhooks.py, store/cluster.py)

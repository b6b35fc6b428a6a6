"""People and their credentials: users, API tokens, device tokens, browser sessions, failed sign-ins and the
sign-in throttle's counts (the port ``AuthStore`` in coldtrace/ports.py).

Rows in, typed rows out. The rules (password policy, lockout arithmetic, which role may do what, when a
session is idle) live in ``coldtrace.services.auth`` and ``coldtrace.services.login_guard``; this module only
reads and writes rows. Writers take ``c``, the caller's write transaction (``with db.write() as c``), so a
change and its audit record commit together. Readers take ``src``: a Database, or a transaction to read what
it has written.

Every statement is portable (SQLite >= 3.40 and PostgreSQL 15 run the same text): usernames compare without
regard to case in both (SQLite ``COLLATE NOCASE``, PostgreSQL ``citext``), so ``username = ?`` and
``ON CONFLICT (username)`` mean the same person in both.
"""

from __future__ import annotations

from typing import Any

from coldtrace.ports import (
    BearerRow,
    DeviceTokenInfo,
    FailureCount,
    LoginRow,
    LoginSessionRow,
    ThrottleEntry,
    TokenListing,
    TokenOwner,
    TokenRow,
    UnknownFailures,
    UserRow,
)
from coldtrace.store.db import read_one as _one
from coldtrace.store.db import read_rows as _rows

USER_COLUMNS = "id, username, full_name, role, active, created_at"
TOKEN_COLUMNS = "id, name, user_id, role, created_at, expires_at, revoked_at, last_used_at"  # noqa: S105
_TOKEN_TABLES = {"api": "api_tokens", "device": "device_tokens"}  # the only table names ever formatted in


def _user(row: Any) -> UserRow | None:
    if row is None:
        return None
    return UserRow(id=row["id"], username=row["username"], full_name=row["full_name"], role=row["role"],
                   active=row["active"], created_at=row["created_at"])


# ---------------------------------------------------------------- users

def insert_user(c: Any, *, id: str, username: str, full_name: str, password_hash: str, role: str,  # noqa: A002
                now: int) -> bool:
    """A new user; False (nothing written) when the username is taken, whatever its case."""
    row = c.execute("INSERT INTO users (id, username, full_name, password_hash, role, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?) ON CONFLICT (username) DO NOTHING RETURNING id",
                    (id, username, full_name, password_hash, role, now, now)).fetchone()
    return row is not None


def get_user(src: Any, user_id: str) -> UserRow | None:
    return _user(_one(src, f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)))


def find_user(src: Any, username: str) -> UserRow | None:
    return _user(_one(src, f"SELECT {USER_COLUMNS} FROM users WHERE username = ?", (username,)))


def find_user_by_id_or_name(src: Any, user: str) -> UserRow | None:
    """The user whose id or username is ``user`` (the CLI and the token API accept either)."""
    return _user(_one(src, f"SELECT {USER_COLUMNS} FROM users WHERE id = ? OR username = ?", (user, user)))


def list_users(src: Any) -> list[UserRow]:
    """Every user, by username (case-insensitive order in both dialects)."""
    return [_user(r) for r in _rows(src, f"SELECT {USER_COLUMNS} FROM users ORDER BY username, id")]  # type: ignore[misc]


def active_admins_other_than(c: Any, user_id: str) -> int:
    return int(c.execute("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = 1 AND id != ?",
                         (user_id,)).fetchone()[0])


def update_user(c: Any, user_id: str, *, full_name: str, role: str, active: bool, now: int) -> None:
    c.execute("UPDATE users SET full_name = ?, role = ?, active = ?, updated_at = ? WHERE id = ?",
              (full_name, role, int(active), now, user_id))


def set_password(c: Any, user_id: str, password_hash: str, now: int) -> bool:
    """A new password hash; clears the failure count and any lock. False: no such user."""
    n = c.execute("UPDATE users SET password_hash = ?, updated_at = ?, failed_logins = 0, locked_until = NULL"
                  " WHERE id = ?", (password_hash, now, user_id)).rowcount
    return n > 0


# ---------------------------------------------------------------- sign-in: the lockout count

def login_row(src: Any, username: str) -> LoginRow | None:
    r = _one(src, "SELECT id, username, full_name, role, active, password_hash FROM users WHERE username = ?",
             (username,))
    if r is None:
        return None
    return LoginRow(id=r["id"], username=r["username"], full_name=r["full_name"], role=r["role"],
                    active=r["active"], password_hash=r["password_hash"])


# A failure counts atomically (no read-modify-write in Python, so simultaneous failures all count): the
# max-th consecutive failure locks the account for lock_ms; failures while it is locked are still counted but
# do not extend the lock; the first failure after the lock ended starts a new count. All SET expressions read
# the row as it was before this UPDATE (both dialects).
_FAIL_SQL = """
UPDATE users SET
  failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= :now THEN 1 ELSE failed_logins + 1 END,
  locked_until = CASE
    WHEN locked_until IS NOT NULL AND locked_until > :now THEN locked_until
    WHEN (CASE WHEN locked_until IS NOT NULL AND locked_until <= :now THEN 1 ELSE failed_logins + 1 END) >= :max
      THEN :now + :lock_ms
    ELSE NULL END
WHERE id = :id
RETURNING failed_logins, locked_until
"""
# A right password clears the count, but only on an active account that is not locked at this instant.
_SUCCESS_SQL = """
UPDATE users SET failed_logins = 0, locked_until = NULL
WHERE id = :id AND active = 1 AND (locked_until IS NULL OR locked_until <= :now)
RETURNING id
"""


def record_login_failure(c: Any, user_id: str, now: int, *, max_failures: int, lock_ms: int
                         ) -> FailureCount | None:
    """Count one failed password check of ``user_id``; the count and lock after it (None: no such user)."""
    r = c.execute(_FAIL_SQL, {"id": user_id, "now": now, "max": max_failures, "lock_ms": lock_ms}).fetchone()
    return None if r is None else FailureCount(int(r["failed_logins"]), r["locked_until"])


def clear_login_failures(c: Any, user_id: str, now: int) -> bool:
    """A right password: clear the count. False when the account is inactive or locked at ``now``."""
    return c.execute(_SUCCESS_SQL, {"id": user_id, "now": now}).fetchone() is not None


def replace_password_hash(c: Any, user_id: str, new_hash: str, old_hash: str) -> bool:
    """Store a rehash of the same password, unless the password was changed meanwhile."""
    return c.execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                     (new_hash, user_id, old_hash)).rowcount > 0


# ---------------------------------------------------------------- failed sign-ins of unknown usernames

def note_unknown_failure(c: Any, window_start: int, client: str, now: int) -> None:
    c.execute("INSERT INTO login_failures_unknown (window_start, client, attempts, first_ts, last_ts)"
              " VALUES (?,?,1,?,?) ON CONFLICT (window_start, client) DO UPDATE SET"
              " attempts = login_failures_unknown.attempts + 1, last_ts = excluded.last_ts",
              (window_start, client, now, now))


def ended_unknown_windows(src: Any, window_ms: int, now: int) -> list[int]:
    """Starts of the windows that ended by ``now``, oldest first."""
    return [int(r[0]) for r in _rows(src, "SELECT DISTINCT window_start FROM login_failures_unknown"
                                          " WHERE window_start + ? <= ? ORDER BY window_start", (window_ms, now))]


def unknown_failures(c: Any, window_start: int) -> list[UnknownFailures]:
    """The clients of one window, busiest first (then by address)."""
    return [UnknownFailures(client=r["client"], attempts=int(r["attempts"]), first_ts=r["first_ts"],
                            last_ts=r["last_ts"])
            for r in _rows(c, "SELECT client, attempts, first_ts, last_ts FROM login_failures_unknown"
                              " WHERE window_start = ? ORDER BY attempts DESC, client", (window_start,))]


def delete_unknown_window(c: Any, window_start: int) -> None:
    c.execute("DELETE FROM login_failures_unknown WHERE window_start = ?", (window_start,))


# ---------------------------------------------------------------- API and device tokens

def insert_api_token(c: Any, *, id: str, token_hash: str, name: str, user_id: str | None,  # noqa: A002
                     role: str, created_at: int, expires_at: int | None) -> None:
    c.execute("INSERT INTO api_tokens (id, token_hash, name, user_id, role, created_at, expires_at)"
              " VALUES (?,?,?,?,?,?,?)", (id, token_hash, name, user_id, role, created_at, expires_at))


def insert_device_token(c: Any, *, id: str, token_hash: str, name: str, created_at: int,  # noqa: A002
                        device_ids: list[str]) -> None:
    c.execute("INSERT INTO device_tokens (id, token_hash, name, created_at) VALUES (?,?,?,?)",
              (id, token_hash, name, created_at))
    c.executemany("INSERT INTO device_token_devices (token_id, device_id) VALUES (?,?)",
                  [(id, d) for d in device_ids])


def revoke_token(c: Any, token_id: str, now: int) -> bool:
    """Revoke an API or device token; False when there is no such token not yet revoked."""
    n = c.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                  (now, token_id)).rowcount
    n += c.execute("UPDATE device_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                   (now, token_id)).rowcount
    return n > 0


def _token(r: Any) -> TokenRow:
    return TokenRow(id=r["id"], name=r["name"], user_id=r["user_id"], role=r["role"], created_at=r["created_at"],
                    expires_at=r["expires_at"], revoked_at=r["revoked_at"], last_used_at=r["last_used_at"])


def list_api_tokens(src: Any) -> list[TokenRow]:
    """API tokens (revoked and expired ones too), oldest first."""
    return [_token(r) for r in _rows(src, f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id")]


def list_all_tokens(src: Any) -> list[TokenListing]:
    """API tokens, then device tokens (each oldest first), with their user or devices."""
    out: list[TokenListing] = []
    for r in _rows(src, "SELECT t.id, t.name, t.role, t.created_at, t.expires_at, t.revoked_at, t.last_used_at,"
                        " u.username FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id"
                        " ORDER BY t.created_at, t.id"):
        out.append(TokenListing(id=r["id"], kind="api", name=r["name"], role=r["role"], user=r["username"],
                                devices=None, created_at=r["created_at"], expires_at=r["expires_at"],
                                revoked_at=r["revoked_at"], last_used_at=r["last_used_at"]))
    devices: dict[str, list[str]] = {}
    for r in _rows(src, "SELECT token_id, device_id FROM device_token_devices ORDER BY token_id, device_id"):
        devices.setdefault(r["token_id"], []).append(r["device_id"])
    for r in _rows(src, "SELECT id, name, created_at, revoked_at, last_used_at FROM device_tokens"
                        " ORDER BY created_at, id"):
        out.append(TokenListing(id=r["id"], kind="device", name=r["name"], role="device", user=None,
                                devices=devices.get(r["id"], []), created_at=r["created_at"], expires_at=None,
                                revoked_at=r["revoked_at"], last_used_at=r["last_used_at"]))
    return out


def api_token_id(src: Any, token_hash: str) -> str | None:
    r = _one(src, "SELECT id FROM api_tokens WHERE token_hash = ?", (token_hash,))
    return None if r is None else r["id"]


def token_owner(src: Any, token_id: str) -> TokenOwner | None:
    """Whether ``token_id`` is an API token (and whose) or a device token; None: neither."""
    r = _one(src, "SELECT user_id FROM api_tokens WHERE id = ?", (token_id,))
    if r is not None:
        return TokenOwner("api", r["user_id"])
    if _one(src, "SELECT id FROM device_tokens WHERE id = ?", (token_id,)) is not None:
        return TokenOwner("device", None)
    return None


def bearer_api_token(src: Any, token_hash: str) -> BearerRow | None:
    """The API token with this hash if not revoked (expiry is the caller's rule), with its user."""
    r = _one(src, "SELECT t.id, t.name, t.role, t.user_id, t.created_at, t.expires_at, u.username,"
                  " u.role AS user_role, u.active FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id"
                  " WHERE t.token_hash = ? AND t.revoked_at IS NULL", (token_hash,))
    if r is None:
        return None
    return BearerRow(id=r["id"], name=r["name"], role=r["role"], user_id=r["user_id"], created_at=r["created_at"],
                     expires_at=r["expires_at"], username=r["username"], user_role=r["user_role"],
                     active=r["active"])


def bearer_device_token(src: Any, token_hash: str) -> DeviceTokenInfo | None:
    """The device token with this hash if not revoked, with the devices it may write for."""
    r = _one(src, "SELECT id, name FROM device_tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,))
    if r is None:
        return None
    ids = frozenset(d[0] for d in _rows(src, "SELECT device_id FROM device_token_devices WHERE token_id = ?",
                                        (r["id"],)))
    return DeviceTokenInfo(r["id"], r["name"], ids)


def token_last_used(src: Any, kind: str, token_id: str) -> tuple[bool, int | None]:
    """(the token exists, its last use in epoch ms or None). ``kind``: api or device."""
    r = _one(src, f"SELECT last_used_at FROM {_TOKEN_TABLES[kind]} WHERE id = ?", (token_id,))
    return (False, None) if r is None else (True, r[0])


def touch_token(c: Any, kind: str, token_id: str, now: int) -> None:
    c.execute(f"UPDATE {_TOKEN_TABLES[kind]} SET last_used_at = ? WHERE id = ?", (now, token_id))


# ---------------------------------------------------------------- browser sessions

def insert_session(c: Any, *, id_hash: str, user_id: str, csrf_token: str, created_at: int,
                   expires_at: int) -> None:
    c.execute("INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at)"
              " VALUES (?,?,?,?,?,?)", (id_hash, user_id, csrf_token, created_at, expires_at, created_at))


def session(src: Any, id_hash: str) -> LoginSessionRow | None:
    """A session (revoked or expired ones too: the caller decides) with its user's name, role and state."""
    r = _one(src, "SELECT s.id_hash, s.user_id, s.csrf_token, s.created_at, s.expires_at, s.last_seen_at,"
                  " s.revoked_at, u.username, u.role, u.active FROM sessions s JOIN users u ON u.id = s.user_id"
                  " WHERE s.id_hash = ?", (id_hash,))
    if r is None:
        return None
    return LoginSessionRow(id_hash=r["id_hash"], user_id=r["user_id"], csrf_token=r["csrf_token"],
                      created_at=r["created_at"], expires_at=r["expires_at"], last_seen_at=r["last_seen_at"],
                      revoked_at=r["revoked_at"], username=r["username"], role=r["role"], active=r["active"])


def touch_session(c: Any, id_hash: str, now: int) -> None:
    c.execute("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?", (now, id_hash))


def revoke_session(c: Any, id_hash: str, now: int) -> None:
    c.execute("UPDATE sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL", (now, id_hash))


def revoke_user_sessions(c: Any, user_id: str, now: int) -> int:
    """End every open session of a user (disabled, or a new password); how many were open."""
    return c.execute("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                     (now, user_id)).rowcount


# ---------------------------------------------------------------- start-up checks

def any_active_user(src: Any) -> bool:
    return _one(src, "SELECT 1 FROM users WHERE active = 1 LIMIT 1") is not None


def any_live_api_token(src: Any, now: int) -> bool:
    return _one(src, "SELECT 1 FROM api_tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR"
                     " expires_at > ?) LIMIT 1", (now,)) is not None


def any_user_or_api_token(src: Any) -> bool:
    return (_one(src, "SELECT 1 FROM users LIMIT 1") is not None
            or _one(src, "SELECT 1 FROM api_tokens LIMIT 1") is not None)


# ---------------------------------------------------------------- the sign-in throttle's counts (shared)

def throttle_entries(src: Any, keys: list[str]) -> list[ThrottleEntry]:
    """The stored entries of these keys (absent keys have none)."""
    if not keys:
        return []
    marks = ",".join("?" * len(keys))
    return [ThrottleEntry(r["throttle_key"], int(r["attempts"]), int(r["last_ms"]))
            for r in _rows(src, f"SELECT throttle_key, attempts, last_ms FROM login_throttle"
                                f" WHERE throttle_key IN ({marks}) ORDER BY throttle_key", tuple(keys))]


def throttle_put(c: Any, key: str, attempts: int, last_ms: int) -> None:
    c.execute("INSERT INTO login_throttle (throttle_key, attempts, last_ms) VALUES (?,?,?)"
              " ON CONFLICT (throttle_key) DO UPDATE SET attempts = excluded.attempts, last_ms = excluded.last_ms",
              (key, attempts, last_ms))


def throttle_forget(c: Any, keys: list[str]) -> None:
    if keys:
        c.execute(f"DELETE FROM login_throttle WHERE throttle_key IN ({','.join('?' * len(keys))})", tuple(keys))


def throttle_prune(c: Any, older_than_ms: int) -> int:
    """Forget the keys whose last attempt was at or before ``older_than_ms``; how many."""
    return c.execute("DELETE FROM login_throttle WHERE last_ms <= ?", (older_than_ms,)).rowcount


def throttle_size(src: Any) -> int:
    return int(_one(src, "SELECT COUNT(*) FROM login_throttle")[0])


# ---------------------------------------------------------------- another family's table

def registered_device_ids(src: Any) -> list[str]:
    """Devices that publish themselves (every registered one except gateways), for the broker's ACL.
    NOTE: a ``devices`` statement (the devices family's store); here until that module exists on main."""
    return [r[0] for r in _rows(src, "SELECT id FROM devices WHERE kind != 'gateway' ORDER BY id")]

"""Who is calling: users with argon2 passwords, API tokens, device tokens bound to devices, browser sessions.

Why tokens are SHA-256 and passwords argon2: a token is 256 random bits, so a fast hash cannot be brute
forced and lets every request be looked up by its hash in one index probe; a password is chosen by a person,
so it gets a slow, memory-hard hash. Secrets are shown once, at creation, and never stored.

Every function takes the database and (where time matters) ``now_ms``; nothing here reads a clock unless
the caller leaves ``now_ms`` out.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .clock import SystemClock
from .errors import ConfigError, Conflict, NotFound, StoreError
from .model import DAY, HOUR, MINUTE, stable_id
from .settings import is_loopback_host
from .store.db import Database

log = logging.getLogger(__name__)

Role = Literal["viewer", "qa", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 1, "qa": 2, "admin": 3}
USER_TOKEN_PREFIX = "ct_"  # noqa: S105 (a prefix, not a secret)
DEVICE_TOKEN_PREFIX = "ctd_"  # noqa: S105
USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{2,64}$")
MIN_PASSWORD_LEN = 10
MAX_FAILED_LOGINS = 5
LOCKOUT_MS = 15 * MINUTE
SESSION_IDLE_MS = 30 * MINUTE  # Annex 11 §12: inactive sessions end
SESSION_MAX_MS = 12 * HOUR

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the user does not exist, so a wrong username costs as much as a wrong password."""
    return _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    kind: Literal["user", "token", "device"]
    name: str
    role: Literal["viewer", "qa", "admin", "device"]
    user_id: str | None
    device_ids: frozenset[str] = frozenset()

    def has_role(self, role: str) -> bool:
        """Human roles are ordered viewer < qa < admin; a device token never holds a human role."""
        if self.role == "device":
            return role == "device"
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK.get(role, 99)

    def may_write_device(self, device_id: str) -> bool:
        return self.kind == "device" and device_id in self.device_ids


@dataclass(frozen=True)
class Session:
    token: str  # the cookie value (shown once)
    csrf_token: str
    principal: Principal
    expires_at: int


def _now(now_ms: int | None) -> int:
    return SystemClock().now_ms() if now_ms is None else now_ms


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}: use one of viewer, qa, admin")


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LEN} characters")


# ---------------------------------------------------------------- users

def create_user(db: Database, username: str, full_name: str, password: str, role: str, *,
                actor: str = "system", now_ms: int | None = None) -> str:
    """A new user; returns its id. Raises Conflict if the username is taken, ValueError if invalid."""
    from .audit import record_audit

    if not USERNAME_RE.match(username):
        raise ValueError("username: 2-64 characters of letters, digits, '.', '_', '@', '-'")
    if not full_name.strip():
        raise ValueError("full name is required (it is printed on electronic signatures)")
    _check_role(role)
    check_password_policy(password)
    now = _now(now_ms)
    uid = stable_id("usr", secrets.token_hex(8))
    pw_hash = _hasher.hash(password)
    try:
        with db.write() as c:
            c.execute("INSERT INTO users (id, username, full_name, password_hash, role, created_at,"
                      " updated_at) VALUES (?,?,?,?,?,?,?)",
                      (uid, username, full_name.strip(), pw_hash, role, now, now))
            record_audit(c, actor=actor, action="user.create", entity="user", entity_id=uid, ts=now,
                         new={"username": username, "full_name": full_name.strip(), "role": role})
    except StoreError as exc:
        if isinstance(exc.__cause__, sqlite3.IntegrityError):
            raise Conflict(f"username {username!r} already exists") from exc
        raise
    return uid


def get_user(db: Database, user_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT id, username, full_name, role, active, created_at FROM users WHERE id = ?",
                       (user_id,))
    return dict(row) if row else None


def list_users(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query(
        "SELECT id, username, full_name, role, active, created_at FROM users ORDER BY username")]


def _user_principal(row: sqlite3.Row) -> Principal:
    return Principal("user", row["username"], row["role"], row["id"], frozenset())


def verify_password(db: Database, user_id: str, password: str, now_ms: int | None = None) -> bool:
    """Re-check a signed-in user's password (electronic signature: 21 CFR 11.200)."""
    row = db.query_one("SELECT username FROM users WHERE id = ?", (user_id,))
    if row is None:
        return False
    p = authenticate_password(db, row["username"], password, now_ms=now_ms)
    return p is not None and p.user_id == user_id


def authenticate_password(db: Database, username: str, password: str, *,
                          now_ms: int | None = None) -> Principal | None:
    """Username + password -> Principal, or None. Repeated failures lock the account for a while."""
    now = _now(now_ms)
    row = db.query_one("SELECT * FROM users WHERE username = ?", (username,))
    if row is None:
        try:
            _hasher.verify(_dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            pass
        return None
    if not row["active"] or (row["locked_until"] is not None and row["locked_until"] > now):
        return None
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        failed = row["failed_logins"] + 1
        locked = now + LOCKOUT_MS if failed >= MAX_FAILED_LOGINS else None
        with db.write() as c:
            c.execute("UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                      (0 if locked else failed, locked, row["id"]))
        if locked:
            log.warning("user %s locked for %d min after %d failed logins", username, LOCKOUT_MS // MINUTE,
                        failed)
        return None
    with db.write() as c:
        if _hasher.check_needs_rehash(row["password_hash"]):
            c.execute("UPDATE users SET password_hash = ? WHERE id = ?", (_hasher.hash(password), row["id"]))
        if row["failed_logins"] or row["locked_until"]:
            c.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?", (row["id"],))
    return _user_principal(row)


def set_password(db: Database, user_id: str, password: str, *, actor: str, now_ms: int | None = None) -> None:
    from .audit import record_audit

    check_password_policy(password)
    now = _now(now_ms)
    with db.write() as c:
        n = c.execute("UPDATE users SET password_hash = ?, updated_at = ?, failed_logins = 0,"
                      " locked_until = NULL WHERE id = ?", (_hasher.hash(password), now, user_id)).rowcount
        if not n:
            raise NotFound(f"no user {user_id}")
        c.execute("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                  (now, user_id))
        record_audit(c, actor=actor, action="user.password", entity="user", entity_id=user_id, ts=now,
                     new={"password": "changed"})


# ---------------------------------------------------------------- API and device tokens

def create_token(db: Database, *, user: str | None = None, role: str | None = None, name: str,
                 expires: int | None = None, actor: str = "system", now_ms: int | None = None) -> str:
    """An API token (``ct_...``), returned once. ``user`` is a user id or username; the token's role is
    ``role`` or the user's, never above the user's. ``expires`` is an absolute epoch ms or None."""
    from .audit import record_audit

    now = _now(now_ms)
    user_id = None
    if user is not None:
        row = db.query_one("SELECT id, role FROM users WHERE id = ? OR username = ?", (user, user))
        if row is None:
            raise NotFound(f"no user {user!r}")
        user_id = row["id"]
        role = role or row["role"]
        _check_role(role)
        if ROLE_RANK[role] > ROLE_RANK[row["role"]]:
            raise ValueError(f"a token cannot hold role {role} above its user's role {row['role']}")
    if role is None:
        raise ValueError("a token needs a user or a role")
    _check_role(role)
    if expires is not None and expires <= now:
        raise ValueError("token expiry is in the past")
    raw = USER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = stable_id("tok", secrets.token_hex(8))
    with db.write() as c:
        c.execute("INSERT INTO api_tokens (id, token_hash, name, user_id, role, created_at, expires_at)"
                  " VALUES (?,?,?,?,?,?,?)", (tid, hash_token(raw), name, user_id, role, now, expires))
        record_audit(c, actor=actor, action="token.create", entity="api_token", entity_id=tid, ts=now,
                     new={"name": name, "user_id": user_id, "role": role, "expires_at": expires})
    return raw


def create_device_token(db: Database, device_ids: Any, *, name: str | None = None, actor: str = "system",
                        now_ms: int | None = None) -> str:
    """A device token (``ctd_...``) that may ingest only for ``device_ids``; returned once."""
    from .audit import record_audit

    ids = sorted({str(d) for d in device_ids})
    if not ids:
        raise ValueError("a device token needs at least one device id")
    bad = [d for d in ids if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", d)]
    if bad:
        raise ValueError(f"invalid device id(s): {', '.join(bad)}")
    now = _now(now_ms)
    raw = DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = stable_id("dtk", secrets.token_hex(8))
    with db.write() as c:
        c.execute("INSERT INTO device_tokens (id, token_hash, name, created_at) VALUES (?,?,?,?)",
                  (tid, hash_token(raw), name or ",".join(ids)[:200], now))
        c.executemany("INSERT INTO device_token_devices (token_id, device_id) VALUES (?,?)",
                      [(tid, d) for d in ids])
        record_audit(c, actor=actor, action="device_token.create", entity="device_token", entity_id=tid,
                     ts=now, new={"device_ids": ids})
    return raw


def revoke_token(db: Database, token_id: str, *, actor: str, now_ms: int | None = None) -> None:
    from .audit import record_audit

    now = _now(now_ms)
    with db.write() as c:
        n = c.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                      (now, token_id)).rowcount
        n += c.execute("UPDATE device_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                       (now, token_id)).rowcount
        if not n:
            raise NotFound(f"no active token {token_id}")
        record_audit(c, actor=actor, action="token.revoke", entity="token", entity_id=token_id, ts=now,
                     old={"revoked_at": None}, new={"revoked_at": now})


def list_tokens(db: Database) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query(
        "SELECT id, name, user_id, role, created_at, expires_at, revoked_at, last_used_at FROM api_tokens"
        " ORDER BY created_at")]


def authenticate_bearer(db: Database, raw_token: str, now_ms: int) -> Principal | None:
    """A bearer token (people's ``ct_...`` or devices' ``ctd_...``) -> Principal, or None."""
    if not raw_token or len(raw_token) > 200:
        return None
    h = hash_token(raw_token)
    if raw_token.startswith(DEVICE_TOKEN_PREFIX):
        row = db.query_one("SELECT id, name FROM device_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                           (h,))
        if row is None:
            return None
        ids = frozenset(r[0] for r in db.query(
            "SELECT device_id FROM device_token_devices WHERE token_id = ?", (row["id"],)))
        _touch(db, "device_tokens", row["id"], now_ms)
        return Principal("device", f"device-token:{row['id']}", "device", None, ids)
    if raw_token.startswith(USER_TOKEN_PREFIX):
        row = db.query_one(
            "SELECT t.id, t.name, t.role, t.user_id, t.expires_at, u.username, u.role AS user_role, u.active"
            " FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = ? AND t.revoked_at IS NULL", (h,))
        if row is None or (row["expires_at"] is not None and row["expires_at"] <= now_ms):
            return None
        role = row["role"]
        if row["user_id"] is not None:
            if not row["active"]:
                return None
            # a user's demotion takes effect on the tokens they already hold
            role = min(role, row["user_role"], key=lambda r: ROLE_RANK[r])
            name = row["username"]
        else:
            name = f"token:{row['name']}"
        _touch(db, "api_tokens", row["id"], now_ms)
        return Principal("token", name, role, row["user_id"], frozenset())
    return None


def _touch(db: Database, table: str, row_id: str, now_ms: int) -> None:
    """Record last use at most once a minute per token (keeps reads from turning into writes)."""
    row = db.query_one(f"SELECT last_used_at FROM {table} WHERE id = ?", (row_id,))
    if row is not None and (row[0] is None or now_ms - row[0] >= MINUTE):
        with db.write() as c:
            c.execute(f"UPDATE {table} SET last_used_at = ? WHERE id = ?", (now_ms, row_id))


# ---------------------------------------------------------------- browser sessions

def create_session(db: Database, user_id: str, now_ms: int, *, max_ms: int = SESSION_MAX_MS) -> Session:
    """A cookie session for the QA pages, after authenticate_password succeeded."""
    row = db.query_one("SELECT * FROM users WHERE id = ? AND active = 1", (user_id,))
    if row is None:
        raise NotFound(f"no active user {user_id}")
    raw = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    with db.write() as c:
        c.execute("INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at)"
                  " VALUES (?,?,?,?,?,?)", (hash_token(raw), user_id, csrf, now_ms, now_ms + max_ms, now_ms))
    return Session(raw, csrf, _user_principal(row), now_ms + max_ms)


def authenticate_session(db: Database, raw: str, now_ms: int, *, idle_ms: int = SESSION_IDLE_MS
                         ) -> Session | None:
    """The session of a cookie value, if live (not revoked, not expired, not idle too long)."""
    if not raw or len(raw) > 200:
        return None
    row = db.query_one(
        "SELECT s.*, u.username, u.role, u.active, u.id AS uid FROM sessions s"
        " JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?", (hash_token(raw),))
    if (row is None or row["revoked_at"] is not None or row["expires_at"] <= now_ms
            or now_ms - row["last_seen_at"] > idle_ms or not row["active"]):
        return None
    if now_ms - row["last_seen_at"] >= MINUTE:
        with db.write() as c:
            c.execute("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?", (now_ms, row["id_hash"]))
    p = Principal("user", row["username"], row["role"], row["uid"], frozenset())
    return Session(raw, row["csrf_token"], p, row["expires_at"])


def check_csrf(session: Session, header_value: str | None) -> bool:
    return header_value is not None and hmac.compare_digest(session.csrf_token, header_value)


def revoke_session(db: Database, raw: str, now_ms: int) -> None:
    with db.write() as c:
        c.execute("UPDATE sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL",
                  (now_ms, hash_token(raw)))


# ---------------------------------------------------------------- start-up checks

def has_credentials(db: Database, now_ms: int | None = None) -> bool:
    """Whether anyone can log in: an active user, or a live API token."""
    now = _now(now_ms)
    if db.query_one("SELECT 1 FROM users WHERE active = 1 LIMIT 1"):
        return True
    return db.query_one("SELECT 1 FROM api_tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR"
                        " expires_at > ?) LIMIT 1", (now,)) is not None


def ensure_bootstrap_admin(db: Database, now_ms: int | None = None) -> str | None:
    """First start of ``coldtrace run``: with no user and no token at all, create an admin token (valid a
    day, so a forgotten bootstrap token does not live forever) and return it for printing; else None."""
    now = _now(now_ms)
    if db.query_one("SELECT 1 FROM users LIMIT 1") or db.query_one("SELECT 1 FROM api_tokens LIMIT 1"):
        return None
    token = create_token(db, role="admin", name="bootstrap", expires=now + DAY, actor="system", now_ms=now)
    log.info("created a bootstrap admin token (valid 24 h); create users with `coldtrace user add`")
    return token


is_loopback = is_loopback_host


def check_exposure(settings: Any, db: Database | None = None) -> None:
    """Refuse to listen beyond loopback without credentials: raises ConfigError with what to do.

    Reads ``settings.api.host`` (and ``settings.api.enabled`` if present). Credentials are users or tokens in
    the database, since that is where the API looks them up."""
    api = getattr(settings, "api", None)
    host = getattr(api, "host", None) or getattr(settings, "api_host", None) or "127.0.0.1"
    if getattr(api, "enabled", True) is False or is_loopback(str(host)):
        return
    if db is None or not has_credentials(db):
        raise ConfigError(
            f"the API would listen on {host}, beyond loopback, but no user or API token exists: create one"
            " first (`coldtrace user add --role admin NAME` or `coldtrace token create --role admin`),"
            " or listen on 127.0.0.1")

"""Who is calling: users with argon2 passwords, API tokens, device tokens bound to devices, browser sessions.

Why tokens are SHA-256 and passwords argon2: a token is 256 random bits, so a fast hash cannot be brute
forced and lets every request be looked up by its hash in one index probe; a password is chosen by a person,
so it gets a slow, memory-hard hash. Secrets are shown once, at creation, and never stored.

Every function takes the database and (where time matters) ``now_ms``; nothing here reads a clock unless
the caller leaves ``now_ms`` out.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from coldtrace.core.clock import SystemClock
from coldtrace.core.errors import ConfigError, Conflict, NotFound, RateLimited
from coldtrace.core.model import DAY, HOUR, MINUTE, stable_id
from coldtrace.core.payload import valid_device_id
from coldtrace.ports import TokenListing, TokenOwner, TokenRow, UserRow
from coldtrace.settings import is_loopback_host
from coldtrace.store import auth as store
from coldtrace.store.db import Database

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
# Longest life of an API token made through the API, by the token's role (docs/SECURITY.md says why): the
# more a leaked token can do, the sooner it must be renewed. A personal token never outlives this from its
# creation, whatever its stored expiry says.
TOKEN_MAX_MS: dict[str, int] = {"viewer": 90 * DAY, "qa": 30 * DAY, "admin": 7 * DAY}

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the user does not exist, so a wrong username costs as much as a wrong password."""
    return _hasher.hash(secrets.token_hex(16))  # outside the gate: computed once, at start


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
    from coldtrace.services.audit import record_audit

    if not USERNAME_RE.match(username):
        raise ValueError("username: 2-64 characters of letters, digits, '.', '_', '@', '-'")
    if not full_name.strip():
        raise ValueError("full name is required (it is printed on electronic signatures)")
    _check_role(role)
    check_password_policy(password)
    now = _now(now_ms)
    uid = stable_id("usr", secrets.token_hex(8))
    pw_hash = _hash_password(password)
    with db.write() as c:
        if not store.insert_user(c, id=uid, username=username, full_name=full_name.strip(), password_hash=pw_hash,
                                 role=role, now=now):
            raise Conflict(f"username {username!r} already exists")
        record_audit(c, actor=actor, action="user.create", entity="user", entity_id=uid, ts=now,
                     new={"username": username, "full_name": full_name.strip(), "role": role})
    return uid


def get_user(db: Database, user_id: str) -> UserRow | None:
    return store.get_user(db, user_id)


def list_users(db: Database) -> list[UserRow]:
    return store.list_users(db)


class LastAdmin(Conflict):
    """The change would leave no active admin (nobody could manage users any more)."""

    code = "last_admin"


def find_user(db: Database, username: str) -> UserRow | None:
    return store.find_user(db, username)


def update_user(db: Database, username: str, *, full_name: str | None = None, role: str | None = None,
                active: bool | None = None, actor: str, now_ms: int | None = None) -> list[str]:
    """Change a user's full name, role or active state (None: unchanged), in one transaction; returns the
    fields that changed. Shared by the CLI and the API.

    Audited with the actor: ``user.update`` (full name, role: old and new), ``user.disable`` and
    ``user.enable``. Disabling ends the user's sessions; their personal tokens stop working while they are
    disabled (``authenticate_bearer`` checks the user). A role change takes effect on the next request of
    their sessions and tokens (both read the user's role on every request; a token never holds more than it).
    Raises NotFound, ValueError (bad role or empty name) and LastAdmin when the change would leave no active
    admin."""
    from coldtrace.services.audit import record_audit

    if role is not None:
        _check_role(role)
    if full_name is not None:
        full_name = full_name.strip()
        if not full_name:
            raise ValueError("full name is required (it is printed on electronic signatures)")
    now = _now(now_ms)
    with db.write() as c:
        row = store.find_user(c, username)
        if row is None:
            raise NotFound(f"no user {username!r}")
        old = {"full_name": row["full_name"], "role": row["role"], "active": bool(row["active"])}
        new = {"full_name": full_name if full_name is not None else old["full_name"],
               "role": role if role is not None else old["role"],
               "active": bool(active) if active is not None else old["active"]}
        changed = [k for k in ("full_name", "role", "active") if new[k] != old[k]]
        if not changed:
            return []
        if old["role"] == "admin" and old["active"] and not (new["role"] == "admin" and new["active"]):
            if not store.active_admins_other_than(c, row["id"]):
                what = "disabled" if not new["active"] else "demoted"
                raise LastAdmin(f"{username} is the last active admin and cannot be {what}: enable or add"
                                " another admin first")
        store.update_user(c, row["id"], full_name=new["full_name"], role=new["role"], active=new["active"], now=now)
        details = [k for k in changed if k != "active"]
        if details:
            record_audit(c, actor=actor, action="user.update", entity="user", entity_id=row["id"], ts=now,
                         old={k: old[k] for k in details}, new={k: new[k] for k in details})
        if "active" in changed:
            if not new["active"]:
                store.revoke_user_sessions(c, row["id"], now)
            record_audit(c, actor=actor, action="user.enable" if new["active"] else "user.disable",
                         entity="user", entity_id=row["id"], ts=now, old={"active": old["active"]},
                         new={"active": new["active"]})
    log.info("user %s changed by %s: %s", username, actor, ", ".join(changed))
    return changed


def set_user_active(db: Database, username: str, active: bool, *, actor: str, now_ms: int | None = None) -> bool:
    """Disable or enable a user (see ``update_user``); False when they already were in that state."""
    return bool(update_user(db, username, active=active, actor=actor, now_ms=now_ms))


def _user_principal(row: Any) -> Principal:
    return Principal("user", row["username"], row["role"], row["id"], frozenset())


def verify_password(db: Database, user_id: str, password: str, now_ms: int | None = None) -> bool:
    """Re-check a signed-in user's password (electronic signature: 21 CFR 11.200). A wrong password counts
    toward the same lockout as a failed sign-in; a locked account cannot sign. The caller records the
    failure in the audit trail (with what was being signed)."""
    row = store.get_user(db, user_id)
    if row is None:
        return False
    res = check_login(db, row["username"], password, now_ms=now_ms, record=False)
    return res.principal is not None and res.principal.user_id == user_id


def authenticate_password(db: Database, username: str, password: str, *,
                          now_ms: int | None = None) -> Principal | None:
    """Username + password -> Principal, or None. Repeated failures lock the account for a while."""
    return check_login(db, username, password, now_ms=now_ms, record=False).principal


# ---------------------------------------------------------------- sign-in: bounded hashing, lockout

@dataclass(frozen=True)
class LoginResult:
    """What a sign-in attempt found. Only ``principal`` may reach the caller: whether the user exists or
    is locked is for the audit trail and the log, never for the answer."""

    principal: Principal | None
    user_id: str | None  # the account the username names; None: no such user
    locked: bool = False  # the account is locked (now, after this attempt)


class HashGate:
    """At most ``slots`` argon2 computations at once in this process (each takes ``memory_cost`` KiB, 64 MiB
    by default), and at most ``queue`` more callers waiting for a slot, each at most ``wait_s``. Beyond that
    a caller gets RateLimited (``login_busy``) at once: memory stays bounded whatever the number of requests,
    and threads are not piled up behind the hashing."""

    def __init__(self, slots: int, queue: int | None = None, wait_s: float = 10.0) -> None:
        self.slots = max(1, int(slots))
        self.queue = max(0, int(queue if queue is not None else 4 * self.slots))
        self.wait_s = wait_s
        self._sem = threading.BoundedSemaphore(self.slots)
        self._lock = threading.Lock()
        self._inside = 0  # hashing + waiting
        self.peak = 0  # most computations seen at once (benchmarks)
        self._active = 0

    def _busy(self) -> RateLimited:
        return RateLimited("the server is busy checking other passwords: try again shortly",
                           max(1, round(self.wait_s / 4)), code="login_busy")

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._inside >= self.slots + self.queue:
                raise self._busy()
            self._inside += 1
        try:
            if not self._sem.acquire(timeout=self.wait_s):
                raise self._busy()
            try:
                with self._lock:
                    self._active += 1
                    self.peak = max(self.peak, self._active)
                yield
            finally:
                with self._lock:
                    self._active -= 1
                self._sem.release()
        finally:
            with self._lock:
                self._inside -= 1


def available_memory_bytes() -> int | None:
    """Memory this process may still use: MemAvailable, or less under a cgroup (container) limit."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            raw = f.read().strip()
        if raw.isdigit():
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
                room = int(raw) - int(f.read().strip())
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def default_hash_slots(memory_fraction: float = 0.25, max_slots: int = 8) -> int:
    """Slots sized to memory: a quarter of the available memory in argon2 buffers at most, and no more
    computations than CPUs (more would only queue inside the kernel). At least one."""
    per_hash = _hasher.memory_cost * 1024
    by_cpu = os.cpu_count() or 1
    avail = available_memory_bytes()
    by_mem = max_slots if avail is None else int(avail * memory_fraction) // per_hash
    return max(1, min(by_cpu, by_mem, max_slots))


_gate: HashGate | None = None
_gate_lock = threading.Lock()


def configure_password_hashing(slots: int | None = None, queue: int | None = None, wait_s: float = 10.0
                               ) -> HashGate:
    """(Re)build the process's hash gate; None: sized to memory. Also computes the dummy hash, so the first
    sign-in of an unknown user does not take longer than the others."""
    global _gate
    with _gate_lock:
        _gate = HashGate(slots or default_hash_slots(), queue, wait_s)
    _dummy_hash()
    log.info("password hashing: %d at once (argon2id, %d MiB each), %d more may wait", _gate.slots,
             _hasher.memory_cost // 1024, _gate.queue)
    return _gate


def hash_gate() -> HashGate:
    global _gate
    if _gate is None:
        with _gate_lock:
            if _gate is None:
                _gate = HashGate(default_hash_slots())
    return _gate


def _hash_password(password: str) -> str:
    with hash_gate().slot():
        return _hasher.hash(password)


def _verify_hash(stored: str, password: str) -> bool:
    """One argon2 verification, inside the gate. False for a mismatch or an unusable stored hash."""
    with hash_gate().slot():
        try:
            return _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


# A failure counts atomically in the database (one UPDATE ... RETURNING: simultaneous failures all count, see
# coldtrace.store.auth.record_login_failure): the MAX_FAILED_LOGINS-th consecutive failure locks the account
# for LOCKOUT_MS; failures while it is locked are still counted but do not extend the lock; the first failure
# after the lock ended starts a new count. A right password clears the count, but only on an active account
# that is not locked at that instant.

UNKNOWN_WINDOW_MS = 10 * MINUTE  # failed sign-ins of unknown usernames: one audit record per window


def check_login(db: Database, username: str, password: str, *, now_ms: int | None = None, record: bool = True,
                client: str | None = None) -> LoginResult:
    """A sign-in attempt. Exactly one argon2 verification whatever the account's state (unknown usernames
    are checked against a dummy hash, locked and inactive accounts against their own), so the time taken
    tells nothing. ``record``: write the audit trail (success and failure of a known account: one record
    each; unknown usernames: counted per window, see ``flush_unknown_failures``). Raises RateLimited
    (``login_busy``) when the hashing slots and their queue are full."""
    now = _now(now_ms)
    row = store.login_row(db, username)
    ok = _verify_hash(row["password_hash"] if row is not None else _dummy_hash(), password)
    if row is None:
        if record:
            with db.write() as c:
                _note_unknown_failure(c, client, now)
                flush_unknown_failures(c, now)
        return LoginResult(None, None)
    from coldtrace.services.audit import record_audit

    if ok:
        with db.write() as c:
            granted = store.clear_login_failures(c, row["id"], now)
            if record:
                record_audit(c, actor=row["username"], action="auth.login" if granted else "auth.login_failed",
                             entity="user", entity_id=row["id"], ts=now,
                             new={"client": client} if granted else
                             {"client": client, "reason": "locked" if row["active"] else "inactive"})
        if not granted:
            return LoginResult(None, row["id"], locked=bool(row["active"]))
        if _hasher.check_needs_rehash(row["password_hash"]):
            new_hash = _hash_password(password)
            with db.write() as c:
                store.replace_password_hash(c, row["id"], new_hash, row["password_hash"])
        return LoginResult(_user_principal(row), row["id"])
    with db.write() as c:
        r = store.record_login_failure(c, row["id"], now, max_failures=MAX_FAILED_LOGINS, lock_ms=LOCKOUT_MS)
        locked = r is not None and r.locked_until is not None and r.locked_until > now
        if record and r is not None:
            record_audit(c, actor=row["username"], action="auth.login_failed", entity="user",
                         entity_id=row["id"], ts=now,
                         new={"client": client, "consecutive_failures": r.failed_logins,
                              "locked_until": r.locked_until if locked else None})
    if r is not None and r.failed_logins == MAX_FAILED_LOGINS:
        log.warning("user %s locked for %d min after %d failed password checks", row["username"],
                    LOCKOUT_MS // MINUTE, MAX_FAILED_LOGINS)
    return LoginResult(None, row["id"], locked=locked)


def _note_unknown_failure(c: Any, client: str | None, now: int) -> None:
    from coldtrace.services.login_guard import (
        client_bucket,  # an IPv6 client by its /64: one row per subscriber and window
    )

    store.note_unknown_failure(c, now - now % UNKNOWN_WINDOW_MS, client_bucket(client), now)


def flush_unknown_failures(c: Any, now_ms: int, *, max_clients: int = 20) -> int:
    """Turn each ended window of failed sign-ins for unknown usernames into one audit record (attempts, the
    busiest client addresses); returns how many records were written. Runs inside the caller's write
    transaction; called on such failures and on the clock tick."""
    from coldtrace.services.audit import record_audit

    ended = store.ended_unknown_windows(c, UNKNOWN_WINDOW_MS, now_ms)
    for start in ended:
        rows = store.unknown_failures(c, start)
        record_audit(c, actor="anonymous", action="auth.login_failed_unknown", entity="user", entity_id=None,
                     ts=now_ms, reason="failed sign-ins for usernames that do not exist (counted per window)",
                     new={"window_start": start, "window_end": start + UNKNOWN_WINDOW_MS,
                          "attempts": sum(r["attempts"] for r in rows), "clients_total": len(rows),
                          "clients": {r["client"]: r["attempts"] for r in rows[:max_clients]},
                          "first_ts": min(r["first_ts"] for r in rows), "last_ts": max(r["last_ts"] for r in rows)})
        store.delete_unknown_window(c, start)
    return len(ended)


def set_password(db: Database, user_id: str, password: str, *, actor: str, now_ms: int | None = None) -> None:
    from coldtrace.services.audit import record_audit

    check_password_policy(password)
    now = _now(now_ms)
    pw_hash = _hash_password(password)  # not inside the write transaction: hashing takes a while
    with db.write() as c:
        if not store.set_password(c, user_id, pw_hash, now):
            raise NotFound(f"no user {user_id}")
        store.revoke_user_sessions(c, user_id, now)
        record_audit(c, actor=actor, action="user.password", entity="user", entity_id=user_id, ts=now,
                     new={"password": "changed"})


# ---------------------------------------------------------------- API and device tokens

def create_token(db: Database, *, user: str | None = None, role: str | None = None, name: str,
                 expires: int | None = None, actor: str = "system", now_ms: int | None = None) -> str:
    """An API token (``ct_...``), returned once. ``user`` is a user id or username; the token's role is
    ``role`` or the user's, never above the user's. ``expires`` is an absolute epoch ms or None."""
    from coldtrace.services.audit import record_audit

    now = _now(now_ms)
    user_id = None
    if user is not None:
        row = store.find_user_by_id_or_name(db, user)
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
        store.insert_api_token(c, id=tid, token_hash=hash_token(raw), name=name, user_id=user_id, role=role,
                               created_at=now, expires_at=expires)
        record_audit(c, actor=actor, action="token.create", entity="api_token", entity_id=tid, ts=now,
                     new={"name": name, "user_id": user_id, "role": role, "expires_at": expires})
    return raw


def create_device_token(db: Database, device_ids: Any, *, name: str | None = None, actor: str = "system",
                        now_ms: int | None = None) -> str:
    """A device token (``ctd_...``) that may ingest only for ``device_ids``; returned once."""
    from coldtrace.services.audit import record_audit

    ids = sorted({str(d) for d in device_ids})
    if not ids:
        raise ValueError("a device token needs at least one device id")
    bad = [d for d in ids if not valid_device_id(d)]
    if bad:
        raise ValueError(f"invalid device id(s): {', '.join(bad)}")
    now = _now(now_ms)
    raw = DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    tid = stable_id("dtk", secrets.token_hex(8))
    with db.write() as c:
        store.insert_device_token(c, id=tid, token_hash=hash_token(raw), name=name or ",".join(ids)[:200],
                                  created_at=now, device_ids=ids)
        record_audit(c, actor=actor, action="device_token.create", entity="device_token", entity_id=tid,
                     ts=now, new={"device_ids": ids})
    return raw


def revoke_token(db: Database, token_id: str, *, actor: str, now_ms: int | None = None) -> None:
    from coldtrace.services.audit import record_audit

    now = _now(now_ms)
    with db.write() as c:
        if not store.revoke_token(c, token_id, now):
            raise NotFound(f"no active token {token_id}")
        record_audit(c, actor=actor, action="token.revoke", entity="token", entity_id=token_id, ts=now,
                     old={"revoked_at": None}, new={"revoked_at": now})


class TokenExpiryTooLong(ValueError):
    """The requested expiry is beyond the maximum of the token's role."""

    code = "token_expiry_too_long"


def token_expiry(role: str, requested: int | None, now_ms: int) -> int:
    """The expiry of a new API token of ``role``: ``requested`` (epoch ms) if within the role's maximum,
    the maximum itself if None. Raises TokenExpiryTooLong (or ValueError for a past expiry)."""
    _check_role(role)
    limit = now_ms + TOKEN_MAX_MS[role]
    if requested is None:
        return limit
    if requested <= now_ms:
        raise ValueError("token expiry is in the past")
    if requested > limit:
        raise TokenExpiryTooLong(f"a {role} token lives at most {TOKEN_MAX_MS[role] // DAY} days: expires must be"
                                 f" on or before {_iso(limit)}")
    return requested


def _iso(ms: int) -> str:
    from coldtrace.core.clock import to_iso

    return to_iso(ms) or str(ms)


def list_tokens(db: Database) -> list[TokenRow]:
    return store.list_api_tokens(db)


def list_all_tokens(db: Database) -> list[TokenListing]:
    """API tokens and device tokens, with whom or what each is for (never the secret: only hashes exist)."""
    return store.list_all_tokens(db)


def api_token_id(db: Database, raw_token: str) -> str | None:
    """The id of the API token ``raw_token`` (just created and shown once)."""
    return store.api_token_id(db, hash_token(raw_token))


def token_owner(db: Database, token_id: str) -> TokenOwner | None:
    return store.token_owner(db, token_id)


def authenticate_bearer(db: Database, raw_token: str, now_ms: int) -> Principal | None:
    """A bearer token (people's ``ct_...`` or devices' ``ctd_...``) -> Principal, or None."""
    if not raw_token or len(raw_token) > 200:
        return None
    h = hash_token(raw_token)
    if raw_token.startswith(DEVICE_TOKEN_PREFIX):
        dev = store.bearer_device_token(db, h)
        if dev is None:
            return None
        _touch(db, "device", dev.id, now_ms)
        return Principal("device", f"device-token:{dev.id}", "device", None, dev.device_ids)
    if raw_token.startswith(USER_TOKEN_PREFIX):
        row = store.bearer_api_token(db, h)
        if row is None or (row["expires_at"] is not None and row["expires_at"] <= now_ms):
            return None
        role = row["role"]
        if row["user_id"] is not None:
            if not row["active"]:
                return None
            # a personal token never outlives its role's maximum (also those made before the maximum existed)
            if now_ms >= row["created_at"] + TOKEN_MAX_MS.get(role, 0):
                return None
            # a user's demotion takes effect on the tokens they already hold
            role = min(role, row["user_role"], key=lambda r: ROLE_RANK[r])
            name = row["username"]
        else:
            name = f"token:{row['name']}"
        _touch(db, "api", row["id"], now_ms)
        return Principal("token", name, role, row["user_id"], frozenset())
    return None


def _touch(db: Database, kind: str, token_id: str, now_ms: int) -> None:
    """Record last use at most once a minute per token (keeps reads from turning into writes)."""
    found, last = store.token_last_used(db, kind, token_id)
    if found and (last is None or now_ms - last >= MINUTE):
        with db.write() as c:
            store.touch_token(c, kind, token_id, now_ms)


# ---------------------------------------------------------------- browser sessions

def create_session(db: Database, user_id: str, now_ms: int, *, max_ms: int = SESSION_MAX_MS) -> Session:
    """A cookie session for the QA pages, after authenticate_password succeeded."""
    row = store.get_user(db, user_id)
    if row is None or not row["active"]:
        raise NotFound(f"no active user {user_id}")
    raw = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    with db.write() as c:
        store.insert_session(c, id_hash=hash_token(raw), user_id=user_id, csrf_token=csrf, created_at=now_ms,
                             expires_at=now_ms + max_ms)
    return Session(raw, csrf, _user_principal(row), now_ms + max_ms)


def authenticate_session(db: Database, raw: str, now_ms: int, *, idle_ms: int = SESSION_IDLE_MS
                         ) -> Session | None:
    """The session of a cookie value, if live (not revoked, not expired, not idle too long)."""
    if not raw or len(raw) > 200:
        return None
    row = store.session(db, hash_token(raw))
    if (row is None or row["revoked_at"] is not None or row["expires_at"] <= now_ms
            or now_ms - row["last_seen_at"] > idle_ms or not row["active"]):
        return None
    if now_ms - row["last_seen_at"] >= MINUTE:
        with db.write() as c:
            store.touch_session(c, row["id_hash"], now_ms)
    p = Principal("user", row["username"], row["role"], row["user_id"], frozenset())
    return Session(raw, row["csrf_token"], p, row["expires_at"])


def check_csrf(session: Session, header_value: str | None) -> bool:
    return header_value is not None and hmac.compare_digest(session.csrf_token, header_value)


def revoke_session(db: Database, raw: str, now_ms: int) -> None:
    with db.write() as c:
        store.revoke_session(c, hash_token(raw), now_ms)


# ---------------------------------------------------------------- start-up checks

def has_credentials(db: Database, now_ms: int | None = None) -> bool:
    """Whether anyone can log in: an active user, or a live API token."""
    now = _now(now_ms)
    return store.any_active_user(db) or store.any_live_api_token(db, now)


def ensure_bootstrap_admin(db: Database, now_ms: int | None = None) -> str | None:
    """First start of ``coldtrace run``: with no user and no token at all, create an admin token (valid a
    day, so a forgotten bootstrap token does not live forever) and return it for printing; else None."""
    now = _now(now_ms)
    if store.any_user_or_api_token(db):
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

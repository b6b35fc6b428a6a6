"""Sign-in throttle: per client address and per submitted username, with an exponentially growing delay.

Why a throttle as well as the account lockout: the lockout (``auth.MAX_FAILED_LOGINS``, kept atomically in
the database) protects an *existing* account; it does nothing against a client that sprays passwords over
many usernames, or against a flood of sign-ins that only burns CPU and memory on argon2. The API keeps the
throttle's counts in the database (table ``login_throttle``), so that several API processes on one database
share them; a refused attempt costs one indexed read, an admitted one a small write next to the ones its
sign-in makes anyway. Without a database the counts are kept in this process's memory.

Why attempts are counted when they are *admitted*, not when they have failed: an attempt that is admitted
reserves its place at once, so 40 simultaneous requests cannot all pass a check that only counts failures
already finished (the lockout bypass of issue 14). A successful sign-in gives its reservation back (the
client's) and clears the account's history, so an office of people behind one NAT address is not slowed by
its own good sign-ins.

Keys are the submitted username (case-folded, whether or not such a user exists: the throttle must not tell
the two apart) and the client address as seen through the trusted proxies (``api.trusted_proxies``); an
IPv6 client counts by its /64 (``client_bucket``).

Delay: the first ``free`` unforgiven attempts of a key pass at once; then attempt n waits
``base_ms * 2 ** (n - free)`` after the previous one, at most ``max_delay_ms``. A key that stays quiet for
``forget_ms`` is forgotten. Pure logic: time is an argument.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from coldtrace.core.errors import RateLimited
from coldtrace.core.model import MINUTE
from coldtrace.ports import ThrottleEntry
from coldtrace.store import auth as store

ACCOUNT_FREE = 5  # = auth.MAX_FAILED_LOGINS: the lockout decides, the throttle only spaces what follows
CLIENT_FREE = 20  # one address may carry several people (a depot's NAT)
BASE_DELAY_MS = 1000
MAX_DELAY_MS = 5 * MINUTE
FORGET_MS = 30 * MINUTE
MAX_KEYS = 100_000  # memory bound: the oldest quiet keys go first


def client_bucket(address: str | None) -> str:
    """The unit a client is counted in: an IPv4 address, or an IPv6 /64 (one subscriber usually holds a
    whole /64 and could otherwise spray from 2^64 addresses). IPv4-mapped IPv6 counts as its IPv4."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Admission:
    """An admitted attempt: hand it back to ``LoginThrottle.settle`` with the outcome."""

    client: str
    account: str


def delay_ms(attempts: int, free: int, base_ms: int = BASE_DELAY_MS, max_ms: int = MAX_DELAY_MS) -> int:
    """How long after the previous attempt the next one may come, with ``attempts`` unforgiven ones so far."""
    if attempts < free:
        return 0
    exp = attempts - free
    if exp >= 30:
        return max_ms
    return min(max_ms, base_ms * (1 << exp))


class _Counts(Protocol):
    """The throttle's counts inside one critical section (``LoginThrottle._counts``)."""

    def get(self, keys: list[str]) -> dict[str, ThrottleEntry]: ...
    def put(self, key: str, attempts: int, last_ms: int) -> None: ...
    def drop(self, key: str) -> None: ...
    def prune(self, now_ms: int) -> None: ...


class _MemoryCounts:
    """In this process's memory (``LoginThrottle()`` without a database): least recently attempted first,
    at most ``max_keys`` (the oldest quiet keys go first)."""

    def __init__(self, throttle: LoginThrottle) -> None:
        self.t = throttle

    def get(self, keys: list[str]) -> dict[str, ThrottleEntry]:
        return {k: self.t._keys[k] for k in keys if k in self.t._keys}

    def put(self, key: str, attempts: int, last_ms: int) -> None:
        keys = self.t._keys
        prev = keys.get(key)
        keys[key] = ThrottleEntry(key, attempts, last_ms)
        if prev is None or last_ms != prev.last_ms or attempts > prev.attempts:  # an attempt, not a give-back
            keys.move_to_end(key)

    def drop(self, key: str) -> None:
        self.t._keys.pop(key, None)

    def prune(self, now_ms: int) -> None:
        keys = self.t._keys
        if len(keys) <= self.t.max_keys:
            return
        while keys:  # oldest first: drop forgotten keys, then the least recent ones over the bound
            key, e = next(iter(keys.items()))
            if now_ms - e.last_ms < self.t.forget_ms and len(keys) <= self.t.max_keys:
                break
            del keys[key]


class _StoreCounts:
    """In the database (table ``login_throttle``), inside one write transaction: shared by every API process
    on the database. Keys quiet for ``forget_ms`` are deleted at most once a minute per process."""

    PRUNE_EVERY_MS = MINUTE

    def __init__(self, throttle: LoginThrottle, c: Any) -> None:
        self.t, self.c = throttle, c

    def get(self, keys: list[str]) -> dict[str, ThrottleEntry]:
        return {e.key: e for e in store.throttle_entries(self.c, keys)}

    def put(self, key: str, attempts: int, last_ms: int) -> None:
        store.throttle_put(self.c, key, attempts, last_ms)

    def drop(self, key: str) -> None:
        store.throttle_forget(self.c, [key])

    def prune(self, now_ms: int) -> None:
        if self.t._pruned_ms is None or now_ms - self.t._pruned_ms >= self.PRUNE_EVERY_MS:
            store.throttle_prune(self.c, now_ms - self.t.forget_ms)
            self.t._pruned_ms = now_ms


class LoginThrottle:
    """Thread-safe; one per API process (``for_services``). With ``db`` the counts live in the database and
    every API process on it shares them (a client spraying through several API processes behind a load
    balancer meets one count); without, in this process's memory.

    With the database, an attempt that must wait is refused after a read (no write, no write lock); an
    admitted one re-checks and counts in one write transaction, so simultaneous attempts in several
    processes cannot all pass the same check."""

    def __init__(self, db: Any = None, *, account_free: int = ACCOUNT_FREE, client_free: int = CLIENT_FREE,
                 base_ms: int = BASE_DELAY_MS, max_delay_ms: int = MAX_DELAY_MS, forget_ms: int = FORGET_MS,
                 max_keys: int = MAX_KEYS) -> None:
        self.db = db
        self.account_free, self.client_free = account_free, client_free
        self.base_ms, self.max_delay_ms, self.forget_ms, self.max_keys = base_ms, max_delay_ms, forget_ms, max_keys
        self._keys: OrderedDict[str, ThrottleEntry] = OrderedDict()  # without a database
        self._lock = threading.Lock()
        self._pruned_ms: int | None = None

    @staticmethod
    def account_key(username: str) -> str:
        return "u:" + username.strip().casefold()

    @staticmethod
    def client_key(address: str | None) -> str:
        return "c:" + client_bucket(address)

    @contextlib.contextmanager
    def _counts(self) -> Iterator[_Counts]:
        if self.db is None:
            with self._lock:
                yield _MemoryCounts(self)
        else:
            with self.db.write() as c:
                yield _StoreCounts(self, c)

    def _live(self, e: ThrottleEntry | None, now_ms: int) -> ThrottleEntry | None:
        """The entry unless it was quiet long enough to be forgotten."""
        return None if e is None or now_ms - e.last_ms >= self.forget_ms else e

    def _wait_ms(self, entries: dict[str, ThrottleEntry], ck: str, ak: str, now_ms: int) -> int:
        wait = 0
        for key, free in ((ck, self.client_free), (ak, self.account_free)):
            e = self._live(entries.get(key), now_ms)
            if e is not None:
                wait = max(wait, e.last_ms + delay_ms(e.attempts, free, self.base_ms, self.max_delay_ms) - now_ms)
        return wait

    def _refuse_if_waiting(self, entries: dict[str, ThrottleEntry], ck: str, ak: str, now_ms: int) -> None:
        wait = self._wait_ms(entries, ck, ak, now_ms)
        if wait > 0:
            raise RateLimited("too many sign-in attempts: wait before trying again", math.ceil(wait / 1000),
                              code="login_throttled")

    def admit(self, client: str | None, username: str, now_ms: int) -> Admission:
        """Reserve an attempt for this client and username, or raise RateLimited (code ``login_throttled``)
        with the seconds to wait. A refused attempt is not counted."""
        ck, ak = self.client_key(client), self.account_key(username)
        if self.db is not None:  # most refusals end here, on a read
            self._refuse_if_waiting({e.key: e for e in store.throttle_entries(self.db, [ck, ak])}, ck, ak, now_ms)
        with self._counts() as counts:
            entries = counts.get([ck, ak])
            self._refuse_if_waiting(entries, ck, ak, now_ms)
            for key in (ck, ak):
                e = self._live(entries.get(key), now_ms)
                counts.put(key, 1 if e is None else e.attempts + 1, now_ms)
            counts.prune(now_ms)
        return Admission(ck, ak)

    def settle(self, admission: Admission, *, succeeded: bool = False, tried: bool = True) -> None:
        """The outcome of an admitted attempt. ``succeeded``: the client's reservation is given back and the
        account's history cleared. ``tried=False`` (the password was never checked, e.g. hashing was full):
        both reservations are given back."""
        if tried and not succeeded:
            return
        with self._counts() as counts:
            if succeeded:
                counts.drop(admission.account)
                keys = [admission.client]
            else:
                keys = [admission.client, admission.account]
            entries = counts.get(keys)
            for key in keys:
                e = entries.get(key)
                if e is not None:
                    if e.attempts <= 1:
                        counts.drop(key)
                    else:
                        counts.put(key, e.attempts - 1, e.last_ms)

    def __len__(self) -> int:
        if self.db is not None:
            return store.throttle_size(self.db)
        return len(self._keys)

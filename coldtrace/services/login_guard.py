"""Sign-in throttle: per client address and per submitted username, with an exponentially growing delay.

Why a throttle as well as the account lockout: the lockout (``auth.MAX_FAILED_LOGINS``, kept atomically in
the database) protects an *existing* account; it does nothing against a client that sprays passwords over
many usernames, or against a flood of sign-ins that only burns CPU and memory on argon2. The throttle is
kept in memory (per API process) and needs no write per attempt.

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

import ipaddress
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from coldtrace.core.errors import RateLimited
from coldtrace.core.model import MINUTE

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


@dataclass(slots=True)
class _Entry:
    attempts: int
    last_ms: int


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


class LoginThrottle:
    """Thread-safe; one per API process (``for_services``)."""

    def __init__(self, *, account_free: int = ACCOUNT_FREE, client_free: int = CLIENT_FREE,
                 base_ms: int = BASE_DELAY_MS, max_delay_ms: int = MAX_DELAY_MS, forget_ms: int = FORGET_MS,
                 max_keys: int = MAX_KEYS) -> None:
        self.account_free, self.client_free = account_free, client_free
        self.base_ms, self.max_delay_ms, self.forget_ms, self.max_keys = base_ms, max_delay_ms, forget_ms, max_keys
        self._keys: OrderedDict[str, _Entry] = OrderedDict()  # least recently attempted first
        self._lock = threading.Lock()

    @staticmethod
    def account_key(username: str) -> str:
        return "u:" + username.strip().casefold()

    @staticmethod
    def client_key(address: str | None) -> str:
        return "c:" + client_bucket(address)

    def _entry(self, key: str, now_ms: int) -> _Entry | None:
        e = self._keys.get(key)
        if e is not None and now_ms - e.last_ms >= self.forget_ms:
            del self._keys[key]
            return None
        return e

    def _wait_ms(self, key: str, free: int, now_ms: int) -> int:
        e = self._entry(key, now_ms)
        if e is None:
            return 0
        return max(0, e.last_ms + delay_ms(e.attempts, free, self.base_ms, self.max_delay_ms) - now_ms)

    def admit(self, client: str | None, username: str, now_ms: int) -> Admission:
        """Reserve an attempt for this client and username, or raise RateLimited (code ``login_throttled``)
        with the seconds to wait. A refused attempt is not counted."""
        ck, ak = self.client_key(client), self.account_key(username)
        with self._lock:
            wait = max(self._wait_ms(ck, self.client_free, now_ms), self._wait_ms(ak, self.account_free, now_ms))
            if wait > 0:
                raise RateLimited("too many sign-in attempts: wait before trying again",
                                  math.ceil(wait / 1000), code="login_throttled")
            for key in (ck, ak):
                e = self._entry(key, now_ms)
                if e is None:
                    self._keys[key] = _Entry(1, now_ms)
                else:
                    e.attempts += 1
                    e.last_ms = now_ms
                    self._keys.move_to_end(key)
            self._prune(now_ms)
        return Admission(ck, ak)

    def settle(self, admission: Admission, *, succeeded: bool = False, tried: bool = True) -> None:
        """The outcome of an admitted attempt. ``succeeded``: the client's reservation is given back and the
        account's history cleared. ``tried=False`` (the password was never checked, e.g. hashing was full):
        both reservations are given back."""
        if tried and not succeeded:
            return
        with self._lock:
            if succeeded:
                self._keys.pop(admission.account, None)
                keys = (admission.client,)
            else:
                keys = (admission.client, admission.account)
            for key in keys:
                e = self._keys.get(key)
                if e is not None:
                    e.attempts -= 1
                    if e.attempts <= 0:
                        del self._keys[key]

    def _prune(self, now_ms: int) -> None:
        if len(self._keys) <= self.max_keys:
            return
        while self._keys:  # oldest first: drop forgotten keys, then the least recent ones over the bound
            key, e = next(iter(self._keys.items()))
            if now_ms - e.last_ms < self.forget_ms and len(self._keys) <= self.max_keys:
                break
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)

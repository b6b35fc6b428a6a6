"""Webhooks, the pure part: event bodies, Standard Webhooks v1 signatures, retry schedule, target safety.

Everything here takes its inputs (time, randomness, a resolver) as arguments so the notifier, the API and
the tests share one definition of what is sent and when. See docs/PROTOCOLS.md "Webhooks".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import random
import re
import secrets as _secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from coldtrace.core.clock import to_iso
from coldtrace.core.errors import ColdTraceError
from coldtrace.core.model import HOUR, MINUTE, Alert, stable_id
from coldtrace.store.webhooks import OUTBOX_INSERT_SQL  # noqa: F401 - the pipeline uses webhooks.OUTBOX_INSERT_SQL

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
TIMESTAMP_TOLERANCE_S = 5 * 60  # receivers refuse older/newer messages (replay protection)
DELIVERY_TIMEOUT_S = 10.0

# Delay before attempt n+1 (index 0: the first attempt, immediately). Ten attempts over about 3.3 days.
RETRY_SCHEDULE_MS: tuple[int, ...] = (
    0, 5_000, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 14 * HOUR, 20 * HOUR, 24 * HOUR,
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE_MS)
JITTER = 0.1  # +-10 % so a receiver coming back is not hit by every subscription at the same millisecond
RETRY_AFTER_MIN_MS = 1_000
RETRY_AFTER_MAX_MS = 24 * HOUR

EVENT_TYPES: tuple[str, ...] = (
    "excursion.opened", "excursion.alarm", "excursion.closed", "excursion.revised",
    "device.offline", "device.online", "device.battery_low", "device.sensor_fault", "device.data_conflict",
    "calibration.failed", "calibration.drift", "calibration.due",
    "alert.acknowledged", "alert.escalated", "alert.resolved", "shipment.decided", "webhook.ping",
    "device.data_gap", "broker.messages_dropped",  # coldtrace/services/data_loss.py
)


class WebhookError(ColdTraceError):
    code = "webhook"


class InvalidSecret(WebhookError):
    code = "invalid_secret"


class UnsafeTarget(WebhookError):
    """A subscription URL that ColdTrace refuses to call (scheme, or an internal address)."""

    code = "unsafe_target"


class SignatureError(WebhookError):
    code = "invalid_signature"


# ---------------------------------------------------------------- bodies


def event_id_for(alert_id: str) -> str:
    """The webhook-id of an alert's event: derived from the alert id, so a replayed emit cannot fork it."""
    return stable_id("msg", alert_id)


def event_body(alert: Alert) -> dict[str, Any]:
    """The Standard Webhooks body {"type", "timestamp", "data"} of one alert.

    ``timestamp`` is when the thing happened (the alert's reading time), not when it was sent, so a
    retried delivery carries the same body byte for byte.
    """
    data: dict[str, Any] = dict(alert.data)
    data.update({
        "alert_id": alert.id,
        "severity": alert.severity,
        "device_id": alert.device_id,
        "shipment_id": alert.shipment_id,
        "excursion_id": alert.excursion_id,
        "ts": to_iso(alert.ts),
    })
    return {"type": alert.type, "timestamp": to_iso(alert.ts), "data": data}


def encode_body(body: Mapping[str, Any]) -> str:
    """Canonical JSON text of a body: this exact text is stored, signed and sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=str)


def outbox_row(alert: Alert, created_at: int | None = None) -> tuple[str, str, str, str, int]:
    """(event_id, type, alert_id, payload, created_at) for ``INSERT INTO outbox`` (0001_core.sql).

    ``created_at`` defaults to the alert's time; the pipeline passes its clock's now.
    """
    return (event_id_for(alert.id), alert.type, alert.id, encode_body(event_body(alert)),
            alert.ts if created_at is None else int(created_at))


# ---------------------------------------------------------------- secrets and signatures


def generate_secret(nbytes: int = 32) -> str:
    if not SECRET_MIN_BYTES <= nbytes <= SECRET_MAX_BYTES:
        raise InvalidSecret(f"a secret has {SECRET_MIN_BYTES}-{SECRET_MAX_BYTES} random bytes, not {nbytes}")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (the base64-decoded bytes)."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("a webhook secret is 'whsec_' + base64") from exc
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise InvalidSecret(
            f"a webhook secret has {SECRET_MIN_BYTES}-{SECRET_MAX_BYTES} bytes, not {len(key)}")
    return key


def _as_bytes(body: str | bytes) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def sign(secret: str, msg_id: str, timestamp_s: int, body: str | bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`` signature."""
    signed = f"{msg_id}.{int(timestamp_s)}.".encode() + _as_bytes(body)
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signed_headers(secrets: Sequence[str], msg_id: str, timestamp_s: int, body: str | bytes
                   ) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret (two during a rotation)."""
    if not secrets:
        raise InvalidSecret("no secret to sign with")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp_s)),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp_s, body) for s in secrets),
        "content-type": "application/json",
    }


def verify(secret: str, headers: Mapping[str, str], body: str | bytes, now_s: int,
           tolerance_s: int = TIMESTAMP_TOLERANCE_S) -> None:
    """What a receiver does: raise SignatureError unless one v1 signature matches and the time is fresh."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts_i = int(ts)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    if abs(now_s - ts_i) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, ts_i, body).split(",", 1)[1]
    for part in sigs.split():
        version, _, value = part.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise SignatureError("no matching signature")


# ---------------------------------------------------------------- retries


def next_attempt_delay(attempts_made: int, rng: random.Random | None = None,
                       retry_after_ms: int | None = None) -> int | None:
    """Milliseconds to wait after ``attempts_made`` failed attempts; None when the schedule is exhausted.

    A receiver's Retry-After replaces the scheduled delay (clamped to 1 s .. 24 h) but still counts as an
    attempt, so a receiver answering "Retry-After: 0" forever cannot keep a delivery alive forever.
    """
    if attempts_made >= MAX_ATTEMPTS:
        return None
    if retry_after_ms is not None:
        return min(max(retry_after_ms, RETRY_AFTER_MIN_MS), RETRY_AFTER_MAX_MS)
    base = RETRY_SCHEDULE_MS[max(attempts_made, 0)]
    r = rng.random() if rng is not None else random.random()
    return int(base * (1 - JITTER + 2 * JITTER * r))


def parse_retry_after(value: str | None, now_ms: int) -> int | None:
    """Retry-After (delta seconds or an HTTP date) -> delay in ms, or None when absent or unreadable."""
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    if v.isdigit():
        return int(v) * 1000
    try:
        dt = parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None or dt.tzinfo is None:
        return None
    return max(0, int(dt.timestamp() * 1000) - now_ms)


# ---------------------------------------------------------------- filters


# ---------------------------------------------------------------- target safety
#
# A subscription URL is resolved once per attempt; every address it resolves to is judged (IPv6 transition
# forms by the IPv4 address they carry), and the notifier then connects to exactly those addresses
# (coldtrace.services.delivery pins them), so DNS cannot answer one thing to the check and another to the connect.

Resolver = Callable[[str, int], Iterable[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never a receiver, whatever the allow-list says: link-local (where every cloud's instance metadata
# lives) and the metadata/host-agent addresses outside it.
NEVER_ALLOWED: dict[str, tuple[IPNetwork, ...]] = {
    "link-local (cloud metadata)": (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10")),
    "cloud metadata": (
        ipaddress.ip_network("fd00:ec2::254/128"),  # AWS IMDS over IPv6
        ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
        ipaddress.ip_network("168.63.129.16/32"),  # Azure WireServer / host agent
        ipaddress.ip_network("192.0.0.192/32"),  # Oracle Cloud metadata (OCI)
    ),
    "not a unicast receiver": (
        ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("255.255.255.255/32"),
        ipaddress.ip_network("224.0.0.0/4"), ipaddress.ip_network("::/128"), ipaddress.ip_network("ff00::/8"),
    ),
}
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))  # RFC 6052, 8215
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (but not :: and ::1)
_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)*$")
SETTING = "webhooks.allowed_private_targets"
ENV_SETTING = "COLDTRACE_WEBHOOKS__ALLOWED_PRIVATE_TARGETS"


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries (IPv4-mapped, -compatible, -translated, 6to4,
    NAT64 well-known and local-use prefixes, Teredo client), or None."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    low32 = ipaddress.IPv4Address(addr.packed[12:])
    if any(addr in n for n in _NAT64) or addr in _IPV4_TRANSLATED:
        return low32
    if addr in _IPV4_COMPATIBLE and int(addr) > 1:
        return low32
    return None


def effective_address(addr: IPAddress) -> IPAddress:
    """What an address is judged as: the embedded IPv4 of a transition form, else itself."""
    return embedded_ipv4(addr) or addr


def never_allowed_reason(addr: IPAddress) -> str | None:
    """Why an address can never be a webhook receiver (link-local, metadata, multicast...), or None."""
    for a in {addr, effective_address(addr)}:
        for reason, nets in NEVER_ALLOWED.items():
            if any(a.version == n.version and a in n for n in nets):
                return reason
    return None


def _internal(addr: IPAddress) -> bool:
    a = effective_address(addr)
    return (a.is_private or a.is_loopback or a.is_link_local or a.is_reserved or a.is_multicast
            or a.is_unspecified or not a.is_global)


def _parse_ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope id (fe80::1%eth0) is not part of it


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which internal addresses a webhook may reach: ``webhooks.allowed_private_targets`` parsed.

    Entries are networks in CIDR form (``10.20.0.0/16``, ``::1/128``), single addresses (``127.0.0.1``)
    or host names (``hooks.site.lan``: whatever internal address that exact name resolves to). Public
    addresses are always allowed; link-local and cloud metadata addresses never, whatever the list says.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str] | TargetPolicy | None) -> TargetPolicy:
        if isinstance(entries, TargetPolicy):
            return entries
        nets: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in entries or ():
            entry = str(raw).strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                net = ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                if not _HOST_RE.match(entry):
                    raise ValueError(f"{raw!r} in {SETTING} is neither a network (CIDR), an address nor a host"
                                     " name") from None
                hosts.add(entry)
                continue
            for reason, never in NEVER_ALLOWED.items():
                if any(net.version == n.version and net.subnet_of(n) for n in never):  # type: ignore[arg-type]
                    raise ValueError(f"{raw!r} in {SETTING} is {reason} address space, which is never allowed")
            nets.append(net)
        return cls(tuple(nets), frozenset(hosts))

    def allows(self, host: str, addr: IPAddress) -> bool:
        """May an internal address ``addr`` (reached through URL host ``host``) be called?"""
        if host.lower().rstrip(".") in self.hosts:
            return True
        candidates = {addr, effective_address(addr)}
        return any(a.version == n.version and a in n for a in candidates for n in self.networks)


LOOPBACK_ONLY = TargetPolicy.parse(["127.0.0.0/8", "::1/128"])


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL: connect to exactly ``addresses`` (in this order) and nothing else."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"cannot resolve {host!r}: {exc}") from exc
    out: list[str] = []
    for info in infos:  # getaddrinfo repeats an address once per protocol; keep each once, in its order
        a = str(info[4][0])
        if a not in out:
            out.append(a)
    return out


def check_target(url: str, allowed: Iterable[str] | TargetPolicy | None = None,
                 resolver: Resolver = system_resolver) -> Target:
    """Refuse a URL ColdTrace must not call; return it with the addresses to connect to.

    Only http and https, no credentials in the URL. The host is resolved once and *every* address is
    judged, IPv6 transition forms (6to4, NAT64, IPv4-mapped/-compatible, Teredo) as the IPv4 address they
    carry: a public address is fine; an internal one (private, loopback, CGNAT, reserved...) only if the
    allow-list (``webhooks.allowed_private_targets``) names it or the URL's host; link-local, cloud
    metadata, multicast and unspecified addresses never. The caller must connect to ``addresses`` only.
    """
    policy = TargetPolicy.parse(allowed)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("a webhook URL is http:// or https://")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("a webhook URL needs a host")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in a webhook URL are not allowed; the signature authenticates")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addrs = [str(_parse_ip(host))]
    except ValueError:
        addrs = list(dict.fromkeys(resolver(host, port)))
    if not addrs:
        raise UnsafeTarget(f"{host!r} resolves to no address")
    for a in addrs:
        try:
            ip = _parse_ip(a)
        except ValueError as exc:
            raise UnsafeTarget(f"{host!r} resolves to {a!r}, which is not an address") from exc
        shown = a if effective_address(ip) == ip else f"{a} (= {effective_address(ip)})"
        reason = never_allowed_reason(ip)
        if reason is not None:
            raise UnsafeTarget(f"{host!r} resolves to {shown}: {reason}, never allowed as a webhook target")
        if _internal(ip) and not policy.allows(host, ip):
            raise UnsafeTarget(f"{host!r} resolves to the internal address {shown}; add it (or its network, or"
                               f" the host name) to {SETTING} ({ENV_SETTING}) to allow it")
    return Target(url, parts.scheme, host, port, tuple(addrs))

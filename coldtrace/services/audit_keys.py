"""Keys of the audit trail, kept outside the database (docs/SECURITY.md has the threat model).

- The **HMAC key** (32 random bytes) keys every audit record's hash, so someone holding only the database
  cannot recompute a hash after changing a record. Source: ``COLDTRACE_AUDIT__HMAC_KEY`` (hex or base64,
  at least 32 bytes; with ``COLDTRACE_AUDIT__KEYED_FROM``, default 1) or the file ``audit-hmac.key`` next to
  the database, created 0600 on first use. The file also records ``keyed_from``: the first record id that
  had to be keyed. Records before it are the unkeyed (plain SHA-256) chain written before keying began and
  keep verifying as such; an unkeyed record at or after it is a rewrite.
- The **signing key** (Ed25519) signs the exported audit heads (``coldtrace.services.audit.export_head``). Source:
  ``COLDTRACE_AUDIT__SIGNING_KEY`` (PEM, or base64 of the 32-byte private key) or the file
  ``audit-signing.key`` next to the database, created 0600 on first use; its public key is written beside
  it as ``audit-signing.pub`` and served at ``GET /api/v1/audit/public-key``.

Keys are found from the database file's directory, so every process and command that opens the same
database (collector, API, ``coldtrace user add``) keys the same way. Reading the environment here (rather
than through Settings) is deliberate: ``record_audit`` runs inside any write transaction, wherever the
database was opened; ``Settings.audit`` declares the same variables so they are validated at start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coldtrace.core.errors import ConfigError
from coldtrace.store import audit as audit_store

log = logging.getLogger(__name__)

HMAC_KEY_FILE = "audit-hmac.key"
SIGNING_KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
ENV_HMAC_KEY = "COLDTRACE_AUDIT__HMAC_KEY"
ENV_KEYED_FROM = "COLDTRACE_AUDIT__KEYED_FROM"
ENV_SIGNING_KEY = "COLDTRACE_AUDIT__SIGNING_KEY"
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class HmacKey:
    key: bytes
    key_id: str  # public fingerprint, stored with each keyed record
    keyed_from: int  # records with id >= keyed_from must be keyed
    source: str  # the file or the environment variable

    def __repr__(self) -> str:  # never print the key
        return f"HmacKey(key_id={self.key_id!r}, keyed_from={self.keyed_from}, source={self.source!r})"


def key_fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"coldtrace-audit-hmac-key-id\x00" + key).hexdigest()[:16]


def _decode_secret(raw: str, what: str) -> bytes:
    raw = raw.strip()
    try:
        if len(raw) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in raw):
            value = bytes.fromhex(raw)
        else:  # standard or URL-safe base64, padding optional
            std = raw.replace("-", "+").replace("_", "/")
            value = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
    except (ValueError, binascii.Error):
        raise ConfigError(f"{what}: not hex or base64") from None
    return value


def db_file(conn: Any) -> str:
    """The main database file of a connection ('' for an in-memory database)."""
    return audit_store.database_file(conn)


def _write_new_file(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` atomically and only if it does not exist (another process may race us:
    the first one wins and the others read its file). True if we created it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


_cache: dict[str, HmacKey] = {}
_cache_lock = threading.Lock()
_memory_key: HmacKey | None = None


def hmac_key(conn: Any, *, create: bool = True) -> HmacKey | None:
    """The HMAC key of this connection's database; created (with ``keyed_from`` = the next record id) when
    ``create`` and there is none yet. None only when ``create`` is False and no key exists."""
    global _memory_key
    path = db_file(conn)
    env = os.environ.get(ENV_HMAC_KEY)
    if env:
        key = _decode_secret(env, ENV_HMAC_KEY)
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"{ENV_HMAC_KEY} must hold at least {MIN_KEY_BYTES} bytes (hex or base64)")
        try:
            keyed_from = int(os.environ.get(ENV_KEYED_FROM, "1"))
        except ValueError:
            raise ConfigError(f"{ENV_KEYED_FROM} must be a record id (an integer)") from None
        return HmacKey(key, key_fingerprint(key), keyed_from, ENV_HMAC_KEY)
    if not path:  # an in-memory database (tests): a key for this process only
        with _cache_lock:
            if _memory_key is None:
                k = secrets.token_bytes(32)
                _memory_key = HmacKey(k, key_fingerprint(k), 1, "memory")
            return _memory_key
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None:
            return cached
        file = Path(path).parent / HMAC_KEY_FILE
        if not file.exists():
            if not create:
                return None
            k = secrets.token_bytes(32)
            doc = {"v": 1, "alg": "HMAC-SHA256", "key": base64.b64encode(k).decode(), "key_id": key_fingerprint(k),
                   "keyed_from": audit_store.next_id(conn)}
            if _write_new_file(file, (json.dumps(doc, indent=1) + "\n").encode()):
                log.info("created the audit HMAC key %s (key id %s): records from %d on are keyed; keep a copy"
                         " of this file apart from the database backups", file, doc["key_id"], doc["keyed_from"])
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
            k = base64.b64decode(doc["key"], validate=True)
            key = HmacKey(k, key_fingerprint(k), int(doc["keyed_from"]), str(file))
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ConfigError(f"audit HMAC key file {file} is unreadable: {exc}") from exc
        if len(k) < MIN_KEY_BYTES:
            raise ConfigError(f"audit HMAC key file {file}: the key is shorter than {MIN_KEY_BYTES} bytes")
        _cache[path] = key
        return key


def forget_cached_keys() -> None:
    """Tests: read the key files again."""
    with _cache_lock:
        _cache.clear()


# ---------------------------------------------------------------- Ed25519 signing key of the exported heads

def _load_private(raw: bytes, what: str) -> Ed25519PrivateKey:
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(raw, password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(_decode_secret(raw.decode("ascii"), what))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: not an Ed25519 private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{what}: not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_key(data_dir: Path, *, create: bool = True) -> Ed25519PrivateKey | None:
    """The Ed25519 key that signs exported heads: env ``COLDTRACE_AUDIT__SIGNING_KEY`` or ``audit-signing.key``
    in ``data_dir`` (created 0600, with ``audit-signing.pub`` beside it, when ``create``)."""
    env = os.environ.get(ENV_SIGNING_KEY)
    if env:
        return _load_private(env.encode(), ENV_SIGNING_KEY)
    file = Path(data_dir) / SIGNING_KEY_FILE
    if not file.exists():
        if not create:
            return None
        new = Ed25519PrivateKey.generate()
        pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        if _write_new_file(file, pem):
            log.info("created the audit signing key %s (public key %s)", file,
                     public_fingerprint(new.public_key()))
    try:
        key = _load_private(file.read_bytes(), str(file))
    except OSError as exc:
        raise ConfigError(f"audit signing key {file} is unreadable: {exc.strerror}") from exc
    pub = Path(data_dir) / PUBLIC_KEY_FILE
    if not pub.exists():
        _write_new_file(pub, public_pem(key.public_key()).encode(), 0o644)
    return key


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("the public key is not an Ed25519 key")
    return key


def public_key(data_dir: Path) -> Ed25519PublicKey | None:
    """The public key that checks exported heads: from the signing key if present, else ``audit-signing.pub``."""
    priv = signing_key(data_dir, create=False)
    if priv is not None:
        return priv.public_key()
    pub = Path(data_dir) / PUBLIC_KEY_FILE
    return load_public_key(pub.read_bytes()) if pub.exists() else None


def verify_signature(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
        return True
    except InvalidSignature:
        return False

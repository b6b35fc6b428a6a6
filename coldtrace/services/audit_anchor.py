"""Signed audit heads: the newest audit record's (id, hash), signed with Ed25519, appended to a file kept
outside the database, so that a truncated or rewritten tail is caught even by someone who never copied a
head by hand.

A head record is one JSON line::

    {"v": 1, "id": 812, "hash": "...", "time": 1795687200000, "time_iso": "...", "keyed_from": 1,
     "key_id": "...", "signer": "<public key fingerprint>", "sig": "<base64 Ed25519 signature>"}

The signature covers ``head_message(id, hash, time, keyed_from)``: the canonical JSON of those four fields
with ``v``. ``keyed_from`` (the first record that must carry a keyed hash) is signed so that a rewrite of
the tail into unkeyed records is caught against the head file even with the key given by the environment.

The collector's clock tick (``tick``) exports the head at most every ``audit.head_interval_s`` when it
changed, and summarises failed sign-ins of unknown users. ``verify`` checks the chain with the HMAC key and
against every signed head of the file (each signature first). docs/SECURITY.md has the threat model.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from coldtrace.core.clock import to_iso
from coldtrace.core.errors import ConfigError
from coldtrace.services import audit, audit_keys
from coldtrace.settings import Settings
from coldtrace.store import audit as audit_store
from coldtrace.store import auth as auth_store
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

HEAD_FILE = "audit-heads.jsonl"


def head_file(settings: Settings) -> Path:
    return settings.audit.head_file or settings.data_dir / HEAD_FILE


def head_message(id_: int, hash_: str, time_ms: int, keyed_from: int | None) -> bytes:
    """The bytes an exported head's signature covers."""
    return json.dumps({"v": 1, "id": id_, "hash": hash_, "time": time_ms, "keyed_from": keyed_from},
                      sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_head(key: Ed25519PrivateKey, id_: int, hash_: str, time_ms: int, keyed_from: int | None,
              key_id: str | None) -> dict[str, Any]:
    sig = key.sign(head_message(id_, hash_, time_ms, keyed_from))
    return {"v": 1, "id": id_, "hash": hash_, "time": time_ms, "time_iso": to_iso(time_ms), "keyed_from": keyed_from,
            "key_id": key_id, "signer": audit_keys.public_fingerprint(key.public_key()),
            "sig": base64.b64encode(sig).decode("ascii")}


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, then fsync: the file is only ever appended to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class HeadFile:
    heads: list[audit.KeptHead]
    lines: int
    problem: str | None = None


def read_heads(path: Path, public_key: Ed25519PublicKey | None) -> HeadFile:
    """The signed heads of a head file, each signature checked. A line that does not parse or whose signature
    does not verify is a problem (the file was altered); a last line cut short by a crash is ignored."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return HeadFile([], 0)
    except OSError as exc:
        return HeadFile([], 0, f"the head file {path} cannot be read: {exc.strerror}")
    lines = raw.split(b"\n")
    if lines and lines[-1].strip() and not raw.endswith(b"\n"):
        log.warning("%s: the last line is incomplete (a crash while appending?): ignored", path)
    lines = lines[:-1]  # the text after the last newline (empty, or an incomplete line)
    if lines and public_key is None:
        return HeadFile([], len(lines), f"no public key to check the signed heads of {path}")
    heads: list[audit.KeptHead] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            msg = head_message(int(d["id"]), str(d["hash"]), int(d["time"]), d.get("keyed_from"))
            sig = base64.b64decode(d["sig"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return HeadFile(heads, len(lines), f"{path.name} line {n} is not a head record: the file was altered")
        assert public_key is not None
        if not audit_keys.verify_signature(public_key, sig, msg):
            return HeadFile(heads, len(lines), f"{path.name} line {n}: the signature does not verify with public"
                                               f" key {audit_keys.public_fingerprint(public_key)}: the head"
                                               " record was forged or altered")
        heads.append(audit.KeptHead(int(d["id"]), str(d["hash"]),
                                    f"the signed head exported at {to_iso(int(d['time']))} ({path.name} line {n})",
                                    d.get("keyed_from")))
    return HeadFile(heads, len(lines))


def public_key_for(settings: Settings) -> Ed25519PublicKey | None:
    if settings.audit.public_key_file is not None:
        try:
            return audit_keys.load_public_key(Path(settings.audit.public_key_file).read_bytes())
        except OSError as exc:
            raise ConfigError(f"audit public key {settings.audit.public_key_file}: {exc.strerror}") from exc
    return audit_keys.public_key(settings.data_dir)


def verify(db: Database, settings: Settings, *, known_head: tuple[int, str] | None = None,
           heads_path: Path | None = None, public_key: Ed25519PublicKey | None = None) -> audit.VerifyResult:
    """The chain checked with the HMAC key, against a kept head and every signed head of the head file."""
    path = heads_path or head_file(settings)
    hf = read_heads(path, public_key or public_key_for(settings))
    if hf.problem:
        return audit.VerifyResult(False, 0, audit.GENESIS, None, hf.problem)
    return audit.verify(db, known_head=known_head, heads=hf.heads)


class HeadExporter:
    """Appends a signed head to the head file when the chain has grown, at most every ``interval``; with
    ``audit.head_webhook_url`` also posts it there (heads not yet accepted are retried on each export call,
    oldest first, at most ``MAX_PENDING`` kept)."""

    MAX_PENDING = 1000

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self.path = head_file(settings)
        self.interval_ms = int(settings.audit.head_interval_s * 1000)
        self._last_id: int | None = None
        self._last_ms: int | None = None
        self._lock = threading.Lock()
        self._pending: deque[dict[str, Any]] = deque(maxlen=self.MAX_PENDING)

    def _post_pending(self, now_ms: int) -> None:
        """POST the heads not yet accepted by the webhook, oldest first; stop at the first failure."""
        a = self.settings.audit
        if not a.head_webhook_url:
            return
        import httpx

        from coldtrace.services import webhooks

        while self._pending:
            rec = self._pending[0]
            body = json.dumps({"type": "audit.head", "timestamp": to_iso(now_ms), "data": rec},
                              sort_keys=True, separators=(",", ":"))
            headers = {"content-type": "application/json"}
            if a.head_webhook_secret is not None:
                headers = webhooks.signed_headers([a.head_webhook_secret.get_secret_value()],
                                                  f"audit-head-{rec['id']}", now_ms // 1000, body)
            try:
                r = httpx.post(a.head_webhook_url, content=body, headers=headers,
                               timeout=self.settings.webhooks.timeout_s)
            except httpx.HTTPError as exc:
                log.warning("audit head %d not posted to the head webhook: %s (retried)", rec["id"], exc)
                return
            if not 200 <= r.status_code < 300:
                log.warning("audit head %d not accepted by the head webhook: HTTP %d (retried)", rec["id"],
                            r.status_code)
                return
            self._pending.popleft()

    def _last_exported_id(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                tail = f.read().split(b"\n")
        except FileNotFoundError:
            return 0
        for line in reversed(tail):
            try:
                return int(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0

    def export(self, now_ms: int, *, force: bool = False) -> dict[str, Any] | None:
        """Export the head if it changed (and the interval passed, unless ``force``); the record or None."""
        with self._lock:
            if not force and self._last_ms is not None and now_ms - self._last_ms < self.interval_ms:
                return None
            if self._last_id is None:
                self._last_id = self._last_exported_id()
            rid, h = audit.head(self.db)
            self._last_ms = now_ms
            rec = None
            if rid != 0 and rid != self._last_id:
                key = audit_keys.signing_key(self.settings.data_dir)
                assert key is not None
                hk = audit_keys.hmac_key(self.db.conn(), create=False)
                rec = sign_head(key, rid, h, now_ms, hk.keyed_from if hk else None, hk.key_id if hk else None)
                append_line(self.path, rec)
                self._last_id = rid
                self._pending.append(rec)
                log.debug("exported the signed audit head %d to %s", rid, self.path)
            self._post_pending(now_ms)
        return rec


def for_services(services: Any) -> HeadExporter:
    return services.extras.setdefault("audit_heads", HeadExporter(services.db, services.settings))


def ensure_keys(db: Database, settings: Settings) -> None:
    """First start: the HMAC key and the signing key exist (created 0600 in the data directory if neither the
    environment nor the files give them)."""
    with db.write() as c:
        key = audit_keys.hmac_key(c)
        assert key is not None
        if key.source == audit_keys.ENV_HMAC_KEY and not audit_store.has_keyed_records(c):
            # a database from before keying, first started with a key from the environment: the boundary
            # cannot be written into a key file, the operator states it (once keyed records exist, an
            # unkeyed one after the boundary is for `verify` to report, never a reason to move it)
            last_unkeyed = audit_store.last_unkeyed_id(c)
            if last_unkeyed is not None and last_unkeyed >= key.keyed_from:
                raise ConfigError(
                    f"the audit trail holds {last_unkeyed} records from before keying, and"
                    f" {audit_keys.ENV_HMAC_KEY} is set: set {audit_keys.ENV_KEYED_FROM}={last_unkeyed + 1}"
                    " (the first record this version keys) and keep that number with the key")
    audit_keys.signing_key(settings.data_dir)


def tick(services: Any, now_ms: int | None = None) -> dict[str, Any] | None:
    """Clock tick: summarise ended windows of failed sign-ins for unknown users, export the signed head."""
    from coldtrace.services import auth

    now = services.clock.now_ms() if now_ms is None else now_ms
    if auth_store.ended_unknown_windows(services.db, auth.UNKNOWN_WINDOW_MS, now):
        with services.db.write() as c:
            auth.flush_unknown_failures(c, now)
    return for_services(services).export(now)

"""The audit trail: who changed what, when, from which value to which, and why. Append-only, hash-chained.

Why a hash chain as well as triggers: the triggers stop an UPDATE or DELETE through SQL, but anyone who
can write the database file can drop them. The chain makes such an edit visible afterwards: each row's
hash covers its own content and the previous row's hash, so ``verify`` finds the first row that no longer
matches.

Why the hash is keyed (HMAC-SHA256, ``key_id`` set): with a plain hash, someone holding the database file
can rewrite a tail and recompute every hash after it. The key lives outside the database
(``coldtrace.services.audit_keys``), so without it a recomputed record does not verify. Records written before
keying began (``key_id`` NULL, before the key's ``keyed_from``) keep their plain SHA-256 and still verify;
an unkeyed record from ``keyed_from`` on is a rewrite.

Removing rows from the *end* of the chain leaves a valid shorter chain: only a head kept elsewhere exposes
it. ``head()`` gives it; ``coldtrace.services.audit_anchor`` exports it periodically as a signed record and
``verify(heads=...)`` checks the chain against those records.

``record_audit`` runs inside the caller's write transaction (``with db.write() as conn``), so the change and
its audit row commit together or not at all. The transaction holds the chain while it reads the head and
appends (``coldtrace.store.audit``: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock of the chain), so
writers in several threads or processes append to one chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from coldtrace.ports import AuditRow
from coldtrace.services import audit_keys
from coldtrace.store import audit as store
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

GENESIS = "0" * 64
MAX_PAGE = store.MAX_PAGE


def _canon(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(id_: int, ts: int, actor: str, action: str, entity: str, entity_id: str | None,
             old_value: str | None, new_value: str | None, reason: str | None, prev_hash: str) -> str:
    """The plain SHA-256 of records written before keying began (``key_id`` NULL)."""
    body = json.dumps([id_, ts, actor, action, entity, entity_id, old_value, new_value, reason, prev_hash],
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def keyed_hash(key: bytes, key_id: str, id_: int, ts: int, actor: str, action: str, entity: str,
               entity_id: str | None, old_value: str | None, new_value: str | None, reason: str | None,
               prev_hash: str) -> str:
    """HMAC-SHA256 of a record's content, its link and the key id (records from ``keyed_from`` on)."""
    body = json.dumps([id_, ts, actor, action, entity, entity_id, old_value, new_value, reason, prev_hash, key_id],
                      separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def record_audit(conn: Any, *, actor: str, action: str, entity: str,
                 entity_id: str | None = None, old: Any = None, new: Any = None, reason: str | None = None,
                 ts: int) -> int:
    """Append one audit record inside the caller's transaction; returns its id.

    The head is read and the record appended in that one transaction, which holds the chain exclusively
    (``store.lock_chain``): concurrent writers, in threads or processes, append one after the other to ONE
    chain, never two records on the same head."""
    if not conn.in_transaction:
        raise RuntimeError("record_audit must run inside a write transaction (with db.write() as conn)")
    store.lock_chain(conn)
    last = store.chain_head(conn)
    prev_hash = last[1] if last else GENESIS
    next_id = store.next_id(conn)
    old_s, new_s = _canon(old), _canon(new)
    key = audit_keys.hmac_key(conn)  # created (0600, outside the database) on the first record if needed
    assert key is not None
    h = keyed_hash(key.key, key.key_id, next_id, int(ts), actor, action, entity, entity_id, old_s, new_s, reason,
                   prev_hash)
    store.append(conn, AuditRow(id=next_id, ts=int(ts), actor=actor, action=action, entity=entity,
                                entity_id=entity_id, old_value=old_s, new_value=new_s, reason=reason,
                                prev_hash=prev_hash, hash=h, key_id=key.key_id))
    return next_id


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_hash: str
    first_bad_id: int | None = None
    problem: str | None = None
    head_id: int = 0
    key_id: str | None = None  # the HMAC key the keyed records were checked with
    keyed_from: int | None = None  # records before it are the unkeyed chain from before keying began
    heads_checked: int = 0  # signed exported heads (and kept heads) found in the chain

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head_hash": self.head_hash,
                "first_bad_id": self.first_bad_id, "problem": self.problem, "head_id": self.head_id,
                "key_id": self.key_id, "keyed_from": self.keyed_from, "heads_checked": self.heads_checked}


@dataclass(frozen=True)
class KeptHead:
    """A head kept outside the database: ``id`` must be in the chain with this ``hash``."""

    id: int
    hash: str
    source: str  # for the message: "the kept head", "the signed head exported at ..."
    keyed_from: int | None = None  # signed heads carry the keying boundary too


def parse_head(value: str) -> tuple[int, str]:
    """'ID:HASH' (as `coldtrace audit head` prints it) -> (id, hash). Raises ValueError."""
    rid, sep, h = value.strip().partition(":")
    if not sep or not rid.isdigit() or len(h) != 64 or any(ch not in "0123456789abcdef" for ch in h):
        raise ValueError("a head is ID:HASH, as `coldtrace audit head` prints it")
    return int(rid), h


_KEY_UNSET: Any = object()


def verify(db: Database, chunk: int = 5000, known_head: tuple[int, str] | None = None, *,
           heads: list[KeptHead] | None = None, key: Any = _KEY_UNSET) -> VerifyResult:
    """Walk the chain from the first record; name the first record that no longer matches.

    Keyed records are checked with the HMAC key (``key``; default: the database's key, never created here).
    A chain cut at its end is still a valid chain: a head kept elsewhere (``known_head``, e.g. printed on a
    signed trip report, or the signed ``heads`` exported by ``coldtrace.services.audit_anchor``) must then still be
    in it, unchanged."""
    if key is _KEY_UNSET:
        key = audit_keys.hmac_key(db.conn(), create=False)
    kept: list[KeptHead] = list(heads or [])
    if known_head is not None:
        kept.append(KeptHead(known_head[0], known_head[1], "the kept head"))
    expect: dict[int, KeptHead] = {}
    for k in kept:
        expect.setdefault(k.id, k)
    bounds = [b for b in [key.keyed_from if key else None, *(k.keyed_from for k in kept)] if b is not None]
    keyed_from = min(bounds) if bounds else None
    key_id = key.key_id if key else None

    def result(ok: bool, bad: int | None = None, problem: str | None = None) -> VerifyResult:
        return VerifyResult(ok, checked, prev_hash, bad, problem, expected_id - 1, key_id, keyed_from, seen)

    prev_hash, expected_id, checked, seen = GENESIS, 1, 0, 0
    last_id = 0
    seen_keyed = False
    while True:
        rows = store.records_after(db, last_id, chunk)
        if not rows:
            missing = [k for k in expect.values() if k.id >= expected_id]
            if missing:
                k = max(missing, key=lambda m: m.id)
                return result(False, k.id, f"the chain ends at record {expected_id - 1}, but {k.source} names"
                                           f" record {k.id}: records {expected_id}..{k.id} were removed")
            return result(True)
        for r in rows:
            rid = r["id"]
            if rid != expected_id:
                return result(False, rid, f"record {rid} follows record {expected_id - 1}: records"
                                          f" {expected_id}..{rid - 1} are missing")
            if r["prev_hash"] != prev_hash:
                return result(False, rid, f"record {rid} does not chain to the record before it")
            content = (rid, r["ts"], r["actor"], r["action"], r["entity"], r["entity_id"], r["old_value"],
                       r["new_value"], r["reason"], r["prev_hash"])
            if r["key_id"] is None:
                if seen_keyed or (keyed_from is not None and rid >= keyed_from):
                    return result(False, rid, f"record {rid} carries a plain (unkeyed) hash, but records are keyed"
                                              f" from {keyed_from if keyed_from is not None else 'an earlier record'}"
                                              " on: it was rewritten without the audit key")
                if row_hash(*content) != r["hash"]:
                    return result(False, rid, f"record {rid} was changed after it was written (hash mismatch)")
            else:
                seen_keyed = True
                if key is None:
                    return result(False, rid, f"record {rid} is keyed (key id {r['key_id']}) but the audit HMAC"
                                              " key is missing (audit-hmac.key or COLDTRACE_AUDIT__HMAC_KEY)")
                if r["key_id"] != key.key_id:
                    return result(False, rid, f"record {rid} names audit key {r['key_id']}, not this"
                                              f" installation's key {key.key_id}: written elsewhere or rewritten")
                if not hmac.compare_digest(keyed_hash(key.key, key.key_id, *content), r["hash"]):
                    return result(False, rid, f"record {rid} was changed after it was written (keyed hash"
                                              " mismatch)")
            k = expect.get(rid)
            if k is not None:
                if r["hash"] != k.hash:
                    return result(False, rid, f"record {rid} is not the one {k.source} names: the chain was"
                                              f" rewritten from record {rid} or before")
                seen += 1
            prev_hash, expected_id, checked = r["hash"], rid + 1, checked + 1
        last_id = rows[-1]["id"]


def head(db: Database) -> tuple[int, str]:
    """(id, hash) of the newest record: keep a copy elsewhere to detect a truncated tail."""
    return store.chain_head(db) or (0, GENESIS)


def _decode(row: AuditRow) -> dict[str, Any]:
    d: dict[str, Any] = dict(row)
    for k in ("old_value", "new_value"):
        d[k] = None if d[k] is None else json.loads(d[k])
    return d


def query(db: Database, *, entity: str | None = None, entity_id: str | None = None, actor: str | None = None,
          action: str | None = None, start: int | None = None, end: int | None = None,
          after_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Audit records in id order, keyset-paginated by ``after_id``; at most MAX_PAGE per call."""
    return [_decode(r) for r in store.search(db, entity=entity, entity_id=entity_id, actor=actor, action=action,
                                             start=start, end=end, after_id=after_id, limit=limit)]

"""The audit trail: who changed what, when, from which value to which, and why. Append-only, hash-chained.

Why a hash chain as well as triggers: the triggers stop an UPDATE or DELETE through SQL, but anyone who
can write the database file can drop them. The chain makes such an edit visible afterwards: each row's
hash covers its own content and the previous row's hash, so ``verify`` finds the first row that no longer
matches. (Removing rows from the *end* of the chain is only detectable against a copy of the head hash kept
elsewhere; ``head()`` gives it, for example for a periodic signed export.)

``record_audit`` runs inside the caller's write transaction (``with db.write() as conn``), so the change and
its audit row commit together or not at all; the write lock serialises the chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from .store.db import Database, add_equal_filters

log = logging.getLogger(__name__)

GENESIS = "0" * 64
MAX_PAGE = 1000


def _canon(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(id_: int, ts: int, actor: str, action: str, entity: str, entity_id: str | None,
             old_value: str | None, new_value: str | None, reason: str | None, prev_hash: str) -> str:
    body = json.dumps([id_, ts, actor, action, entity, entity_id, old_value, new_value, reason, prev_hash],
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record_audit(conn: sqlite3.Connection, *, actor: str, action: str, entity: str,
                 entity_id: str | None = None, old: Any = None, new: Any = None, reason: str | None = None,
                 ts: int) -> int:
    """Append one audit record inside the caller's transaction; returns its id."""
    if not conn.in_transaction:
        raise RuntimeError("record_audit must run inside a write transaction (with db.write() as conn)")
    last = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    prev_hash = last[1] if last else GENESIS
    # AUTOINCREMENT never reuses an id; rolled back inserts roll back the sequence too
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()
    next_id = (seq[0] if seq else 0) + 1
    old_s, new_s = _canon(old), _canon(new)
    h = row_hash(next_id, int(ts), actor, action, entity, entity_id, old_s, new_s, reason, prev_hash)
    conn.execute("INSERT INTO audit_log (id, ts, actor, action, entity, entity_id, old_value, new_value,"
                 " reason, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (next_id, int(ts), actor, action, entity, entity_id, old_s, new_s, reason, prev_hash, h))
    return next_id


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_hash: str
    first_bad_id: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head_hash": self.head_hash,
                "first_bad_id": self.first_bad_id, "problem": self.problem}


def parse_head(value: str) -> tuple[int, str]:
    """'ID:HASH' (as `coldtrace audit head` prints it) -> (id, hash). Raises ValueError."""
    rid, sep, h = value.strip().partition(":")
    if not sep or not rid.isdigit() or len(h) != 64 or any(ch not in "0123456789abcdef" for ch in h):
        raise ValueError("a head is ID:HASH, as `coldtrace audit head` prints it")
    return int(rid), h


def verify(db: Database, chunk: int = 5000, known_head: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the chain from the first record; name the first record that no longer matches.

    A chain that was cut at its end is still a valid chain: ``known_head`` (a copy of an earlier
    ``head()`` kept elsewhere, e.g. printed on a signed trip report) must then still be in it, unchanged."""
    prev_hash, expected_id, checked = GENESIS, 1, 0
    last_id = 0
    seen_known = known_head is None
    while True:
        rows = db.query("SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT ?", (last_id, chunk))
        if not rows:
            if not seen_known:
                kid = known_head[0]  # type: ignore[index]
                return VerifyResult(False, checked, prev_hash, kid,
                                    f"the chain ends at record {expected_id - 1}, but the kept head names record"
                                    f" {kid}: records {expected_id}..{kid} were removed")
            return VerifyResult(True, checked, prev_hash)
        for r in rows:
            rid = r["id"]
            if rid != expected_id:
                return VerifyResult(False, checked, prev_hash, rid,
                                    f"record {rid} follows record {expected_id - 1}: records"
                                    f" {expected_id}..{rid - 1} are missing")
            if r["prev_hash"] != prev_hash:
                return VerifyResult(False, checked, prev_hash, rid,
                                    f"record {rid} does not chain to the record before it")
            h = row_hash(rid, r["ts"], r["actor"], r["action"], r["entity"], r["entity_id"], r["old_value"],
                         r["new_value"], r["reason"], r["prev_hash"])
            if h != r["hash"]:
                return VerifyResult(False, checked, prev_hash, rid,
                                    f"record {rid} was changed after it was written (hash mismatch)")
            if known_head is not None and rid == known_head[0]:
                if r["hash"] != known_head[1]:
                    return VerifyResult(False, checked, prev_hash, rid,
                                        f"record {rid} is not the one the kept head names: the chain was"
                                        f" rewritten from record {rid} or before")
                seen_known = True
            prev_hash, expected_id, checked = r["hash"], rid + 1, checked + 1
        last_id = rows[-1]["id"]


def head(db: Database) -> tuple[int, str]:
    """(id, hash) of the newest record: keep a copy elsewhere to detect a truncated tail."""
    r = db.query_one("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
    return (r[0], r[1]) if r else (0, GENESIS)


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for k in ("old_value", "new_value"):
        d[k] = None if d[k] is None else json.loads(d[k])
    return d


def query(db: Database, *, entity: str | None = None, entity_id: str | None = None, actor: str | None = None,
          action: str | None = None, start: int | None = None, end: int | None = None,
          after_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Audit records in id order, keyset-paginated by ``after_id``; at most MAX_PAGE per call."""
    where, params = ["id > ?"], [int(after_id)]
    add_equal_filters(where, params, (("entity", entity), ("entity_id", entity_id), ("actor", actor),
                                      ("action", action)))
    if start is not None:
        where.append("ts >= ?")
        params.append(start)
    if end is not None:
        where.append("ts < ?")
        params.append(end)
    params.append(max(1, min(int(limit), MAX_PAGE)))
    rows = db.query(f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", tuple(params))
    return [_decode(r) for r in rows]

"""The audit trail's rows: an append-only, hash-chained table (the port ``AuditStore`` in coldtrace/ports.py).

The hashing, the keys and the verification are ``coldtrace.services.audit``'s; this module reads and appends
rows. The chain stays ONE chain under concurrent writers because an append reads the head and inserts the
next record in the same write transaction, and that transaction holds the chain exclusively:

- SQLite: ``BEGIN IMMEDIATE`` takes the database's single write lock when the transaction starts, so no
  other connection (thread or process) can append between the read of the head and the insert;
- PostgreSQL: ``lock_chain`` takes a transaction-level advisory lock of the chain's own (released at commit
  or rollback), whether or not ``Database.write()`` also took the cluster-wide write lock; record ids come
  from the head (``MAX(id) + 1``), not from a sequence, whose values a rolled-back transaction would skip and
  leave as a gap that ``verify`` reports as removed records.

The primary key on ``id`` is the last line of defence: two appends that somehow read the same head would
collide on the id instead of forking the chain. The chain's lock is held until the transaction ends, so take
it late (``record_audit`` is usually a transaction's last statement) and take no other lock after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coldtrace.ports import AuditRow
from coldtrace.store.db import add_equal_filters, conn_of
from coldtrace.store.db import read_rows as _rows

COLUMNS = "id, ts, actor, action, entity, entity_id, old_value, new_value, reason, prev_hash, hash, key_id"
# pg_advisory_xact_lock key of the chain ("CtAudit" in ASCII): apart from the cluster-wide write lock's key
CHAIN_LOCK_KEY = 0x4374417564697400
MAX_PAGE = 1000


def _dialect(src: Any) -> str:
    return getattr(src, "dialect", "sqlite")


def _row(r: Any) -> AuditRow:
    return AuditRow(id=int(r["id"]), ts=int(r["ts"]), actor=r["actor"], action=r["action"], entity=r["entity"],
                    entity_id=r["entity_id"], old_value=r["old_value"], new_value=r["new_value"], reason=r["reason"],
                    prev_hash=r["prev_hash"], hash=r["hash"], key_id=r["key_id"])


def lock_chain(c: Any) -> None:
    """Hold the chain for the rest of the caller's write transaction (see the module doc)."""
    if _dialect(c) == "postgresql":
        c.execute("SELECT pg_advisory_xact_lock(?)", (CHAIN_LOCK_KEY,))
    # SQLite: BEGIN IMMEDIATE already holds the only write lock of the database file


def chain_head(src: Any) -> tuple[int, str] | None:
    """(id, hash) of the newest record; None for an empty trail."""
    rows = _rows(src, "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
    return (int(rows[0][0]), rows[0][1]) if rows else None


def next_id(c: Any) -> int:
    """The id the next record gets: ids are contiguous (``verify`` reports a gap as removed records)."""
    if _dialect(c) == "postgresql":
        return int(c.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log").fetchone()[0])
    # AUTOINCREMENT never reuses an id, even of a removed tail (which verify then reports as missing);
    # a rolled-back insert rolls the sequence back too
    seq = c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()
    return (int(seq[0]) if seq else 0) + 1


def append(c: Any, row: AuditRow) -> None:
    c.execute(f"INSERT INTO audit_log ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
              (row["id"], row["ts"], row["actor"], row["action"], row["entity"], row["entity_id"], row["old_value"],
               row["new_value"], row["reason"], row["prev_hash"], row["hash"], row["key_id"]))


def records_after(src: Any, after_id: int, limit: int) -> list[AuditRow]:
    """Up to ``limit`` records with id > ``after_id``, in id order (the walk of ``verify``)."""
    return [_row(r) for r in _rows(src, f"SELECT {COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?",
                                   (int(after_id), int(limit)))]


def search(src: Any, *, entity: str | None = None, entity_id: str | None = None, actor: str | None = None,
           action: str | None = None, start: int | None = None, end: int | None = None, after_id: int = 0,
           limit: int = 100) -> list[AuditRow]:
    """Records in id order, keyset-paginated by ``after_id``, at most MAX_PAGE; filters are exact matches
    (``start <= ts < end``)."""
    where, params = ["id > ?"], [int(after_id)]
    add_equal_filters(where, params, (("entity", entity), ("entity_id", entity_id), ("actor", actor),
                                      ("action", action)))
    if start is not None:
        where.append("ts >= ?")
        params.append(int(start))
    if end is not None:
        where.append("ts < ?")
        params.append(int(end))
    params.append(max(1, min(int(limit), MAX_PAGE)))
    return [_row(r) for r in _rows(src, f"SELECT {COLUMNS} FROM audit_log WHERE {' AND '.join(where)}"
                                        " ORDER BY id LIMIT ?", tuple(params))]


def has_keyed_records(src: Any) -> bool:
    return bool(_rows(src, "SELECT 1 FROM audit_log WHERE key_id IS NOT NULL LIMIT 1"))


def last_unkeyed_id(src: Any) -> int | None:
    """The newest record with a plain (unkeyed) hash, if any."""
    v = _rows(src, "SELECT MAX(id) FROM audit_log WHERE key_id IS NULL")[0][0]
    return None if v is None else int(v)


def database_file(src: Any) -> str:
    """Where the audit keys' files live: next to this file ('' for an in-memory database: no files).
    PostgreSQL: a name in the data directory the process gave its database ('' when it gave none)."""
    conn = conn_of(src)
    if _dialect(conn) == "postgresql":
        local = getattr(conn, "local_dir", None)
        return str(Path(local) / "postgresql") if local else ""
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return row[2] or ""
    return ""

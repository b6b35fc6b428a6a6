"""SQL of the embedded broker's durable inbox (coldtrace/adapters/embedded_broker.py).

The inbox is a SQLite file of its own (``<data_dir>/embedded-inbox.db``), local to the process that runs the
embedded broker, whatever database holds the metadata: it is the broker's write-ahead queue, committed before
each PUBACK, and drained by the pipeline. So these statements are SQLite only, by design.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

_CREATE = ("CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
           " received_at INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL)")


def connect(path: str | Path, synchronous: str, *, wal: bool = True, create: bool = False) -> sqlite3.Connection:
    """A connection to the inbox file in autocommit mode (transactions are explicit); ``wal`` sets the journal
    mode (the writer does, the drainer inherits it from the file); ``create`` makes the table if it is missing."""
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"unknown sqlite synchronous mode {synchronous!r}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    if create:
        conn.execute(_CREATE)
    return conn


def append(conn: sqlite3.Connection, received_at: int, messages: Sequence[tuple[str, bytes]]) -> None:
    """Commit (topic, payload) messages in one transaction (one fsync for all). On failure it is rolled back
    and the ``sqlite3.Error`` raised: none of them is in the inbox."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO inbox (received_at, topic, payload) VALUES (?,?,?)",
                         [(received_at, t, p) for t, p in messages])
        conn.execute("COMMIT")
    except sqlite3.Error:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise


def oldest(conn: sqlite3.Connection, limit: int) -> list[tuple[int, str, bytes]]:
    """Up to ``limit`` messages, oldest first: (id, topic, payload)."""
    return [(r[0], r[1], bytes(r[2]))
            for r in conn.execute("SELECT id, topic, payload FROM inbox ORDER BY id LIMIT ?", (limit,))]


def delete_through(conn: sqlite3.Connection, last_id: int) -> None:
    """Forget every message up to and including ``last_id`` (after the pipeline committed them)."""
    conn.execute("DELETE FROM inbox WHERE id <= ?", (last_id,))


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]

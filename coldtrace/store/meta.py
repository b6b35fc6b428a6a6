"""SQL of the ``meta`` table: small key/value settings the processes share (config version, the broker's
dropped-message counter, the simulator's fleet anchor). Portable: the same statements on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

CONFIG_VERSION = "config_version"  # bumped by triggers on every profile change or assignment (migration 1500)


def get(c: Any, key: str) -> str | None:
    """The value stored under ``key``, or None. ``c``: a connection (``db.conn()``) or the caller's write txn."""
    row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def put(c: Any, key: str, value: str) -> None:
    """Set ``key`` (insert or replace its value), in the caller's transaction."""
    c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
              (key, value))


def add(c: Any, key: str, value: str) -> None:
    """Store a key that must not exist yet (a unique-key violation raises), in the caller's transaction."""
    c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))


def first_with_prefix(c: Any, prefix: str) -> str | None:
    """The value of the first key (in key order) that starts with ``prefix``, or None. The prefix is literal and
    case-sensitive in both dialects (SQLite's LIKE ignores ASCII case, PostgreSQL's does not: no LIKE here)."""
    row = c.execute("SELECT value FROM meta WHERE SUBSTR(key, 1, ?) = ? ORDER BY key LIMIT 1",
                    (len(prefix), prefix)).fetchone()
    return None if row is None else row[0]


def with_prefix(c: Any, prefix: str) -> list[tuple[str, str]]:
    """Every (key, value) whose key starts with ``prefix`` (literal, case-sensitive), in key order."""
    return [(r[0], r[1]) for r in c.execute("SELECT key, value FROM meta WHERE SUBSTR(key, 1, ?) = ? ORDER BY key",
                                            (len(prefix), prefix)).fetchall()]


def ping(c: Any) -> None:
    """A round trip to the database (raises when it does not answer)."""
    c.execute("SELECT 1").fetchone()


# ---- the database itself (coldtrace doctor) ----------------------------------------------------------------

def migrations_applied(c: Any) -> int:
    return c.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]


def sqlite_quick_check(c: Any) -> str:
    """SQLite's ``PRAGMA quick_check``: 'ok' or the first problem found (SQLite only)."""
    return c.execute("PRAGMA quick_check").fetchone()[0]


def sqlite_journal_mode(c: Any) -> str:
    """SQLite's journal mode ('wal' for ColdTrace's store; SQLite only)."""
    return c.execute("PRAGMA journal_mode").fetchone()[0]


def postgresql_server_version(c: Any) -> str:
    """The PostgreSQL server's version (PostgreSQL only)."""
    return c.execute("SHOW server_version").fetchone()[0]

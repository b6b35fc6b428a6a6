"""Reads of the store that processes a test started write to, from outside them: the SQLite file, or under
COLDTRACE_TEST_STORE=postgresql the test's PostgreSQL database (COLDTRACE_STORE__URL, which those processes
inherit). A raw connection, not a ``Database``: opening one would run the migrations next to the processes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any


def store_rows(db_path: str | Path, sql: str, params: tuple = (), *, missing_ok: bool = False) -> list[tuple[Any, ...]]:
    """Rows (plain tuples) of one portable statement (``?`` placeholders). ``missing_ok``: [] while the store
    or its tables do not exist yet (a process still starting)."""
    url = os.environ.get("COLDTRACE_STORE__URL", "")
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            with psycopg.connect(url) as c:
                return [tuple(r) for r in c.execute(sql.replace("%", "%%").replace("?", "%s"), params).fetchall()]
        except psycopg.errors.UndefinedTable:
            if missing_ok:
                return []
            raise
    try:
        with sqlite3.connect(db_path, timeout=30) as c:
            return [tuple(r) for r in c.execute(sql, params).fetchall()]
    except sqlite3.OperationalError:
        if missing_ok:
            return []
        raise


class _PostgresAttacker:
    """An autocommit session of the database's owner speaking the tests' statement text: ``?`` placeholders
    (coldtrace.store.postgres.Connection) and SQLite's ``DROP TRIGGER name`` (PostgreSQL names the table:
    the audit trail's triggers are on ``audit_log``)."""

    def __init__(self, url: str) -> None:
        import psycopg

        from coldtrace.store.postgres import Connection, _row_factory

        self._raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory,
                                    cursor_factory=psycopg.ClientCursor)  # as the store's pool connects
        self._conn = Connection(self._raw)

    def execute(self, sql: str, params: tuple = ()) -> Any:
        words = sql.split()
        if words[:2] == ["DROP", "TRIGGER"] and len(words) == 3:
            sql = f"{sql} ON audit_log"
        return self._conn.execute(sql, params)

    def close(self) -> None:
        self._raw.close()


def attacker_connection(db: Any) -> Any:
    """A connection to ``db`` outside the service, as someone with the database's file (SQLite) or its owner's
    password (PostgreSQL) has: autocommit, rows by index and by name. Each dialect raises its own integrity
    error where a trigger refuses (``coldtrace.store.db.is_integrity_error`` knows both)."""
    if getattr(db, "dialect", "sqlite") == "postgresql":
        return _PostgresAttacker(os.environ["COLDTRACE_STORE__URL"])
    conn = sqlite3.connect(db.path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn

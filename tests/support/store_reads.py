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

"""SQLite database: one file, WAL, per-thread connections, serialised write transactions, migrations.

Migrations are the ``*.sql`` files of ``coldtrace/store/migrations`` applied once each, in name order,
recorded in ``schema_migrations``. A feature adds a file; it never edits an applied one.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from abc import ABCMeta
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldtrace.core.errors import StoreError
from coldtrace.store.urls import redact_url  # noqa: F401 - also offered here

if TYPE_CHECKING:
    from coldtrace.store.postgres import PostgresDatabase

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30  # how long a statement waits for another process's lock before "database is locked"


def _migrations() -> list[tuple[str, str]]:
    pkg = resources.files("coldtrace.store") / "migrations"
    files = sorted((p.name, p.read_text(encoding="utf-8")) for p in pkg.iterdir() if p.name.endswith(".sql"))
    return files


class Database(metaclass=ABCMeta):  # noqa: B024 - concrete; ABCMeta only for the isinstance hook
    """A SQLite file shared by the threads of one process. ``path`` may be ':memory:' only in tests.

    ``PostgresDatabase`` (coldtrace/store/postgres.py) has the same interface and counts as a Database for
    ``isinstance`` (callers that take "a Database or a connection" tell them apart that way)."""

    dialect = "sqlite"
    max_variables = 32_766  # SQLITE_MAX_VARIABLE_NUMBER of SQLite >= 3.32

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        if cls is Database and getattr(other, "dialect", None) == "postgresql" and hasattr(other, "write"):
            return True
        return NotImplemented

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"unknown sqlite synchronous mode {synchronous!r}")
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            with self.write() as conn:
                self._migrate(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000:.0f}")
            conn.execute("PRAGMA cache_size=-65536")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        with self._all_lock:
            self._all.append(conn)
        return conn

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (for reads; writes go through ``write()``)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self._connect()
        return c

    @contextmanager
    def write(self, lock: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), serialised within the process. ``lock`` is
        for PostgreSQL's finer locking (``PostgresDatabase.write``): SQLite always serialises its writers."""
        with self._write_lock:
            c = self.conn()
            if c.in_transaction:  # nested: join the outer transaction
                yield c
                return
            try:
                self._begin(c)
                yield c
                c.execute("COMMIT")
            except BaseException as exc:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database write failed: {exc}") from exc
                raise

    def _begin(self, c: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting for another process's write transaction by trying again every millisecond
        or two, for up to ``BUSY_TIMEOUT_S``.

        Not SQLite's own busy wait: it backs off to sleeps of 25, 50 and then 100 ms, and another process that
        writes back to back (the ingest child draining a backlog: a transaction every ~15 ms, a few ms apart)
        leaves gaps shorter than that, so a small write waiting here (the notifier claiming an alarm's
        webhook) waited hundreds of ms or more. A short, steady retry takes the next gap."""
        c.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            delay = 0.0005
            while True:
                try:
                    c.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
        finally:
            c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000:.0f}")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        try:
            return self.conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT"
                     " NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
        for name, sql in _migrations():
            if name in done:
                continue
            log.info("applying schema migration %s", name)
            for stmt in _split_sql(sql):
                conn.execute(stmt)
            conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", (name,))

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()


def open_database(url_or_path: str | Path, *, synchronous: str = "FULL", pool_size: int = 10,
                  application_name: str = "coldtrace", local_dir: str | Path | None = None
                  ) -> Database | PostgresDatabase:
    """The one place a database is chosen: ``postgresql://user:pass@host:port/db`` (or ``postgres://``)
    opens PostgreSQL, ``sqlite:///path`` or a plain path a SQLite file. ``local_dir``: PostgreSQL only, the
    process's data directory (``PostgresDatabase``)."""
    text = str(url_or_path)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        from coldtrace.store.postgres import PostgresDatabase

        return PostgresDatabase(text, max_size=pool_size, application_name=application_name, local_dir=local_dir)
    if scheme == "sqlite":
        path = text[len("sqlite://"):]  # sqlite:///relative.db, sqlite:////absolute/path.db
        if not path.startswith("/") or len(path) < 2:
            raise StoreError("a sqlite URL names a file: sqlite:////absolute/path.db or sqlite:///relative.db")
        return Database(path[1:], synchronous=synchronous)
    if scheme:
        raise StoreError(f"unknown database URL scheme {scheme!r} (postgresql://... or sqlite:///...)")
    return Database(text, synchronous=synchronous)


def is_integrity_error(exc: BaseException | None) -> bool:
    """A constraint (unique, foreign key, check) refused the statement, in either dialect; ``exc`` may be
    a StoreError whose cause is the driver's error."""
    if isinstance(exc, StoreError):
        exc = exc.__cause__
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.IntegrityError)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement keeps triggers whole)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if not buf and line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def add_equal_filters(where: list[str], params: list[Any], pairs: Iterable[tuple[str, Any]]) -> None:
    """Append ``col = ?`` to ``where`` (and the value to ``params``) for each pair whose value is not None:
    the optional filters of list queries."""
    for col, val in pairs:
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)


MAX_VARIABLES = 32_766  # SQLITE_MAX_VARIABLE_NUMBER of SQLite >= 3.32


def insert_flat(c: Any, head: str, params: list[object], width: int, tail: str = "") -> int:
    """``insert_many`` with the rows' values already in one flat list (``width`` per row)."""
    per = max(1, getattr(c, "max_variables", MAX_VARIABLES) // width)
    one = "(" + ",".join("?" * width) + ")"
    total = 0
    step = per * width
    for i in range(0, len(params), step):
        part = params[i:i + step]
        k = len(part) // width
        sql = _MULTI.get((head, tail, width, k))
        if sql is None:
            sql = f"{head} {','.join([one] * k)} {tail}"
            if k == per:  # the full statement is cached (the remainder's length varies)
                _MULTI[(head, tail, width, k)] = sql
        total += c.execute(sql, part).rowcount
    return total


_MULTI: dict[tuple[str, str, int, int], str] = {}


def insert_many(c: Any, head: str, rows: Sequence[Sequence[object]], width: int,
                tail: str = "") -> int:
    """``head`` VALUES (...),(...) ``tail`` with as many rows per statement as the dialect allows (32,766
    parameters on SQLite, 65,535 on PostgreSQL); returns rowcount.

    Why not executemany: Python's sqlite3 gives up the GIL at every row it steps, and with another busy
    thread in the process (paho's network loop) each row then waits for the GIL again: executemany fell
    from ~330,000 to ~1,300 rows/s in that case, one statement per 8,000 rows stays near full speed."""
    per = max(1, getattr(c, "max_variables", MAX_VARIABLES) // width)
    one = "(" + ",".join("?" * width) + ")"
    total = 0
    full_sql = None
    for i in range(0, len(rows), per):
        part = rows[i:i + per]
        if len(part) == per:
            if full_sql is None:
                full_sql = f"{head} {','.join([one] * per)} {tail}"
            sql = full_sql
        else:
            sql = f"{head} {','.join([one] * len(part))} {tail}"
        total += c.execute(sql, list(chain.from_iterable(part))).rowcount
    return total


def conn_of(db: Any) -> Any:
    """A ``Database`` (either dialect) gives this thread's reading connection; a connection (a transaction) is
    itself. Store functions take either."""
    return db.conn() if hasattr(db, "conn") else db


def read_rows(src: Any, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
    """Rows of a read on a ``Database`` (``query``: errors become StoreError there) or inside the caller's
    transaction (a connection)."""
    if not isinstance(params, dict):
        params = tuple(params)
    if hasattr(src, "query"):
        return list(src.query(sql, params))
    return list(src.execute(sql, params).fetchall())


def read_one(src: Any, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
    """The first row of ``read_rows`` (None when there is none)."""
    rows = read_rows(src, sql, params)
    return rows[0] if rows else None


def marks(n: int) -> str:
    """``?,?,...``: the placeholders of an IN (...) list of ``n`` values."""
    return ",".join("?" * n)

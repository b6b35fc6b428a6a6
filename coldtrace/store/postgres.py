"""PostgreSQL database with the interface of the SQLite ``Database`` (docs/ARCHITECTURE.md, "Store").

Callers keep writing one statement text for both dialects (docs/CONVENTIONS.md, portable SQL): ``?``
placeholders are turned into psycopg's ``%s`` here (a ``?`` inside a string literal stays; a literal ``%`` is
escaped), rows answer ``r[0]`` and ``r["name"]`` like ``sqlite3.Row``, SUM/AVG come back as int/float rather
than Decimal, and Python booleans are stored as the 0/1 integers both schemas use.

Connections come from a psycopg_pool pool. A statement outside ``write()`` runs on its own (autocommit) on a
connection borrowed for that one statement. ``write()`` is one transaction on one connection, and by default
it first takes ``pg_advisory_xact_lock(WRITE_LOCK_KEY)``: writers are serialised across every process on the
database exactly as SQLite's BEGIN IMMEDIATE serialises them on one file, which the read-then-write code (the
audit hash chain, the excursion engine's stored state) relies on. ``write(lock=False)`` leaves it to the
caller (per-device advisory locks, for collectors that ingest side by side).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import ClientCursor
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from coldtrace.core.errors import StoreError
from coldtrace.store.urls import redact_url

log = logging.getLogger(__name__)

# The one cluster-wide key of the write lock ("ColdTrac" in ASCII, a positive int64). Per-device locks of the
# collectors use the two-integer form pg_advisory_xact_lock(int, int), a separate key space.
WRITE_LOCK_KEY = 0x436F6C6454726163
MAX_VARIABLES = 65_535  # parameters of one statement (the protocol's 16-bit count)


# ---- URLs ---------------------------------------------------------------------------------------------------

def _redact_text(text: str, url: str) -> str:
    """``text`` (an error message from libpq) with the URL's password removed wherever it appears."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    out = text.replace(url, redact_url(url))
    if password:
        for p in {password, unquote(password)}:
            out = out.replace(p, "***")
    return out


# ---- statement text ---------------------------------------------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|::|:[A-Za-z_]\w*|\?|%", re.S)


def _translate(sql: str, named: bool) -> str:
    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "?":
            return "%s"
        if tok == "%":
            return "%%"
        if tok[0] == ":" and tok != "::":
            return f"%({tok[1:]})s" if named else tok
        return tok.replace("%", "%%")  # literals, quoted names and comments: only escape %

    return _TOKENS.sub(sub, sql)


_translate_cached = lru_cache(maxsize=2048)(_translate)


def translate(sql: str, named: bool = False) -> str:
    """SQLite's qmark (or ``:name`` with ``named``) statement as a psycopg statement."""
    return _translate_cached(sql, named) if len(sql) < 4096 else _translate(sql, named)


def _prepare(sql: str, params: Sequence[Any] | dict[str, Any] | None) -> tuple[str, Any]:
    if params is None or (not isinstance(params, dict) and len(params) == 0):
        if "?" in sql:  # a placeholder with no value: let the server say so, as sqlite3 would
            return translate(sql), ()
        return sql, None  # nothing to bind: the text goes as it is (a literal % stays single)
    if isinstance(params, dict):
        return translate(sql, named=True), params
    return translate(sql), list(params)


# ---- rows -------------------------------------------------------------------------------------------------

class Row(tuple):
    """A result row: a tuple that is also indexed by column name (case-insensitive), like ``sqlite3.Row``."""

    __slots__ = ()
    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            i = self._index.get(key)
            if i is None:
                i = self._index.get(key.lower())
                if i is None:
                    raise IndexError(f"No item with that key: {key!r}")
            return tuple.__getitem__(self, i)
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    index: dict[str, int] = {}
    for i, n in enumerate(names):
        index.setdefault(n, i)
        index.setdefault(n.lower(), i)
    return type("Row", (Row,), {"__slots__": (), "_names": names, "_index": index})


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    if desc is None:
        return tuple
    return _row_class(tuple(c.name for c in desc))


class _NumericLoader(Loader):
    """numeric (SUM of integers, AVG) as int when integral in form, else float: what SQLite returns."""

    def load(self, data: Any) -> int | float:
        s = bytes(data).decode("ascii")
        if "." in s or "e" in s or "E" in s or s in ("NaN", "Infinity", "-Infinity"):
            return float(s)
        return int(s)


class _BoolAsIntDumper(Dumper):
    """Python booleans as 1/0: both schemas keep flags as INTEGER (docs/CONVENTIONS.md)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


# ---- cursors and connections -------------------------------------------------------------------------------

class Cursor:
    """The result of one statement, read in full (the connection may already serve another statement)."""

    __slots__ = ("_rows", "_pos", "rowcount", "description", "lastrowid")

    def __init__(self, rows: list, rowcount: int, description: Any) -> None:
        self._rows = rows
        self._pos = 0
        self.rowcount = rowcount
        self.description = description
        self.lastrowid = None  # use RETURNING id (docs/CONVENTIONS.md)

    def fetchone(self) -> Any:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list:
        out = self._rows[self._pos:]
        self._pos = len(self._rows)
        return out

    def fetchmany(self, size: int = 1) -> list:
        out = self._rows[self._pos:self._pos + size]
        self._pos += len(out)
        return out

    def __iter__(self) -> Iterator:
        while self._pos < len(self._rows):
            self._pos += 1
            yield self._rows[self._pos - 1]

    def close(self) -> None:
        self._rows = []


class Connection:
    """One pooled connection with sqlite3.Connection's ``execute``/``executemany`` (qmark statements)."""

    dialect = "postgresql"
    max_variables = MAX_VARIABLES

    def __init__(self, raw: psycopg.Connection, local_dir: str | None = None) -> None:
        self.raw = raw
        self.local_dir = local_dir

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = ()) -> Cursor:
        query, args = _prepare(sql, params)
        with self.raw.cursor() as cur:
            cur.execute(query, args)
            rows = cur.fetchall() if cur.description is not None else []
            return Cursor(rows, cur.rowcount, cur.description)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | dict[str, Any]]) -> Cursor:
        items = list(seq)
        if not items:
            return Cursor([], 0, None)
        query = translate(sql, named=isinstance(items[0], dict))
        with self.raw.cursor() as cur:
            cur.executemany(query, items)
            return Cursor([], cur.rowcount, None)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE


class _Autocommit:
    """``db.conn()`` outside a write: each statement borrows a pooled connection for itself (autocommit)."""

    dialect = "postgresql"
    max_variables = MAX_VARIABLES
    in_transaction = False

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self.local_dir = db.local_dir

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = ()) -> Cursor:
        with self._db._borrow() as raw:
            return Connection(raw).execute(sql, params)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | dict[str, Any]]) -> Cursor:
        with self._db._borrow() as raw:
            return Connection(raw).executemany(sql, seq)


def _configure(raw: psycopg.Connection) -> None:
    raw.adapters.register_loader("numeric", _NumericLoader)
    raw.adapters.register_dumper(bool, _BoolAsIntDumper)


def _migrations() -> list[tuple[str, str]]:
    pkg = resources.files("coldtrace.store") / "migrations" / "postgresql"
    return sorted((p.name, p.read_text(encoding="utf-8")) for p in pkg.iterdir() if p.name.endswith(".sql"))


class PostgresDatabase:
    """A PostgreSQL database shared by the threads of one process (and by other processes)."""

    dialect = "postgresql"
    max_variables = MAX_VARIABLES

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 30.0,
                 application_name: str = "coldtrace", local_dir: str | Path | None = None) -> None:
        """``local_dir``: this process's data directory, for the files SQLite keeps next to its database (the
        audit HMAC key file, coldtrace/audit_keys.py); None: none (a per-process key unless the environment
        gives one)."""
        self.url = url
        self.local_dir = str(local_dir) if local_dir is not None else None
        self.path = redact_url(url)  # what logs and messages show of it (the SQLite Database's .path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._auto = _Autocommit(self)
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout_s, open=False,
            name="coldtrace", configure=_configure,
            kwargs={"autocommit": True, "row_factory": _row_factory, "cursor_factory": ClientCursor,
                    "application_name": application_name, "connect_timeout": max(1, int(timeout_s))},
        )
        try:
            # one plain connection first: the pool would retry a wrong password or a refused port until its
            # timeout and then hide why; this says it at once
            psycopg.connect(url, connect_timeout=max(1, int(timeout_s)), application_name=application_name).close()
            self._pool.open(wait=True, timeout=timeout_s)
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise StoreError(f"cannot open database {self.path}: {self._why(exc)}") from None
        try:
            self._migrate()
        except StoreError:
            self._pool.close()
            raise

    def _why(self, exc: BaseException) -> str:
        """An error's text without the password (libpq may echo the connection string)."""
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, PoolTimeout):
            # the pool hides why it could not connect: say what a person should check
            text = f"no connection within {self.timeout_s:g}s (is the server up, the address and password right?)"
        return _redact_text(text, self.url)

    @contextmanager
    def _borrow(self) -> Iterator[psycopg.Connection]:
        tx = getattr(self._local, "tx", None)
        if tx is not None:  # inside this thread's write: read what it has written
            yield tx.raw
            return
        with self._pool.connection() as raw:
            yield raw

    def conn(self) -> Connection | _Autocommit:
        """This thread's write transaction when inside ``write()``, else a statement-at-a-time connection."""
        tx = getattr(self._local, "tx", None)
        return tx if tx is not None else self._auto

    @contextmanager
    def write(self, lock: bool = True) -> Iterator[Connection]:
        """One transaction. ``lock``: first take the cluster-wide write lock (see the module doc). Nested, it
        joins the outer transaction."""
        tx = getattr(self._local, "tx", None)
        if tx is not None:
            yield tx
            return
        try:
            with self._pool.connection() as raw, raw.transaction():
                c = Connection(raw, self.local_dir)
                if lock:
                    raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
                self._local.tx = c
                try:
                    yield c
                finally:
                    self._local.tx = None
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"database write failed: {self._why(exc)}") from exc

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[Row]:
        try:
            return self.conn().execute(sql, params).fetchall()
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"database read failed: {self._why(exc)}") from exc

    def query_one(self, sql: str, params: tuple | list | dict = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def _migrate(self) -> None:
        """Apply the files of migrations/postgresql (the same names as SQLite's) once each, in name order,
        each in the write lock's transaction (so two processes starting at once do not race)."""
        with self.write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY,"
                      " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            done = {r[0] for r in c.execute("SELECT name FROM schema_migrations")}
            for name, sql in _migrations():
                if name in done:
                    continue
                log.info("applying schema migration %s (postgresql)", name)
                c.raw.execute(sql)  # the whole file: PL/pgSQL bodies hold semicolons
                c.execute("INSERT INTO schema_migrations (name) VALUES (?)", (name,))

    def close(self) -> None:
        self._pool.close()

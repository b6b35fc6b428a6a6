"""PostgresDatabase keeps the SQLite Database's contract on a real PostgreSQL (tests/support/postgres.py).

What callers rely on: one statement text for both dialects, rows by index and by name, int/float numbers,
``write()`` as one transaction that joins when nested and rolls back on error (a StoreError), writers
serialised across processes like SQLite's BEGIN IMMEDIATE, migrations giving the same schema as SQLite's,
and no password in any message.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest

from coldtrace.core.errors import StoreError
from coldtrace.store.db import Database, insert_many, is_integrity_error, open_database
from coldtrace.store.postgres import WRITE_LOCK_KEY, PostgresDatabase, redact_url, translate

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "coldtrace" / "store" / "migrations"


@pytest.fixture
def pg(postgres_url):
    db = open_database(postgres_url, pool_size=4)
    yield db
    db.close()


def test_qmark_statements_are_translated_but_not_inside_literals():
    assert translate("SELECT ? FROM t WHERE a = ? AND b LIKE '%?%'") == \
        "SELECT %s FROM t WHERE a = %s AND b LIKE '%%?%%'"
    assert translate("SELECT 'it''s ?' , \"odd?name\" -- a ? here\n, x % 2 FROM t WHERE c = ?") == \
        "SELECT 'it''s ?' , \"odd?name\" -- a ? here\n, x %% 2 FROM t WHERE c = %s"
    assert translate("SELECT * FROM t WHERE a = :a AND b = :b_2", named=True) == \
        "SELECT * FROM t WHERE a = %(a)s AND b = %(b_2)s"


def test_open_database_chooses_the_dialect_from_the_url(tmp_path, pg):
    assert pg.dialect == "postgresql" and isinstance(pg, PostgresDatabase)
    lite = open_database(f"sqlite:///{tmp_path}/x.db")  # sqlite:////absolute/path
    try:
        assert lite.dialect == "sqlite" and lite.path == f"{tmp_path}/x.db"
    finally:
        lite.close()
    with pytest.raises(StoreError, match="unknown database URL scheme 'mysql'"):
        open_database("mysql://u:p@h/db")


def test_rows_numbers_blobs_and_booleans_read_back_like_sqlite(pg, tmp_path):
    lite = Database(tmp_path / "same.db")
    try:
        for db in (pg, lite):
            with db.write() as c:
                c.execute("INSERT INTO quarantine (received_at, source, reason, detail, raw, reading_index)"
                          " VALUES (?,?,?,?,?,?)", (1_795_687_200_000, "mqtt", "bad_json", "50% of it", b"\x00\xff",
                                                    True))
                c.execute("INSERT INTO quarantine (received_at, source, reason, detail) VALUES (?,?,?,?)",
                          (1_795_687_200_001, "http", "bad_json", "it's ?"))
            row = db.query_one("SELECT COUNT(*) AS n, SUM(received_at) AS total, AVG(received_at) AS mean"
                               " FROM quarantine WHERE detail LIKE ? OR detail = 'it''s ?'",
                               ("50%",))
            assert (row[0], row["n"], row["N"]) == (2, 2, 2)
            assert type(row["total"]) is int and row["total"] == 2 * 1_795_687_200_000 + 1
            assert type(row["mean"]) is float and row["mean"] == 1_795_687_200_000.5
            assert db.query_one("SELECT raw FROM quarantine WHERE raw IS NOT NULL")["raw"] == b"\x00\xff"
            assert dict(zip(row.keys(), row, strict=True))["n"] == 2
            one = db.query_one("SELECT id, reading_index FROM quarantine WHERE source = ?", ("mqtt",))
            ident, flag = one  # rows unpack like tuples
            assert flag == 1 and isinstance(ident, int)
            assert db.query("SELECT id FROM quarantine WHERE source = :s", {"s": "http"})[0][0] == ident + 1
    finally:
        lite.close()


def test_write_is_one_transaction_nested_writes_join_and_errors_roll_back(pg):
    with pg.write() as c:
        c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1"))
        with pg.write() as inner:
            assert inner is c
            inner.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("b", "2"))
        # reads inside the write see its own rows (as on SQLite's one connection per thread)
        assert pg.query_one("SELECT value FROM meta WHERE key = ?", ("b",))[0] == "2"
    with pytest.raises(StoreError, match="duplicate key") as err, pg.write() as c:
        c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("c", "3"))
        c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "again"))
    assert is_integrity_error(err.value)
    assert pg.query_one("SELECT COUNT(*) FROM meta WHERE key IN ('a', 'b', 'c')")[0] == 2
    with pytest.raises(StoreError, match="database read failed"):
        pg.query("SELECT nope FROM meta")


def test_append_only_tables_refuse_changes_as_an_integrity_error(pg):
    with pg.write() as c:
        c.execute("INSERT INTO audit_log (ts, actor, action, entity, prev_hash, hash) VALUES (?,?,?,?,?,?)",
                  (1, "system", "test", "x", "0" * 64, "1" * 64))
    for stmt in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(StoreError, match="audit_log is append-only") as err, pg.write() as c:
            c.execute(stmt)
        assert is_integrity_error(err.value)
    assert pg.query_one("SELECT actor FROM audit_log")["actor"] == "system"


def test_usernames_are_unique_without_regard_to_case_as_on_sqlite(pg):
    sql = ("INSERT INTO users (id, username, full_name, password_hash, role, created_at, updated_at)"
           " VALUES (?, ?, 'A B', 'x', 'qa', 1, 1)")
    with pg.write() as c:
        c.execute(sql, ("u1", "Alice"))
    with pytest.raises(StoreError) as err, pg.write() as c:
        c.execute(sql, ("u2", "alice"))
    assert is_integrity_error(err.value)
    assert pg.query_one("SELECT id FROM users WHERE username = ?", ("ALICE",))[0] == "u1"


def test_insert_many_uses_postgresqls_larger_statements(pg):
    rows = [(f"k{i}", str(i)) for i in range(70_001)]  # 140,002 parameters: three statements of 32,767 rows
    with pg.write() as c:
        assert insert_many(c, "INSERT INTO meta (key, value) VALUES", rows, 2,
                           "ON CONFLICT (key) DO NOTHING") == 70_001
        assert insert_many(c, "INSERT INTO meta (key, value) VALUES", rows[:10], 2,
                           "ON CONFLICT (key) DO NOTHING") == 0
    assert pg.query_one("SELECT COUNT(*) FROM meta WHERE key LIKE 'k%'")[0] == 70_001


def test_writers_in_different_processes_are_serialised_like_sqlite(postgres_url):
    """Two PostgresDatabase objects (as two processes would have) doing read-then-write on one counter: with
    the write lock no increment is lost, as with SQLite's BEGIN IMMEDIATE (READ COMMITTED alone loses some)."""
    dbs = [open_database(postgres_url, pool_size=4) for _ in range(2)]
    try:
        with dbs[0].write() as c:
            c.execute("INSERT INTO meta (key, value) VALUES ('counter', '0')")

        def bump(db: PostgresDatabase) -> None:
            for _ in range(40):
                with db.write() as c:
                    n = int(c.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()[0])
                    c.execute("UPDATE meta SET value = ? WHERE key = 'counter'", (str(n + 1),))

        threads = [threading.Thread(target=bump, args=(db,)) for db in dbs for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert dbs[1].query_one("SELECT value FROM meta WHERE key = 'counter'")[0] == "160"
    finally:
        for db in dbs:
            db.close()


def test_a_second_writer_waits_for_the_first_unless_it_opts_out(postgres_url):
    a, b = (open_database(postgres_url, pool_size=2) for _ in range(2))
    holding, release, b_done = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with a.write() as c:
            c.execute("INSERT INTO meta (key, value) VALUES ('first', '1')")
            holding.set()
            release.wait(30)

    def second() -> None:
        with b.write() as c:
            c.execute("INSERT INTO meta (key, value) VALUES ('second', '2')")
        b_done.set()

    ta = threading.Thread(target=first)
    ta.start()
    try:
        assert holding.wait(10)
        tb = threading.Thread(target=second)
        tb.start()
        # the second writer is seen waiting on the write lock (an advisory lock not granted)
        deadline = time.monotonic() + 10
        while a.query_one("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                          " AND objid = ?", (WRITE_LOCK_KEY & 0xFFFFFFFF,))[0] != 1:
            assert time.monotonic() < deadline, "the second writer never waited on the write lock"
            time.sleep(0.02)
        assert not b_done.is_set()
        with b.write(lock=False) as c:  # opted out (finer locks): it does not wait
            c.execute("INSERT INTO meta (key, value) VALUES ('unlocked', '3')")
        release.set()
        tb.join(10)
        assert b_done.is_set()
        assert {r[0] for r in b.query("SELECT key FROM meta WHERE key IN ('first', 'second', 'unlocked')")} == \
            {"first", "second", "unlocked"}
    finally:
        release.set()
        ta.join(10)
        a.close()
        b.close()


def test_the_password_never_appears_in_messages(postgres_server, postgres_url):
    wrong = postgres_url.replace(postgres_server.app_password, "s3cret-Not-Right")
    with pytest.raises(StoreError) as err:
        open_database(wrong)
    text = str(err.value)
    assert "s3cret-Not-Right" not in text and "password authentication failed" in text
    assert "coldtrace:***@127.0.0.1" in text
    assert redact_url("postgresql://u:p%40ss@db:5432/ct") == "postgresql://u:***@db:5432/ct"
    assert redact_url("postgresql://db/ct") == "postgresql://db/ct"
    db = open_database(postgres_url)
    try:
        assert db.path == redact_url(postgres_url) and postgres_server.app_password not in db.path
    finally:
        db.close()


def _sqlite_schema(path: Path) -> dict[str, tuple[set[str], tuple[str, ...], set[tuple[str, ...]]]]:
    db = Database(path)
    db.close()
    conn = sqlite3.connect(path)
    out = {}
    try:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                     " AND name NOT LIKE 'sqlite_%'"):
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            uniques = set()
            for idx in conn.execute(f"PRAGMA index_list({table})").fetchall():
                if idx[2] and idx[3] != "pk":  # unique, not the primary key
                    uniques.add(tuple(r[2] for r in conn.execute(f"PRAGMA index_info({idx[1]})")))
            out[table] = ({r[1] for r in info}, pk, uniques)
    finally:
        conn.close()
    return out


def _postgres_schema(url: str) -> dict[str, tuple[set[str], tuple[str, ...], set[tuple[str, ...]]]]:
    PostgresDatabase(url).close()
    out = {}
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            cols = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name = %s", (table,))}
            pk, uniques = (), set()
            for primary, names in conn.execute(
                    "SELECT i.indisprimary, array_agg(a.attname ORDER BY k.n) FROM pg_index i"
                    " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true"
                    " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                    " WHERE i.indrelid = %s::regclass AND i.indisunique GROUP BY i.indexrelid, i.indisprimary",
                    (table,)):
                if primary:
                    pk = tuple(names)
                else:
                    uniques.add(tuple(names))
            out[table] = (cols, pk, uniques)
    return out


def test_both_dialects_have_the_same_migrations_and_the_same_schema(tmp_path, postgres_url):
    lite = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert lite == sorted(p.name for p in (MIGRATIONS / "postgresql").glob("*.sql"))
    a, b = _sqlite_schema(tmp_path / "schema.db"), _postgres_schema(postgres_url)
    assert sorted(a) == sorted(b)
    for table in a:
        assert a[table][0] == b[table][0], f"columns of {table}"
        assert a[table][1:] == b[table][1:], f"primary and unique keys of {table}"
    assert len(a) > 30 and "readings" in a and a["readings"][1] == ("device_id", "ts")
    again = PostgresDatabase(postgres_url)  # opening again applies nothing twice
    try:
        assert sorted(r[0] for r in again.query("SELECT name FROM schema_migrations")) == lite
    finally:
        again.close()

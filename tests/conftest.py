from __future__ import annotations

import os

import pytest

from tests.support.services import Influxd, Mosquitto


@pytest.fixture
def mosquitto(tmp_path):
    """A fresh Mosquitto on a free loopback port for one test."""
    d = tmp_path / "mosquitto"
    d.mkdir()
    broker = Mosquitto(d)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxd_server(tmp_path_factory):
    """One influxd for the session (tests use their own database: see ``influx_db``)."""
    server = Influxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx_db(influxd_server, request):
    """A fresh database name on the session influxd, dropped after the test."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    influxd_server.query(f'CREATE DATABASE "{name}"')
    yield name
    if influxd_server.ping():
        influxd_server.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def influxd(tmp_path):
    """An influxd of this test's own (for outage tests that stop and start it)."""
    d = tmp_path / "influxd"
    d.mkdir()
    server = Influxd(d)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session (tests use their own database: see ``postgres_url``)."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer()
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """``postgresql://coldtrace:<password>@127.0.0.1:<port>/<db>`` of a fresh, empty database for one test,
    dropped afterwards (connections still open are ended)."""
    name, url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def pipeline_env(tmp_path):
    """(ManualClock, Database, Pipeline) on a SQLite file in tmp_path, in-process."""
    from coldtrace.core.clock import ManualClock
    from coldtrace.services.pipeline import Pipeline
    from coldtrace.store.db import Database
    from coldtrace.store.sqlite import SqliteReadingStore

    clock = ManualClock()
    db = Database(tmp_path / "ct.db")
    pipeline = Pipeline(db, SqliteReadingStore(db), clock)
    yield clock, db, pipeline
    db.close()


# COLDTRACE_TEST_STORE=postgresql runs the suite's own databases on PostgreSQL: every ``Database(path)`` a test
# opens (directly or through a fixture) and every store the settings open (COLDTRACE_STORE__URL, inherited by
# the CLI processes tests start) is one fresh PostgreSQL database per test. A portability check of the SQL
# (docs/CONVENTIONS.md); tests that read the SQLite file itself (sqlite3.connect, PRAGMA) cannot pass there.
TEST_STORE = os.environ.get("COLDTRACE_TEST_STORE", "sqlite").strip().lower()
if TEST_STORE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"COLDTRACE_TEST_STORE must be sqlite or postgresql, not {TEST_STORE!r}")


def pytest_collection_modifyitems(config, items):
    """Under COLDTRACE_TEST_STORE=postgresql a test marked ``sqlite_only(reason)`` (it is about SQLite itself: the
    file, WAL, kill -9 of its writer) does not run, with its reason; in the normal SQLite run it always runs."""
    if TEST_STORE != "postgresql":
        return
    for item in items:
        mark = item.get_closest_marker("sqlite_only")
        if mark is not None:
            why = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "about SQLite itself")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))


_test_db_url: str | None = None  # the running test's PostgreSQL database (COLDTRACE_TEST_STORE=postgresql)
_test_db_paths: dict[str, str] = {}  # a file path the running test opened -> its PostgreSQL database URL
_test_db_more: list[str] = []  # the databases made for the test's second, third... file (dropped after it)
_test_pg_server = None


def _database_new(cls, *args, **kwargs):
    """``Database(path, ...)`` during a test: a PostgreSQL database instead of the file. The first file a test
    opens is the test's database (the one COLDTRACE_STORE__URL names for the processes it starts); each other
    file is a database of its own, and the same file opened again is the same database (a restart sees what
    was written). Installed for the whole session (deleting a class's __new__ again breaks it in CPython);
    outside a test (module fixtures) it is SQLite as usual."""
    from coldtrace.store.db import Database
    from coldtrace.store.postgres import PostgresDatabase

    if cls is Database and _test_db_url is not None:
        path = str(args[0] if args else kwargs["path"])
        key = None if path == ":memory:" else os.path.abspath(path)
        url = _test_db_paths.get(key) if key is not None else None
        if url is None:
            if key is not None and not _test_db_paths:
                url = _test_db_url
            else:
                name, url = _test_pg_server.create_database()
                _test_db_more.append(name)
            if key is not None:
                _test_db_paths[key] = url
        # the files SQLite keeps next to its database (the audit HMAC key) stay in the file's directory
        return PostgresDatabase(url, local_dir=os.path.dirname(key) if key is not None else None)
    return object.__new__(cls)


if TEST_STORE == "postgresql":
    from coldtrace.store.db import Database as _Database

    _Database.__new__ = _database_new


@pytest.fixture(autouse=True)
def _test_store_dialect(request, monkeypatch):
    global _test_db_url, _test_pg_server
    if TEST_STORE != "postgresql" or "postgres_url" in request.fixturenames:  # a test of both dialects
        yield
        return
    server = request.getfixturevalue("postgres_server")
    name, url = server.create_database()
    monkeypatch.setenv("COLDTRACE_STORE__URL", url)
    _test_db_url, _test_pg_server = url, server
    try:
        yield
    finally:
        _test_db_url, _test_pg_server = None, None
        _test_db_paths.clear()
        for extra in (name, *_test_db_more):
            server.drop_database(extra)
        _test_db_more.clear()

from __future__ import annotations

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

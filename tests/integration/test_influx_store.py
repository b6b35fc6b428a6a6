"""The InfluxDB store against a real influxd: restarts, authentication, database creation, bulk writer."""

from __future__ import annotations

import threading
import time

import pytest

from coldtrace.core.errors import StoreError
from coldtrace.core.model import MINUTE, Reading
from coldtrace.ports import WriteResult
from coldtrace.store.influx import InfluxReadingStore
from tests.support.services import Influxd

pytestmark = pytest.mark.integration

T0 = 1_795_687_200_000
HOUR_MS = 60 * MINUTE


def readings(device: str, n: int, start: int = T0) -> list[Reading]:
    return [Reading(device, start + i * MINUTE, 5.0 + i / 1000, i) for i in range(n)]


def test_a_write_during_a_restart_waits_and_nothing_is_lost(influxd):
    store = InfluxReadingStore(influxd.url, "ct", retry_budget_s=30)
    assert store.write(readings("D", 100)) == WriteResult(100, 0)
    influxd.stop()
    restarter = threading.Timer(2.0, influxd.start)
    restarter.start()
    try:
        assert store.write(readings("D", 200)) == WriteResult(100, 100)  # blocks until influxd is back
    finally:
        restarter.join()
    assert store.count("D") == 200
    assert [r.seq for r in store.query("D")] == list(range(200))
    store.close()


def test_a_write_past_the_retry_budget_raises_store_error_and_stores_nothing(influxd):
    store = InfluxReadingStore(influxd.url, "ct", retry_budget_s=1.0)
    store.write(readings("D", 1))
    influxd.stop()
    t = time.monotonic()
    with pytest.raises(StoreError):
        store.write(readings("D", 10, start=T0 + HOUR_MS))
    assert time.monotonic() - t < 10  # bounded: the pipeline gets its answer and does not ack
    influxd.start()
    assert store.count("D") == 1
    assert store.write(readings("D", 10, start=T0 + HOUR_MS)) == WriteResult(10, 0)  # redelivery stores it
    store.close()


def test_the_store_creates_its_database(influxd_server):
    name = "created_by_store_" + str(time.monotonic_ns())
    store = InfluxReadingStore(influxd_server.url, name)
    try:
        assert store.count() == 0  # reading a missing database is an empty series, not an error
        assert store.write(readings("D", 3)) == WriteResult(3, 0)
        dbs = influxd_server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
        assert [name] in dbs
    finally:
        influxd_server.query(f'DROP DATABASE "{name}"')
        store.close()


def test_influxdb_1x_user_and_password(tmp_path):
    server = Influxd(tmp_path, auth=True)
    server.start()
    try:
        admin = ("admin", "admin-pw-for-test")
        server.query("CREATE USER admin WITH PASSWORD 'admin-pw-for-test' WITH ALL PRIVILEGES")
        server.query('CREATE DATABASE "ct"', user=admin)
        server.query("CREATE USER writer WITH PASSWORD 'w-pw'", user=admin)
        server.query('GRANT ALL ON "ct" TO writer', user=admin)

        store = InfluxReadingStore(server.url, "ct", username="writer", password="w-pw")
        assert store.write(readings("D", 5)) == WriteResult(5, 0)  # CREATE DATABASE refused: logged only
        assert store.count("D") == 5
        store.close()

        wrong = InfluxReadingStore(server.url, "ct", username="writer", password="nope")
        with pytest.raises(StoreError, match="401"):
            wrong.write(readings("D", 1, start=T0 - MINUTE))
        with pytest.raises(StoreError, match="401"):
            wrong.count()
        wrong.close()
    finally:
        server.stop()


def test_buffered_writer_flushes_by_size_and_by_time(influxd_server, influx_db):
    store = InfluxReadingStore(influxd_server.url, influx_db, batch_size=1000, flush_interval_s=0.2)
    w = store.buffered()
    w.add(readings("B", 2500))  # two full batches go at once, 500 wait for the timer
    deadline = time.monotonic() + 10
    while store.count("B") < 2500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.count("B") == 2500
    w.add(readings("B", 10, start=T0 + 10_000 * MINUTE))
    w.close()
    assert store.count("B") == 2510 and w.written == 2510
    store.close()

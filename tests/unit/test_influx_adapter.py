"""The InfluxDB adapter's edges without a server: line protocol, auth headers, retry policy, error mapping.

The HTTP side uses httpx.MockTransport (httpx's own in-process transport), a hand-written fake server.
"""

from __future__ import annotations

import base64
import gzip
import json

import httpx
import pytest
from influxdb_client import Point, WritePrecision

from coldtrace.core.errors import ConfigError, StoreError
from coldtrace.core.model import Reading
from coldtrace.store.influx import InfluxReadingStore, line
from coldtrace.store.influx_http import InfluxHTTP, quote_ident, quote_string


@pytest.mark.parametrize("device", ["LOG-0001", "a b", "a,b=c", 'q"x', "x'y", "Kühl.schrank_1"])
def test_line_protocol_matches_influxdb_client_point(device):
    r = Reading(device, 1_795_687_200_123, 4.52, 17)
    point = (Point("reading").tag("device_id", device).field("temp_c", 4.52).field("seq", 17)
             .time(r.ts, WritePrecision.MS))
    assert line(r) == point.to_line_protocol()


def test_line_protocol_refuses_what_cannot_read_back():
    assert line(Reading("D", 5, -80.0)) == "reading,device_id=D temp_c=-80.0 5"
    for bad in (Reading("D", 1, float("nan")), Reading("a\\b", 1, 1.0), Reading("a\nb", 1, 1.0),
                Reading("", 1, 1.0)):
        with pytest.raises(StoreError):
            line(bad)


def test_influxql_quoting():
    assert quote_string("a'b\\c") == "'a\\'b\\\\c'"
    assert quote_ident('my"db') == '"my\\"db"'


class FakeInflux:
    """Answers /write and /query like influxd; ``fail`` is a list of statuses (or 'timeout') to give first."""

    def __init__(self, fail=()):
        self.fail = list(fail)
        self.requests: list[httpx.Request] = []
        self.lines: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail:
            what = self.fail.pop(0)
            if what == "timeout":
                raise httpx.ReadTimeout("slow", request=request)
            if what == "refused":
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(what, text='{"error":"boom"}')
        if request.url.path == "/write":
            body = gzip.decompress(request.content).decode()
            self.lines.extend(body.splitlines())
            return httpx.Response(204)
        return httpx.Response(200, text=json.dumps({"results": [{"statement_id": 0}]}) + "\n")


def make(fake, **kw):
    sleeps: list[float] = []
    http = InfluxHTTP("http://127.0.0.1:1", "db", transport=httpx.MockTransport(fake), sleep=sleeps.append,
                      **kw)
    return http, sleeps


def test_token_and_basic_auth_headers():
    fake = FakeInflux()
    http, _ = make(fake, token="s3cret")
    http.write_lines(b"reading,device_id=a temp_c=1.0 1")
    assert fake.requests[0].headers["Authorization"] == "Token s3cret"
    assert fake.requests[0].headers["Content-Encoding"] == "gzip"
    assert dict(fake.requests[0].url.params) == {"db": "db", "precision": "ms"}
    http.close()
    fake = FakeInflux()
    http, _ = make(fake, username="writer", password="pw")
    http.write_lines(b"reading,device_id=a temp_c=1.0 1")
    assert fake.requests[0].headers["Authorization"] == "Basic " + base64.b64encode(b"writer:pw").decode()
    http.close()
    with pytest.raises(ConfigError):
        InfluxHTTP("http://x", "db", token="t", username="u")
    with pytest.raises(ConfigError):
        InfluxHTTP("ftp://x", "db")


def test_5xx_and_timeouts_are_retried_with_backoff_then_succeed():
    fake = FakeInflux(fail=[503, "timeout", "refused", 500])
    http, sleeps = make(fake)
    http.write_lines(b"reading,device_id=a temp_c=1.0 1")
    assert len(fake.requests) == 5 and fake.lines == ["reading,device_id=a temp_c=1.0 1"]
    assert len(sleeps) == 4 and all(0 < s <= 5.0 for s in sleeps)
    http.close()


def test_retry_budget_is_bounded_and_ends_in_store_error():
    fake = FakeInflux(fail=[503] * 1000)
    http, sleeps = make(fake, retry_budget_s=0.0)
    with pytest.raises(StoreError, match="after 1 attempts"):
        http.write_lines(b"x")
    http.close()


def test_client_errors_are_not_retried():
    fake = FakeInflux(fail=[400])
    http, sleeps = make(fake)
    with pytest.raises(StoreError, match="HTTP 400"):
        http.write_lines(b"x")
    assert sleeps == [] and len(fake.requests) == 1
    http.close()


def test_store_writes_in_batches_of_batch_size():
    fake = FakeInflux()
    http, _ = make(fake)
    store = InfluxReadingStore("", "", batch_size=4, http=http, create_database=False)
    result = store.write([Reading("D", i, 1.0) for i in range(10)])
    assert (result.accepted, result.duplicates) == (10, 0)
    writes = [r for r in fake.requests if r.url.path == "/write"]
    assert [len(gzip.decompress(r.content).splitlines()) for r in writes] == [4, 4, 2]
    store.close()


def test_open_reading_store_chooses_the_backend_from_settings(tmp_path, monkeypatch):
    from coldtrace.settings import load_settings
    from coldtrace.store import open_reading_store
    from coldtrace.store.db import Database
    from coldtrace.store.postgres_readings import PostgresReadingStore
    from coldtrace.store.sqlite import SqliteReadingStore

    db = Database(tmp_path / "f.db")  # PostgreSQL under COLDTRACE_TEST_STORE=postgresql
    default = PostgresReadingStore if db.dialect == "postgresql" else SqliteReadingStore
    assert isinstance(open_reading_store(load_settings(), db), default)  # the readings go where the rest goes
    with pytest.raises(ConfigError, match="INFLUX__URL"):
        open_reading_store(load_settings(store={"backend": "influx"}), db)
    monkeypatch.setenv("COLDTRACE_STORE__BACKEND", "influx")
    monkeypatch.setenv("COLDTRACE_STORE__INFLUX__URL", "http://127.0.0.1:8086")
    monkeypatch.setenv("COLDTRACE_STORE__INFLUX__TOKEN", "tok")
    monkeypatch.setenv("COLDTRACE_STORE__INFLUX__BATCH_SIZE", "1234")
    store = open_reading_store(load_settings(), db)
    assert isinstance(store, InfluxReadingStore) and store.batch_size == 1234
    assert store.http.database == "coldtrace"
    assert store.http._client.headers["Authorization"] == "Token tok"
    store.close()
    db.close()

"""The HTTP edge of InfluxDB's v1-compatible API (``/write``, ``/query``, ``/ping``) with retries.

InfluxDB 1.x, 2.x (v1 compatibility API with a DBRP mapping) and 3.x all serve these endpoints, so one
small client covers them. Authentication: 1.x user/password (HTTP Basic), 2.x/3.x a token
(``Authorization: Token ...``). Every foreign exception (httpx, JSON) leaves this module as a
:class:`~coldtrace.core.errors.StoreError`.

Why retries live here and not in the service loop: a write must either be stored or fail loudly so the
pipeline does not acknowledge the MQTT message. Riding out a short outage (influxd restarting, a 503 while
it compacts) inside the call keeps messages flowing without a reconnect of the broker session; past the
retry budget the caller gets ``StoreError`` and the broker redelivers later.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from coldtrace.core.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class DatabaseNotFound(StoreError):
    """The database (1.x) or its DBRP mapping (2.x) does not exist (yet)."""


class InfluxHTTP:
    """A thread-safe client of one InfluxDB database through the v1 HTTP API."""

    def __init__(self, url: str, database: str, *, username: str | None = None,
                 password: str | None = None, token: str | None = None, timeout_s: float = 10.0,
                 retry_budget_s: float = 60.0, read_retry_budget_s: float = 5.0,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"InfluxDB url must start with http:// or https://, got {url!r}")
        if not database:
            raise ConfigError("InfluxDB database name is empty")
        if token and (username or password):
            raise ConfigError("set either an InfluxDB token (2.x/3.x) or a username/password (1.x), not both")
        self.url = url.rstrip("/")
        self.database = database
        self.retry_budget_s = retry_budget_s
        self.read_retry_budget_s = read_retry_budget_s
        self._sleep = sleep
        headers = {"User-Agent": "coldtrace"}
        auth: tuple[str, str] | None = None
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username:
            auth = (username, password or "")
        self._client = httpx.Client(base_url=self.url, headers=headers, auth=auth,
                                    timeout=httpx.Timeout(timeout_s), transport=transport)

    # -- retries ------------------------------------------------------------------------------------

    def _send(self, what: str, budget_s: float, build: Callable[[], httpx.Request]) -> httpx.Response:
        """Send a request, retrying transport errors and 5xx/429 with capped exponential back-off.

        Returns the first non-retryable response (the caller judges 2xx/4xx); raises StoreError when the
        budget is spent. ``Retry-After`` from the server is honoured within the budget.
        """
        deadline = time.monotonic() + budget_s
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            problem: str
            wait: float | None = None
            try:
                resp = self._client.send(build())
            except httpx.TransportError as exc:  # connect refused, reset, timeouts
                problem = f"{type(exc).__name__}: {exc}"
                cause: BaseException | None = exc
            else:
                if resp.status_code not in RETRY_STATUS:
                    return resp
                problem = f"HTTP {resp.status_code}: {resp.text[:200]}"
                cause = None
                retry_after = resp.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = float(retry_after)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreError(f"InfluxDB {what} failed after {attempt} attempts: {problem}") from cause
            wait = min(wait if wait is not None else delay * (0.5 + random.random()), remaining, 5.0)
            log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                    "InfluxDB %s failed (%s); retrying in %.2fs", what, problem, wait)
            self._sleep(wait)
            delay = min(delay * 2, 5.0)

    # -- endpoints ----------------------------------------------------------------------------------

    def ping(self) -> bool:
        try:
            return self._client.get("/ping", timeout=2.0).status_code in (200, 204)
        except httpx.HTTPError:
            return False

    def write_lines(self, body: bytes, precision: str = "ms") -> None:
        """POST one batch of line protocol (gzip). Creates the database once if the server says 404."""
        payload = gzip.compress(body, compresslevel=1)
        params = {"db": self.database, "precision": precision}

        def build() -> httpx.Request:
            return self._client.build_request(
                "POST", "/write", params=params, content=payload,
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"})

        resp = self._send("write", self.retry_budget_s, build)
        if resp.status_code == 404 and "database not found" in resp.text:
            log.info("InfluxDB database %s not found; creating it", self.database)
            self.create_database()
            resp = self._send("write", self.retry_budget_s, build)
        if resp.status_code >= 300:
            raise StoreError(f"InfluxDB refused the write (HTTP {resp.status_code}): {resp.text[:300]}")

    def create_database(self) -> bool:
        """CREATE DATABASE (a no-op if it exists). False when the server does not allow it (2.x/3.x, no
        admin rights): the database/bucket must then exist already, which is logged, not raised."""
        try:
            self.statement(f"CREATE DATABASE {quote_ident(self.database)}", post=True)
        except StoreError as exc:
            log.info("cannot CREATE DATABASE %s (%s); assuming it exists (2.x DBRP / 3.x / no admin)",
                     self.database, exc)
            return False
        return True

    def statement(self, q: str, *, post: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL and return the ``results`` list (one per statement); errors raise StoreError."""
        return list(self._query(q, post=post, chunked=False))

    def query(self, q: str, *, budget_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Run read-only InfluxQL, chunked (no max-row-limit truncation); yields each statement's result
        chunk. Chunks of one series may repeat the series with more values. ``budget_s`` overrides the
        read retry budget (the duplicate check of a write rides out an outage like the write itself)."""
        return self._query(q, post=False, chunked=True, budget_s=budget_s)

    def _query(self, q: str, *, post: bool, chunked: bool,
               budget_s: float | None = None) -> Iterator[dict[str, Any]]:
        params: dict[str, str] = {"db": self.database, "epoch": "ms", "q": q}
        if chunked:
            params.update(chunked="true", chunk_size="10000")

        def build() -> httpx.Request:
            if post:
                return self._client.build_request("POST", "/query", data=params)
            return self._client.build_request("GET", "/query", params=params)

        resp = self._send("query", self.read_retry_budget_s if budget_s is None else budget_s, build)
        if resp.status_code >= 300:
            cls = DatabaseNotFound if "database not found" in resp.text else StoreError
            raise cls(f"InfluxDB query failed (HTTP {resp.status_code}): {resp.text[:300]}")
        texts = resp.text.splitlines() if chunked else [resp.text]
        out = []
        for text in texts:
            if not text.strip():
                continue
            try:
                doc = json.loads(text)
            except ValueError as exc:
                raise StoreError(f"InfluxDB answered something that is not JSON: {text[:200]!r}") from exc
            for err in [doc.get("error")] + [r.get("error") for r in doc.get("results", [])]:
                if err:
                    cls = DatabaseNotFound if "database not found" in str(err) else StoreError
                    raise cls(f"InfluxDB query failed: {err}")
            for result in doc.get("results", []):
                out.append(result)
        return iter(out)

    def close(self) -> None:
        self._client.close()


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

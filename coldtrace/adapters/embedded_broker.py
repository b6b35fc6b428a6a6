"""An embedded MQTT broker (amqtt, pure Python) for `coldtrace run` without a broker URL. Loopback only.

It exists so that one command runs the whole thing on a laptop; sites use Mosquitto (docker-compose.yml).

It keeps what it acknowledges (issue 12): amqtt answers a QoS 1 PUBLISH with PUBACK as soon as the message is
queued in memory, so a crash lost messages the publisher had been told were delivered. Here every PUBLISH on
``coldtrace/v1/devices/...`` is first committed to a durable SQLite inbox (``<data_dir>/embedded-inbox.db``),
and only then does amqtt go on (queue, PUBACK). ColdTrace's pipeline drains that inbox
(:class:`InboxDrainer`) instead of subscribing through the broker, deletes rows only after its own commit,
and drains what is left at the next start. ARCHITECTURE.md, "The embedded broker keeps what it acknowledged".
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from coldtrace.core.errors import ColdTraceError, PayloadError, StoreError, TransportError
from coldtrace.store import inbox as inbox_store

log = logging.getLogger(__name__)

INBOX_TOPIC_PREFIX = "coldtrace/v1/devices/"
DRAIN_BATCH = 2000


def _port_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``port``. With SO_REUSEADDR, as amqtt and uvicorn bind: the TIME_WAIT
    sockets a killed predecessor leaves do not count (only a live listener does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class DurableInbox:
    """Messages accepted by the embedded broker, committed before their PUBACK, until the pipeline has them.

    ``put`` (on the broker's event loop) hands a message to a writer thread that commits what has gathered in
    one transaction (group commit: one fsync for many messages) and then releases the waiting PUBLISH
    handlers. A failed commit fails the handlers: amqtt then sends no PUBACK and the client publishes again."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self._conn = inbox_store.connect(self.path, synchronous, create=True)
        self._cond = threading.Condition()
        self._pending: list[tuple[str, bytes, asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._closed = False
        self.arrived = threading.Event()  # set after each commit: wakes the drainer
        self._writer = threading.Thread(target=self._write_loop, name="embedded-inbox", daemon=True)
        self._writer.start()

    async def put(self, topic: str, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cond:
            if self._closed:
                raise TransportError("the embedded broker's inbox is closed")
            self._pending.append((topic, payload, fut, loop))
            self._cond.notify()
        await fut

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            err: BaseException | None = None
            now = int(time.time() * 1000)
            try:
                inbox_store.append(self._conn, now, [(t, p) for t, p, _, _ in batch])
            except sqlite3.Error as exc:
                err = StoreError(f"cannot write the embedded broker's inbox: {exc}")
                log.error("%s; %d messages not acknowledged", err, len(batch))
            for _, _, fut, loop in batch:
                loop.call_soon_threadsafe(_settle, fut, err)
            self.arrived.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._writer.join(10)
        self._conn.close()


def _settle(fut: asyncio.Future, err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


def _store_failure(exc: BaseException) -> bool:
    """The store failed (kept and retried), as opposed to a defect one message triggers (services.pipeline's
    ``is_transient``, restated here: adapters do not import services)."""
    return isinstance(exc, ColdTraceError | sqlite3.OperationalError) and not isinstance(exc, PayloadError)


class InboxDrainer:
    """Feeds the pipeline from the embedded broker's inbox, oldest first, in batches: rows are deleted only
    after the pipeline has committed them (a crash in between means they are ingested again: idempotent).
    Takes the place of the MQTT collector in `coldtrace run` with the embedded broker (same interface).

    A batch whose ingest raises anything but a store failure (a defect: ``ingest_messages`` already isolates
    every message it can) is taken again row by row; a row that fails alone is handed to ``on_poison``
    (topic, payload, detail: the quarantine) and deleted, so no row can hold up the ones behind it."""

    def __init__(self, inbox_path: str | Path, ingest: Callable[[list[tuple[str, bytes]]], int],
                 arrived: threading.Event | None = None, synchronous: str = "FULL",
                 on_poison: Callable[[str, bytes, str], None] | None = None) -> None:
        self.path = Path(inbox_path)
        self.ingest = ingest
        self.on_poison = on_poison
        self.arrived = arrived or threading.Event()
        self.synchronous = synchronous
        self.processed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def start(self, connect_timeout: float | None = None) -> None:
        self._thread = threading.Thread(target=self._loop, name="inbox-drainer", daemon=True)
        self._thread.start()
        self._running.set()

    def wait_connected(self, timeout: float) -> bool:
        return self._running.wait(timeout)

    def drain_once(self, conn: sqlite3.Connection) -> int:
        rows = inbox_store.oldest(conn, DRAIN_BATCH)
        if not rows:
            return 0
        try:
            self.ingest([(t, p) for _, t, p in rows])
        except Exception as exc:
            if _store_failure(exc) or self.on_poison is None:
                raise
            log.error("ingesting %d messages from the embedded broker's inbox raised %s: %s; taking them one by"
                      " one", len(rows), type(exc).__name__, exc)
            self._one_by_one(conn, rows)
            return len(rows)
        inbox_store.delete_through(conn, rows[-1][0])
        self.processed += len(rows)
        return len(rows)

    def _one_by_one(self, conn: sqlite3.Connection, rows: list[tuple[int, str, bytes]]) -> None:
        assert self.on_poison is not None
        for row_id, topic, payload in rows:
            try:
                self.ingest([(topic, payload)])
            except Exception as exc:
                if _store_failure(exc):
                    raise  # the rows before it are done and deleted; this one and the rest are retried
                log.exception("a message on %r from the embedded broker's inbox made ingest raise; quarantined",
                              topic[:200])
                self.on_poison(topic, payload, f"{type(exc).__name__} while ingesting: {str(exc)[:300]}")
            inbox_store.delete_through(conn, row_id)
            self.processed += 1

    def _loop(self) -> None:
        conn = inbox_store.connect(self.path, self.synchronous, wal=False)
        delay = 0.5
        try:
            while not self._stop.is_set():
                self.arrived.clear()
                try:
                    n = self.drain_once(conn)
                    delay = 0.5
                except (ColdTraceError, sqlite3.OperationalError) as exc:  # the store failed: kept, retried
                    log.error("could not ingest from the embedded broker's inbox (%s); retrying in %.1f s", exc,
                              delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                except Exception:  # a defect (ingest_messages isolates messages): keep the rows, never stop
                    log.exception("unexpected error draining the embedded broker's inbox; retrying in %.1f s",
                                  delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                if n < DRAIN_BATCH:
                    self.arrived.wait(0.2)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.arrived.set()
        if self._thread is not None:
            self._thread.join(30)
        self._running.clear()


def _durable_handler_class(inbox: DurableInbox):
    """amqtt's broker protocol handler, committing each PUBLISH of ours to the inbox before amqtt handles it
    (queues it and, for QoS 1/2, acknowledges it)."""
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    class DurableBrokerProtocolHandler(BrokerProtocolHandler):
        async def handle_publish(self, publish_packet) -> None:  # type: ignore[no-untyped-def]
            topic, data = publish_packet.topic_name, publish_packet.data
            if topic is not None and data is not None and topic.startswith(INBOX_TOPIC_PREFIX):
                await inbox.put(topic, bytes(data))  # raises (no PUBACK) if it cannot be made durable
            await super().handle_publish(publish_packet)

    return DurableBrokerProtocolHandler


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883, inbox: DurableInbox | None = None) -> None:
        """``inbox``: commit every PUBLISH on coldtrace/v1/devices/... there before amqtt acknowledges it."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise TransportError("the embedded broker listens on loopback only; use Mosquitto for anything else")
        self.host = host
        self.port = port
        self.inbox = inbox
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if not _port_free(self.host, self.port):
            raise TransportError(f"port {self.port} on {self.host} is taken; is another broker running? Pass"
                                 f" --mqtt-url mqtt://{self.host}:{self.port} to use it, or --mqtt-port N")
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TransportError("the embedded MQTT broker did not start in time")
        if self._error is not None:
            raise TransportError(f"the embedded MQTT broker failed to start: {self._error}") from self._error
        log.info("embedded MQTT broker (amqtt) listening on %s", self.url)

    def _run(self) -> None:
        import amqtt.broker
        from amqtt.broker import Broker

        if self.inbox is not None:  # the broker builds its handlers through this module-level name
            amqtt.broker.BrokerProtocolHandler = _durable_handler_class(self.inbox)  # type: ignore[misc]

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 10000}},
            "timeout_disconnect_delay": 0,
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            try:
                self._broker = Broker(config, loop=self._loop)
                self._loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            self._loop.run_forever()
        finally:
            self._loop.close()  # its self-pipe sockets closed now, not whenever the loop is garbage collected

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(10)
        except Exception as exc:  # noqa: BLE001
            log.warning("embedded broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
        self._broker = None  # stopped: a second stop() does nothing
        if self.inbox is not None:
            self.inbox.close()

"""Decode, store and evaluate in a child process, so paho's network loop and the pipeline each get a core.

Both are pure-Python hot loops; in one process they take turns at the GIL, in two they run side by side.
The MQTT side sends each batch of raw messages down a pipe and carries on receiving; a reader thread takes
the child's answer (committed, or failed) and only then are the batch's messages acknowledged. Batches are
answered in the order they were sent. If the child dies, it is started again and every unanswered batch is
sent again (the writes are idempotent); if the parent dies, the child sees the pipe close and exits, and the
broker redelivers what was never acknowledged.

No message can make this a restart loop. In the child, ``ingest_messages`` quarantines whatever one message
makes the pipeline raise (only a store failure is answered "error", and retried with back-off), and the
child answers any exception that still escapes instead of dying. Should the child die anyway (a crash in C,
killed by the OOM killer) while the same batch is in hand twice, that batch is split into single messages,
and a single message in hand at two deaths is quarantined here in the parent (``internal_error``) and
acknowledged.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from coldtrace.core.errors import TransportError
from coldtrace.settings import Settings

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60.0
MAX_UNANSWERED = 3  # batches in the pipe at once; more waits (back-pressure up to the broker's window)

Item = tuple[str, bytes]  # (topic, payload)
Done = Callable[[list[Any], int], None]  # (the batch as submitted, alerts raised) after its commit
Poison = Callable[[Item, str], None]  # quarantine one message the child died on (in the parent)
CRASHES_BEFORE_SPLIT = 2


class _Entry:
    """One batch in the pipe: the caller's batch (acknowledged on commit), its items, child deaths in hand."""

    __slots__ = ("batch", "items", "crashes")

    def __init__(self, batch: list[Any], items: list[Item], crashes: int = 0) -> None:
        self.batch, self.items, self.crashes = batch, items, crashes


def _child(conn: Connection, settings: Settings) -> None:
    from coldtrace.core.errors import ColdTraceError
    from coldtrace.logs import setup_logging
    from coldtrace.wiring import build_services

    from .ingest import ingest_messages

    setup_logging(settings.log_level)
    try:
        services = build_services(settings)
    except ColdTraceError as exc:
        conn.send(("failed", str(exc)))
        return
    conn.send(("ready", 0))
    try:
        while True:
            try:
                items = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone: stop
            if items is None:  # asked to stop
                return
            try:
                alerts = ingest_messages(services.pipeline, items)
                reply: tuple = ("ok", alerts)
            except ColdTraceError as exc:  # the store failed: retried with back-off
                reply = ("error", str(exc))
            except Exception as exc:  # noqa: BLE001 - never die on a message (ingest_messages isolates them)
                logging.getLogger(__name__).exception("ingest worker: unexpected %s", type(exc).__name__)
                reply = ("error", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                return
    finally:
        services.close()


class WorkerIngest:
    def __init__(self, settings: Settings, on_done: Done, on_poison: Poison | None = None) -> None:
        self.settings = settings
        self.on_done = on_done
        self.on_poison = on_poison
        self._ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._lock = threading.Condition()
        self._unanswered: collections.deque[_Entry] = collections.deque()
        self._conn: Connection | None = None
        self._proc: mp.process.BaseProcess | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self.restarts = 0

    def start(self) -> None:
        """Start the child and wait until it has opened the stores (raises TransportError if it cannot)."""
        self._spawn()
        self._reader = threading.Thread(target=self._read_answers, name="ingest-answers", daemon=True)
        self._reader.start()

    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child, args=(child, self.settings), name="coldtrace-ingest", daemon=True)
        proc.start()
        child.close()
        if not parent.poll(STARTUP_TIMEOUT_S):
            proc.terminate()
            raise TransportError(f"the ingest worker process did not start within {STARTUP_TIMEOUT_S:.0f} s")
        try:
            kind, detail = parent.recv()
        except (EOFError, OSError):
            kind, detail = "failed", f"exit code {proc.exitcode}"
        if kind != "ready":
            proc.join(5)
            raise TransportError(f"the ingest worker process could not start: {detail}")
        self._conn, self._proc = parent, proc
        log.info("ingest worker process %s started", proc.pid)

    def submit(self, batch: list[Any], items: Sequence[Item]) -> None:
        """Send one batch (blocks while MAX_UNANSWERED batches wait for their commit)."""
        payload = list(items)
        with self._lock:
            while len(self._unanswered) >= MAX_UNANSWERED and not self._stopping:
                self._lock.wait(0.5)
            if self._stopping:
                return  # not acknowledged: redelivered by the broker
            self._unanswered.append(_Entry(batch, payload))
            self._send(payload)

    def idle(self) -> bool:
        """No batch in the pipe or in the child: the caller should hand on what it has, however little."""
        return not self._unanswered

    def _send(self, payload: list[Item]) -> None:
        try:
            self._conn.send(payload)  # type: ignore[union-attr]
        except (BrokenPipeError, OSError) as exc:  # the reader thread notices and restarts the child
            log.warning("ingest worker unreachable (%s)", exc)

    def _read_answers(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                kind, value = self._conn.recv()  # type: ignore[union-attr]
            except (EOFError, OSError):
                if self._stopping:
                    return
                self._restart()
                continue
            with self._lock:
                entry = self._unanswered.popleft()
                if kind != "ok":
                    log.error("could not commit %d messages (%s); not acknowledged, retrying in %.1f s",
                              len(entry.batch), value, delay)
                    self._lock.wait(delay)
                    delay = min(delay * 2, 30.0)
                    self._unanswered.append(entry)
                    self._send(entry.items)
                    continue
                delay = 0.5
                self._lock.notify_all()
            self.on_done(entry.batch, int(value))

    def _restart(self) -> None:
        with self._lock:
            code = self._proc.exitcode if self._proc else None
            log.error("ingest worker process ended (exit code %s); starting another and resending %d batches",
                      code, len(self._unanswered))
            self.restarts += 1
            poisoned = self._isolate_head()
            time.sleep(min(5.0, 0.2 * self.restarts))
            self._spawn()
            for entry in self._unanswered:
                self._send(entry.items)
        for entry in poisoned:
            self.on_done(entry.batch, 0)

    def _isolate_head(self) -> list[_Entry]:
        """The child died with the head batch in hand (answers come in order). At the second death on the same
        batch it is split into single messages; a single message in hand at two deaths is quarantined here
        and returned to be acknowledged. Caller holds the lock."""
        if not self._unanswered:
            return []
        head = self._unanswered[0]
        head.crashes += 1
        if head.crashes < CRASHES_BEFORE_SPLIT:
            return []
        self._unanswered.popleft()
        if len(head.items) > 1:
            log.error("the ingest worker died twice on a batch of %d messages; retrying them one by one",
                      len(head.items))
            for m, item in reversed(list(zip(head.batch, head.items, strict=True))):
                self._unanswered.appendleft(_Entry([m], [item], CRASHES_BEFORE_SPLIT - 1))
            return []
        topic, _ = head.items[0]
        log.error("the ingest worker died twice on one message (topic %r): quarantined", topic[:200])
        if self.on_poison is not None:
            self.on_poison(head.items[0], f"the ingest worker process died twice while ingesting this message"
                                          f" (exit code {self._proc.exitcode if self._proc else None})")
        return [head]

    def stop(self) -> None:
        """Ask the child to stop after the batch in hand (unanswered batches are redelivered by the broker)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            if self._conn is not None:
                try:
                    self._conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
        if self._reader is not None:  # the child's end closed: its recv() has returned
            self._reader.join(5)
        if self._conn is not None:
            self._conn.close()

    def check_alive(self) -> None:
        if self._proc is None or not self._proc.is_alive():
            raise TransportError("the ingest worker process is not running")

"""A small write waiting for another process that writes back to back gets the next gap between its
transactions (Database.write retries BEGIN IMMEDIATE every millisecond or two), instead of SQLite's own busy
wait, whose sleeps grow to 100 ms and so missed gaps of a few ms for a second or more: the notifier claiming an
alarm's webhook while the ingest child drains a backlog (issue 18)."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from coldtrace.core.errors import StoreError
from coldtrace.store import db as db_module
from coldtrace.store.db import Database

HOLD_S = 0.015  # like the ingest child's transactions under a backlog
GAP_S = 0.002


def _writer(path: str, ready, stop) -> None:
    db = Database(path, synchronous="OFF")
    n = 0
    while not stop.is_set():
        with db.write() as c:
            n += 1
            c.execute("INSERT INTO meta (key, value) VALUES ('hog', ?) ON CONFLICT (key) DO UPDATE"
                      " SET value = excluded.value", (str(n),))
            ready.set()
            until = time.perf_counter() + HOLD_S
            while time.perf_counter() < until:
                pass
        time.sleep(GAP_S)
    db.close()


def _hog_count(db: Database) -> int:
    row = db.query_one("SELECT value FROM meta WHERE key = 'hog'")
    return int(row[0])


def test_a_small_write_gets_in_between_another_process_back_to_back_transactions(tmp_path):
    path = str(tmp_path / "ct.db")
    Database(path, synchronous="OFF").close()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    hog = ctx.Process(target=_writer, args=(path, ready, stop), daemon=True)
    hog.start()
    try:
        assert ready.wait(30), "the writing process did not start"
        db = Database(path, synchronous="OFF")
        waited = []
        for i in range(20):
            before = _hog_count(db)  # WAL: reading never waits for the writer
            with db.write() as c:
                c.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"small-{i}",))
                waited.append(_hog_count(db) - before)  # the other process's commits while this one waited
            time.sleep(0.005)
        assert len({r[0] for r in db.query("SELECT key FROM meta WHERE key LIKE 'small-%'")}) == 20
        db.close()
    finally:
        stop.set()
        hog.join(10)
    # counted in the other process's transactions, not in seconds: SQLite's own wait let dozens go by
    assert max(waited) <= 8, waited
    assert sorted(waited)[len(waited) // 2] <= 2, waited


def test_a_lock_held_past_the_busy_timeout_is_a_store_error(tmp_path, monkeypatch):
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_S", 0.2)
    path = str(tmp_path / "ct.db")
    holder, waiter = Database(path, synchronous="OFF"), Database(path, synchronous="OFF")  # two connections
    try:
        with holder.write() as c:
            c.execute("INSERT INTO meta (key, value) VALUES ('held', '1')")
            with pytest.raises(StoreError, match="locked"), waiter.write():
                pass
        with waiter.write() as c2:  # once the lock is free, the same connection writes
            c2.execute("INSERT INTO meta (key, value) VALUES ('after', '1')")
        assert waiter.query_one("SELECT value FROM meta WHERE key = 'after'")[0] == "1"
        assert waiter.conn().execute("PRAGMA busy_timeout").fetchone()[0] == 200  # restored after BEGIN
    finally:
        holder.close()
        waiter.close()

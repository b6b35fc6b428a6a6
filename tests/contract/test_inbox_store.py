"""The embedded broker's inbox (coldtrace/store/inbox.py): a SQLite file of its own, whatever the metadata
store (a write-ahead queue local to the broker's process), so this suite runs on SQLite only."""

from __future__ import annotations

import sqlite3

import pytest

from coldtrace.store import inbox


@pytest.fixture
def conn(tmp_path):
    c = inbox.connect(tmp_path / "inbox.db", "FULL", create=True)
    yield c
    c.close()


def test_append_reads_back_oldest_first_and_deletes_through_an_id(conn, tmp_path):
    inbox.append(conn, 1, [("coldtrace/v1/devices/A/readings", b"a1"), ("coldtrace/v1/devices/B/readings", b"\x00b")])
    inbox.append(conn, 2, [("coldtrace/v1/devices/A/readings", b"a2")])
    rows = inbox.oldest(conn, 10)
    assert [(t.split("/")[3], p) for _, t, p in rows] == [("A", b"a1"), ("B", b"\x00b"), ("A", b"a2")]
    assert [i for i, _, _ in rows] == sorted(i for i, _, _ in rows)
    assert inbox.oldest(conn, 2) == rows[:2]
    # the drainer's own connection (no WAL switch, the file already is) sees the committed rows
    drainer = inbox.connect(tmp_path / "inbox.db", "NORMAL", wal=False)
    try:
        assert inbox.count(drainer) == 3
        inbox.delete_through(drainer, rows[1][0])
        assert inbox.oldest(drainer, 10) == rows[2:]
    finally:
        drainer.close()
    assert inbox.count(conn) == 1


def test_ids_keep_growing_after_the_inbox_was_emptied(conn):
    inbox.append(conn, 1, [("t", b"1")])
    (first,) = inbox.oldest(conn, 10)
    inbox.delete_through(conn, first[0])
    inbox.append(conn, 2, [("t", b"2")])
    (second,) = inbox.oldest(conn, 10)
    assert second[0] > first[0]  # AUTOINCREMENT: a deleted id is never reused (the drainer deletes by id)


def test_a_failed_append_leaves_nothing_and_the_connection_usable(conn):
    inbox.append(conn, 1, [("t", b"kept")])
    with pytest.raises(sqlite3.Error):
        inbox.append(conn, 2, [("t", b"x"), (None, b"no topic")])  # NOT NULL: the whole group is refused
    assert not conn.in_transaction
    assert [p for _, _, p in inbox.oldest(conn, 10)] == [b"kept"]
    inbox.append(conn, 3, [("t", b"after")])
    assert inbox.count(conn) == 2


def test_an_unknown_synchronous_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="synchronous"):
        inbox.connect(tmp_path / "x.db", "SOMETIMES")

"""ReadingStore on SQLite (the embedded default): the readings table of the metadata database."""

from __future__ import annotations

from coldtrace.store.readings import SqlReadingStore


class SqliteReadingStore(SqlReadingStore):
    """``SqlReadingStore`` on a SQLite ``Database`` (its WITHOUT ROWID table keyed (device_id, ts))."""


__all__ = ["SqliteReadingStore"]

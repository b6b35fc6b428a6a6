"""ReadingStore on PostgreSQL: the readings table of the metadata database (``store.url = postgresql://...``).

The statements are the portable ones of ``SqlReadingStore``; what differs is the table (0001_core.sql of
migrations/postgresql): a heap with the (device_id, ts) primary key and a BRIN index on ts, chosen over
monthly partitions in docs/ARCHITECTURE.md ("Store"). Writes run in ``PostgresDatabase.write()``, so a batch,
its rollup and its conflict check are one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coldtrace.store.readings import SqlReadingStore

if TYPE_CHECKING:
    from coldtrace.store.postgres import PostgresDatabase


class PostgresReadingStore(SqlReadingStore):
    """``SqlReadingStore`` on a ``PostgresDatabase``."""

    def __init__(self, db: PostgresDatabase) -> None:
        if getattr(db, "dialect", None) != "postgresql":
            raise TypeError("PostgresReadingStore needs a PostgresDatabase")
        super().__init__(db)  # type: ignore[arg-type]

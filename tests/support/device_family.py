"""The database a contract suite of the device family runs against (tests/contract/test_devices_store.py,
test_device_health_store.py, test_excursions_store.py, test_meta_store.py): a fresh one per test, for each
dialect in ``DIALECTS``.

PostgreSQL joins the list once the PostgreSQL store and its fixture (tests/support/postgres.py, the
``postgres_url`` fixture, ``coldtrace.store.db.open_database``) are on main.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coldtrace.store.db import Database

DIALECTS = ["sqlite"]


def open_db(dialect: str, tmp_path: Path, request: Any) -> Iterator[Any]:
    if dialect == "sqlite":
        db = Database(tmp_path / "contract.db")
    else:  # pragma: no cover - until PostgreSQL is on main
        from coldtrace.store.db import open_database  # type: ignore[attr-defined]

        db = open_database(request.getfixturevalue("postgres_url"))
    try:
        yield db
    finally:
        db.close()

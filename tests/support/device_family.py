"""The database a contract suite of the device family runs against (tests/contract/test_devices_store.py,
test_device_health_store.py, test_excursions_store.py, test_meta_store.py): a fresh one per test, SQLite (a
file in the test's tmp_path) and a real PostgreSQL (a fresh database on the session's server,
tests/support/postgres.py), through ``open_database`` as the programs open it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldtrace.store.db import open_database

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


def open_db(dialect: str, tmp_path: Path, request: Any) -> Iterator[Any]:
    target = tmp_path / "contract.db" if dialect == "sqlite" else request.getfixturevalue("postgres_url")
    db = open_database(target)
    try:
        yield db
    finally:
        db.close()

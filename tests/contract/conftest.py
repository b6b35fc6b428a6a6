"""The store contract suites run every statement on both dialects: ``db`` is a fresh, migrated database of
each, a SQLite file or a new database on the session's PostgreSQL server."""

from __future__ import annotations

import pytest

from tests.support.device_family import DIALECTS, open_db


@pytest.fixture(params=DIALECTS)
def db(request, tmp_path):
    """A fresh database of each dialect: the same statements must give the same results on both."""
    yield from open_db(request.param, tmp_path, request)

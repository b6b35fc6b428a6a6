"""What the cluster tests share: opening the database of a path or URL, child processes, waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def open_db(target: str | Path):
    """A ``postgresql://`` URL or a SQLite file path -> the Database for it."""
    from coldtrace.store.db import open_database

    return open_database(str(target))


def reading_store(db):
    """The reading store of a database's dialect."""
    if db.dialect == "postgresql":
        from coldtrace.store.postgres_readings import PostgresReadingStore

        return PostgresReadingStore(db)
    from coldtrace.store.sqlite import SqliteReadingStore

    return SqliteReadingStore(db)


def start_child(module: str, *args: str, log: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT if out else None)
    finally:
        if out is not None:
            out.close()


def wait_for(pred: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not reached within {timeout:g} s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)

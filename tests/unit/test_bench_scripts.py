"""Every benchmark under bench/ still imports after code moves.

The benchmarks are run by hand (their figures go into closing notes and docs), so nothing else in the
suite would notice when a refactoring breaks one: session 3's layer move left bench/login.py and
bench/dashboard.py failing with ImportError until someone ran them. Importing each module runs its
top-level imports without starting the benchmark (each has a ``__main__`` guard).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")


def test_bench_scripts_are_found() -> None:
    assert {"ingest", "login", "alarm_flood", "scale"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_script_imports_and_has_a_main_guard(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
    assert 'if __name__ == "__main__":' in (BENCH / f"{name}.py").read_text()

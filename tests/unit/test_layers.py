"""The folders show the layers, and the imports keep to them (docs/ARCHITECTURE.md, "Layers").

- ``coldtrace/core``: pure (model, codecs, excursion/MKT/calibration/health rules); imports only core and no
  I/O library;
- ``coldtrace/store``: all SQL; imports core, ports and settings;
- ``coldtrace/adapters``: serial, embedded broker, broker access files, PDF; imports core, ports, store,
  settings;
- ``coldtrace/services``: the use cases; imports core, ports, store, adapters, settings, other services;
- the top level of ``coldtrace`` (cli, wiring, settings, ports, ...) composes; only the CLI modules import the
  programs (api, collector, gateway, firmware_sim), and programs never import each other;
- no import circle between modules, counting imports inside functions too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("api", "collector", "gateway", "firmware_sim")
IO_LIBRARIES = {"sqlite3", "socket", "serial", "paho", "httpx", "psycopg", "psycopg_pool", "fastapi", "urllib",
                "subprocess", "http", "influxdb_client", "amqtt", "uvicorn", "requests", "asyncio"}
ALLOWED = {
    "core": {"coldtrace.core"},
    "store": {"coldtrace.core", "coldtrace.store", "coldtrace.ports", "coldtrace.settings"},
    "adapters": {"coldtrace.core", "coldtrace.store", "coldtrace.ports", "coldtrace.settings",
                 "coldtrace.adapters"},
    "services": {"coldtrace.core", "coldtrace.store", "coldtrace.ports", "coldtrace.settings",
                 "coldtrace.adapters", "coldtrace.services"},
}
COMPOSITION_ROOTS = {"coldtrace.cli", "coldtrace.cli_ops"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, anywhere in the file (functions and TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out.extend(f"{mod}.{a.name}" for a in node.names)  # `from coldtrace.core import model`
    return out


def _sources() -> dict[str, Path]:
    files = {}
    for top in ("coldtrace", *PROGRAMS):
        for p in (ROOT / top).rglob("*.py"):
            files[_module_name(p)] = p
    return files


SOURCES = _sources()


def _project_imports(name: str) -> set[str]:
    """The project's modules ``name`` imports (names that are not modules, e.g. classes, are dropped)."""
    return {m for m in _imports(SOURCES[name]) if m in SOURCES and m != name}


def _within(mod: str, prefixes: set[str]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    bad = []
    for name in sorted(SOURCES):
        if not name.startswith(f"coldtrace.{layer}"):
            continue
        for mod in sorted(_project_imports(name)):
            if _within(mod, {"coldtrace"}) and not _within(mod, ALLOWED[layer]):
                bad.append(f"{name} imports {mod}")
            if mod.split(".")[0] in PROGRAMS:
                bad.append(f"{name} imports the program {mod}")
    assert not bad, "\n".join(bad)


def test_the_core_uses_no_io_library():
    bad = [f"{name} imports {mod}" for name in sorted(SOURCES) if name.startswith("coldtrace.core")
           for mod in _imports(SOURCES[name]) if mod.split(".")[0] in IO_LIBRARIES]
    assert not bad, "\n".join(bad)


def test_only_the_cli_imports_the_programs_and_programs_never_import_each_other():
    bad = []
    for name in sorted(SOURCES):
        top = name.split(".")[0]
        for mod in sorted(_project_imports(name)):
            other = mod.split(".")[0]
            if other in PROGRAMS and other != top and name not in COMPOSITION_ROOTS:
                bad.append(f"{name} imports {mod}")
    assert not bad, "\n".join(bad)


# Files that still hold SQL while it moves into coldtrace/store/ (issue 15, step 1). The list only shrinks:
# a file listed here that no longer holds SQL fails the test too, so remove it from the list when it is done.
SQL_PENDING = {
    "api/routers/devices.py", "api/routers/excursions.py", "api/routers/health.py", "api/routers/profiles.py",
    "api/routers/quarantine.py", "api/routers/summary.py", "coldtrace/adapters/embedded_broker.py",
    "coldtrace/cli_ops.py", "coldtrace/doctor.py", "coldtrace/services/data_loss.py",
    "coldtrace/services/device_roles.py", "coldtrace/services/health_store.py",
    "coldtrace/services/live_evaluation.py", "coldtrace/services/pipeline.py", "coldtrace/sim_resume.py",
    "firmware_sim/bench.py", "firmware_sim/fleet_day.py",
}
SQL_TEXT = re.compile(
    r"""["']\s*(?:SELECT\b|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|CREATE\s+(?:TABLE|INDEX|TRIGGER)\b)"""
    r"""|\b(?:db|c|conn|cur|self\.db|self\._conn|services\.db)\.(?:execute|executemany|executescript)\(""")


def _sql_lines(path: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{i}: {line.strip()[:90]}"
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if SQL_TEXT.search(line)]


def test_no_sql_outside_the_store():
    """SQL text lives in coldtrace/store/ (one module per table family); services and routers call it. The
    gateway is a program of its own with its own disk spool (gateway/spool.py) and is not counted."""
    bad, done = [], []
    for name, path in sorted(SOURCES.items()):
        rel = str(path.relative_to(ROOT))
        if name.startswith("coldtrace.store") or rel.startswith("gateway/"):
            continue
        lines = _sql_lines(path)
        if rel in SQL_PENDING:
            if not lines:
                done.append(rel)
        else:
            bad.extend(lines)
    assert not bad, f"{len(bad)} SQL lines outside coldtrace/store/:\n" + "\n".join(bad)
    assert not done, "no SQL left in these files: remove them from SQL_PENDING\n" + "\n".join(done)


def test_no_import_circles():
    graph = {name: _project_imports(name) for name in SOURCES}
    # a package's __init__ importing its own submodules is not a circle of design
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not d.startswith(name + ".") and not name.startswith(d + ".")}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "\n".join(cycles)

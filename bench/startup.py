"""Time from `coldtrace run --simulate` to the API answering, first start (empty store) and restarts.

    .venv/bin/python bench/startup.py [--starts 3] [--loggers 12] [--run-sh]

Runs the installed `coldtrace` (what scripts/run.sh execs once its install stamp matches: no pip, no
network) on free loopback ports and a temporary data directory, and prints per start the seconds until
/api/v1/health answers and until the collector is connected (health "ok"). Noisy on a shared machine.
With --run-sh each start goes through scripts/run.sh of this checkout instead (its install-stamp check
included: a start that has to install again says so and takes as long as pip).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.services import free_port  # noqa: E402


def _status(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1) as r:  # noqa: S310
            return json.loads(r.read())["status"]
    except OSError:
        return None


ROOT = Path(__file__).resolve().parents[1]


def one_start(data: Path, loggers: int, run_sh: bool = False) -> tuple[float, float]:
    api, mqtt = free_port(), free_port()
    cmd = ["bash", str(ROOT / "scripts" / "run.sh")] if run_sh else [sys.executable, "-m", "coldtrace.cli", "run",
                                                                       "--simulate"]
    t0 = time.monotonic()
    proc = subprocess.Popen([*cmd, "--loggers", str(loggers), "--data-dir", str(data), "--api-port", str(api),
                             "--mqtt-port", str(mqtt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serving = ok = None
    try:
        while time.monotonic() - t0 < 60 and ok is None:
            st = _status(api)
            if st is not None and serving is None:
                serving = time.monotonic() - t0
            if st == "ok":
                ok = time.monotonic() - t0
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    return serving or float("nan"), ok or float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--loggers", type=int, default=12)
    p.add_argument("--run-sh", action="store_true", help="start through scripts/run.sh (install stamp check)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        print(f"{'start':>6} {'API answers':>12} {'collector connected':>20}")
        for i in range(args.starts):
            serving, ok = one_start(data, args.loggers, args.run_sh)
            label = "first" if i == 0 else f"#{i + 1}"
            print(f"{label:>6} {serving:>11.2f}s {ok:>19.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`coldtrace run` (embedded broker) SIGKILLed during a full-speed QoS 1 publish: acknowledged readings lost.

Each run starts `coldtrace run` (or restarts it at once after the previous kill, same data dir and ports),
publishes N single-reading messages as fast as the broker takes them, SIGKILLs it once a random share of
them were acknowledged (PUBACK), starts it again right away and counts the acknowledged readings that are not
stored once the restarted process has drained its inbox. Also prints how long the restart took to serve.
Usage: python bench/embedded_kill.py [--runs 5] [--readings 40000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.embedded_kill import free_port, kill_run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--readings", type=int, default=40_000)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    lost_total = acked_total = 0
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp) / "data", Path(tmp) / "run.log"
        api_port, mqtt_port = free_port(), free_port()
        for run in range(args.runs):
            fraction = rnd.uniform(0.2, 0.9)
            r = kill_run(data, api_port, mqtt_port, log, f"BENCH-KILL-{run}", args.readings, fraction,
                         drain_timeout=300)
            lost_total += r["lost"]
            acked_total += r["acked"]
            print(f"run {run + 1}: published {r['sent']:,}, acknowledged {r['acked']:,} before the SIGKILL at"
                  f" {fraction:.0%}; lost after restart: {r['lost']:,}; restart served in {r['restart_s']:.2f} s",
                  flush=True)
    print(f"total: {acked_total:,} acknowledged readings, {lost_total:,} lost")
    return 1 if lost_total else 0


if __name__ == "__main__":
    sys.exit(main())

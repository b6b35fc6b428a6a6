"""What a Mosquitto loses of the readings it acknowledged, per setting (the figures of docs/deployment.md,
"Brokers ColdTrace does not control", and of deploy/mosquitto/mosquitto.conf).

A persistent QoS 1 subscriber (the collector) goes offline; N single-reading QoS 1 messages are published and
each acknowledged by the broker (PUBACK); then the broker is stopped (SIGTERM) or killed (SIGKILL) and started
again on the same persistence file; the subscriber reconnects and counts what it receives. Settings:

  default queue   max_queued_messages 1000 (Mosquitto's default), clean stop: the queue limit alone
  time-based      autosave_interval 30 without autosave_on_changes (Mosquitto's usual example), SIGKILL
  shipped         the persistence and queue lines of deploy/mosquitto/mosquitto.conf, SIGKILL and clean stop
  on-changes 1    autosave_on_changes true, autosave_interval 1, SIGKILL (and its publish rate)

Usage: python bench/broker_persistence.py [--messages 20000]   (needs Debian's mosquitto)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.broker_backlog import backlog_across_restart, shipped_settings, sigkill  # noqa: E402
from tests.support.services import Mosquitto  # noqa: E402


def run(workdir: Path, extra: str, kill: bool, n: int) -> tuple[int, float]:
    """-> (messages the subscriber received after the restart, publish rate in acknowledged messages/s)."""
    broker = Mosquitto(workdir, extra_conf=extra)
    broker.start()
    try:
        return backlog_across_restart(broker, n, (lambda: sigkill(broker)) if kill else broker.stop, quiet_s=2.0,
                                      publish_timeout_s=600)
    finally:
        broker.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    args = ap.parse_args()
    n = args.messages
    shipped, interval = shipped_settings()
    cases = [
        ("default queue (1000), clean stop", "max_queued_messages 1000\n", False),
        ("time-based autosave_interval 30, SIGKILL", "autosave_on_changes false\nautosave_interval 30\n", True),
        (f"shipped (on changes, interval {interval}), SIGKILL", shipped, True),
        (f"shipped (on changes, interval {interval}), clean stop", shipped, False),
        ("on changes, interval 1, SIGKILL", shipped.replace(f"autosave_interval {interval}", "autosave_interval 1"),
         True),
    ]
    print(f"{n:,} QoS 1 messages acknowledged by Mosquitto while the persistent subscriber was offline")
    for label, extra, kill in cases:
        with tempfile.TemporaryDirectory() as tmp:
            got, rate = run(Path(tmp), extra, kill, n)
        print(f"  {label:<48} received {got:>7,}  lost {n - got:>7,}  ({rate:,.0f} acknowledged messages/s)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A webhook notifier as a process of its own, on the system clock, for the cluster tests: several of these
share one database (argv: database path or URL, holder name, a file written once it runs)."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from coldtrace.core.clock import SystemClock
from coldtrace.services.delivery import Notifier
from tests.integration.cluster_support import open_db

TIMEOUT_S = 2.0  # an attempt's lease is 2 x timeout + 5 s = 9 s: a killed notifier's deliveries wait that long


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    db = open_db(sys.argv[1])
    notifier = Notifier(db, SystemClock(), allowed_private_targets=["127.0.0.1"], timeout_s=TIMEOUT_S,
                        poll_interval_s=0.05, holder=sys.argv[2], lane_concurrency=4)
    Path(sys.argv[3]).write_text(notifier.holder)
    notifier.run_forever(threading.Event())


if __name__ == "__main__":
    main()

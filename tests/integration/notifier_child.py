"""The notifier as a separate process for the SIGKILL test: its clock is a file the test writes."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from coldtrace.store.db import Database
from collector.notifier import Notifier


class FileClock:
    """A clock another process moves: epoch ms read from a file (tests only)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now_ms(self) -> int:
        return int(self.path.read_text())


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    db = Database(sys.argv[1])
    notifier = Notifier(db, FileClock(Path(sys.argv[2])), allowed_private_targets=["127.0.0.1"], timeout_s=20.0,
                        poll_interval_s=0.05)
    notifier.run_forever(threading.Event())


if __name__ == "__main__":
    main()

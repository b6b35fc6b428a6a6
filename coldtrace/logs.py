"""Logging set-up shared by the programs (the CLI and the collector's ingest child process)."""

from __future__ import annotations

import logging

NOISY = ("amqtt", "transitions", "httpx", "uvicorn.access")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)

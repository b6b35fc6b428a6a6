"""Build the running parts from Settings (the only place adapters are chosen). No work at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from coldtrace.core.clock import Clock, SystemClock
from coldtrace.core.errors import ConfigError
from coldtrace.ports import ReadingStore
from coldtrace.services.pipeline import Pipeline
from coldtrace.settings import Settings
from coldtrace.store import open_reading_store, open_store_database
from coldtrace.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    readings: ReadingStore
    pipeline: Pipeline
    clock: Clock
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. the collector, for /health

    def close(self) -> None:
        self.readings.close()
        self.db.close()


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data directory {data_dir} cannot be written: {exc.strerror or exc}"
                          " (choose another with --data-dir or COLDTRACE_DATA_DIR)") from exc
    clock = clock or SystemClock()
    db = open_store_database(settings)
    log.info("store: %s", settings.store_display)  # never the password
    from coldtrace.services.audit_anchor import ensure_keys

    ensure_keys(db, settings)  # audit HMAC and head-signing keys, outside the database (docs/SECURITY.md)
    readings = open_reading_store(settings, db)
    pipeline = Pipeline(db, readings, clock, default_profile=settings.default_profile,
                        require_registration=settings.ingest.require_registration)
    from coldtrace.core.lorawan import sources as lorawan_sources

    pipeline.topic_sources = lorawan_sources(settings.lorawan)  # extra MQTT subscriptions when configured
    return Services(settings, db, readings, pipeline, clock)

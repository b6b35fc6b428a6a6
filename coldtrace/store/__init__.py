"""Storage adapters. ``open_reading_store`` is the one place the readings backend is chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coldtrace.core.errors import ConfigError

if TYPE_CHECKING:
    from coldtrace.ports import ReadingStore
    from coldtrace.settings import Settings
    from coldtrace.store.db import Database
    from coldtrace.store.postgres import PostgresDatabase


def open_store_database(settings: Settings, application_name: str = "coldtrace") -> Database | PostgresDatabase:
    """The metadata database that settings name: store.url (postgresql:// or sqlite:///), else the SQLite
    file in the data directory."""
    from coldtrace.store.db import open_database

    return open_database(settings.store_url, synchronous=settings.store.sqlite_synchronous,
                         pool_size=settings.store.pool_size, application_name=application_name,
                         local_dir=settings.data_dir)


def open_reading_store(settings: Settings, db: Database) -> ReadingStore:
    """The readings table of the metadata database (SQLite, the embedded default, or PostgreSQL when
    store.url is a postgresql:// URL), or InfluxDB when store.backend=influx."""
    backend = settings.store.backend
    if backend == "sqlite":
        if getattr(db, "dialect", "sqlite") == "postgresql":
            from coldtrace.store.postgres_readings import PostgresReadingStore

            return PostgresReadingStore(db)
        from coldtrace.store.sqlite import SqliteReadingStore

        return SqliteReadingStore(db)
    if backend == "influx":
        from coldtrace.store.influx import InfluxReadingStore

        cfg = settings.store.influx
        if not cfg.url:
            raise ConfigError("store.backend is influx but no InfluxDB url is set"
                              " (COLDTRACE_STORE__INFLUX__URL=http://influxdb:8086)")
        return InfluxReadingStore(
            cfg.url, cfg.database,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            token=cfg.token.get_secret_value() if cfg.token else None,
            batch_size=cfg.batch_size, flush_interval_s=cfg.flush_interval_s, timeout_s=cfg.timeout_s,
            retry_budget_s=cfg.retry_budget_s, create_database=cfg.create_database,
        )
    raise ConfigError(f"unknown store backend {backend!r} (sqlite or influx)")

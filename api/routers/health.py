"""Liveness and metrics."""

from __future__ import annotations

from fastapi import APIRouter

from coldtrace import __version__
from coldtrace.core.clock import to_iso

from ..deps import ServicesDep, Viewer

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health", summary="Is ColdTrace up (no authentication)")
def health(services: ServicesDep) -> dict:
    db_ok = True
    try:
        services.db.query_one("SELECT 1")
    except Exception:  # noqa: BLE001 - report, never raise from a health check
        db_ok = False
    collector = services.extras.get("collector")
    mqtt = None if collector is None else collector.wait_connected(0)
    return {"status": "ok" if db_ok and mqtt is not False else "degraded", "version": __version__,
            "database": db_ok, "mqtt_connected": mqtt, "time": to_iso(services.clock.now_ms()),
            "store": services.settings.store.backend}


@router.get("/metrics", summary="Counters of ingest, quarantine and alerts")
def metrics(services: ServicesDep, _: Viewer) -> dict:
    """Totals from the store (whatever process wrote them), plus ``api_process_counters``: what this API
    process ingested itself (HTTP ingest); the MQTT collector counts in its own process and logs."""
    db = services.db
    q = {r[0]: r[1] for r in db.query("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason")}
    alerts = {r[0]: r[1] for r in db.query("SELECT type, COUNT(*) FROM alerts GROUP BY type")}
    outbox = db.query_one("SELECT COUNT(*) FROM outbox WHERE dispatched = 0")
    return {"api_process_counters": dict(services.pipeline.counters), "quarantine_by_reason": q,
            "alerts_by_type": alerts,
            "readings": services.readings.count(), "outbox_pending": outbox[0] if outbox else 0,
            "devices": db.query_one("SELECT COUNT(*) FROM devices")[0]}

"""Liveness and metrics."""

from __future__ import annotations

from fastapi import APIRouter

from coldtrace import __version__
from coldtrace.core.clock import to_iso
from coldtrace.services.data_loss import broker_counters
from coldtrace.store import alerts as alert_store
from coldtrace.store import devices as device_store
from coldtrace.store import meta as meta_store

from ..deps import ServicesDep, Viewer

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health", summary="Is ColdTrace up (no authentication)")
def health(services: ServicesDep) -> dict:
    db_ok = True
    try:
        meta_store.ping(services.db.conn())
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
    process ingested itself (HTTP ingest); the MQTT collector counts in its own process and logs. ``brokers``:
    each MQTT broker's ``$SYS`` counters as a collector last saw them (Mosquitto: messages dropped since the
    broker started, messages it holds), null where the broker publishes none."""
    c = services.db.conn()
    return {"api_process_counters": dict(services.pipeline.counters),
            "quarantine_by_reason": device_store.quarantine_by_reason(c),
            "alerts_by_type": alert_store.alerts_by_type(c),
            "readings": services.readings.count(), "outbox_pending": alert_store.outbox_pending(c),
            "devices": device_store.count_devices(c), "brokers": broker_counters(c)}

"""The real ColdTrace app served by uvicorn in a thread on a free loopback port, seeded through the real
Pipeline (readings as MQTT payloads), the shipment and calibration code and the HTTP API. Used by the e2e
tests and by bench/dashboard.py."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from coldtrace.services import auth, shipments
from coldtrace.services.calibration_records import upsert_device_calibration
from coldtrace.settings import load_settings
from coldtrace.wiring import Services, build_services
from tests.support.services import free_port, wait_port

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
QA_USER, QA_NAME, QA_PASSWORD = "qa.anna", "Anna Berg", "cold-chain-2026!"
LAB_NAME, LAB_ADDRESS = "Depot Basel metrology laboratory", "Hochbergstrasse 60, 4057 Basel, CH"
SHIPMENT_REF = "SHP-E2E-001"
EXCURSION_LOGGER, FLEET_LOGGER, DRIFT_DEVICE = "LOG-E2E-A", "LOG-E2E-B", "LOG-E2E-B"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class LiveApp:
    services: Services
    base_url: str
    token: str  # an admin bearer token, for asserting through the API
    server: uvicorn.Server
    thread: threading.Thread
    facts: dict = field(default_factory=dict)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.services.close()


def start_app(data_dir: Path) -> LiveApp:
    from api.app import create_app

    # webhook receivers of the tests listen on loopback, which the SSRF guard refuses unless allowed
    # the laboratory named on calibration certificates (ISO/IEC 17025 7.8.2.1 b): without an address none is issued
    settings = load_settings(data_dir=data_dir, mqtt={"url": None}, webhooks={"allow_private_targets": True},
                             lab={"name": LAB_NAME, "address": LAB_ADDRESS})
    services = build_services(settings)
    token = auth.create_token(services.db, role="admin", name="e2e", actor="e2e")
    port = free_port()
    config = uvicorn.Config(create_app(settings, services=services), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    wait_port(port, timeout=20)
    return LiveApp(services, f"http://127.0.0.1:{port}", token, server, thread)


def ingest_series(services: Services, device_id: str, ts: list[int], temps: list[float], battery: float = 87.0,
                  per_message: int = 5_000) -> None:
    """Readings as the loggers send them (native JSON payloads under the 256 KiB limit), through the Pipeline."""
    for i in range(0, len(ts), per_message):
        body = {"v": 1, "device_id": device_id, "seq": i // per_message, "battery_pct": battery,
                "readings": [{"ts": t, "temp_c": round(v, 3)} for t, v in
                             zip(ts[i:i + per_message], temps[i:i + per_message], strict=True)]}
        res = services.pipeline.ingest_raw(json.dumps(body).encode(), source="mqtt", topic_device_id=device_id)
        if res.rejected:
            raise AssertionError(f"seed readings rejected: {res.rejected[:3]}")


def seed(app: LiveApp) -> dict:
    """A QA user; a delivered shipment under review whose logger left 2-8 °C for an hour (an alarm); a
    steady logger; an as-found calibration history that drifts toward its tolerance."""
    s = app.services
    now = s.clock.now_ms()
    auth.create_user(s.db, QA_USER, QA_NAME, QA_PASSWORD, "qa", actor="e2e", now_ms=now)
    t0 = now - 8 * HOUR - now % MINUTE
    ts = [t0 + i * MINUTE for i in range(7 * 60)]
    # a reefer failure: the load warms over ~12 min, stays near 11.5 °C for an hour, then is cooled back
    bump = [min(1.0, max(0.0, (i - 178) / 12), max(0.0, (262 - i) / 12)) for i in range(len(ts))]
    temps = [5.0 + 0.3 * math.sin(i / 17) + 6.5 * b for i, b in enumerate(bump)]
    ingest_series(s, EXCURSION_LOGGER, ts, temps)
    tb = [now - 3 * HOUR + i * MINUTE for i in range(3 * 60)]
    ingest_series(s, FLEET_LOGGER, tb, [4.6 + 0.2 * math.cos(i / 9) for i in range(len(tb))], battery=64)
    # what the quarantine page shows: a message that is not JSON, and a reading out of the sensor's range
    s.pipeline.ingest_raw(b"T=4.2C;ok", source="mqtt", topic_device_id=FLEET_LOGGER)
    s.pipeline.ingest_raw(json.dumps({"v": 1, "device_id": FLEET_LOGGER, "readings": [
        {"ts": now - 2 * MINUTE, "temp_c": -300}, {"ts": now - MINUTE, "temp_c": 900}]}).encode(), source="mqtt",
        topic_device_id=FLEET_LOGGER)
    sh = shipments.create_shipment(s.db, reference=SHIPMENT_REF, origin="Basel depot", destination="Site 104, Lyon",
                                   product="IMP-4471 vials", lot="L2026-118", profile_id="2-8C", actor=QA_USER,
                                   now_ms=now)
    with s.db.write() as c:  # a logger is attached only with a calibration record (policy "refuse")
        upsert_device_calibration(c, EXCURSION_LOGGER, now, last_calibrated_at=now - 60 * DAY, interval_days=365,
                                  certificate_ref="CAL-2026-101", resolution_c=0.01)
    shipments.attach_logger(s.db, sh["id"], EXCURSION_LOGGER, actor=QA_USER, now_ms=now)
    for to, at in (("in_transit", t0 + 10 * MINUTE), ("delivered", t0 + 6 * HOUR + 50 * MINUTE),
                   ("under_review", now)):
        shipments.transition(s.db, s.readings, sh["id"], to, actor=QA_USER, now_ms=now, at_ts=at,
                             emit=s.pipeline.emit)
    with app.api() as c:
        r = c.put(f"/api/v1/calibration/devices/{DRIFT_DEVICE}", json={
            "last_calibrated_at": now - 300 * DAY, "interval_days": 365, "certificate_ref": "CAL-2026-017",
            "expanded_uncertainty_c": 0.1, "resolution_c": 0.01})
        r.raise_for_status()
        for k, err in enumerate((0.04, 0.11, 0.17, 0.25)):
            r = c.post(f"/api/v1/calibration/devices/{DRIFT_DEVICE}/history", json={
                "set_point_c": 5.0, "ts": now - (300 + 365 * (3 - k)) * DAY, "error_c": err, "expanded_u_c": 0.1,
                "mpe_c": 0.5, "certificate_ref": f"CAL-{2023 + k}-0{k + 1}"})
            r.raise_for_status()
    return {"shipment_id": sh["id"], "now": now}


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")

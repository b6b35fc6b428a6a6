"""An in-process ColdTrace (store + pipeline + collector + API) against a real broker, for integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from coldtrace.core.clock import Clock
from coldtrace.services import auth
from coldtrace.settings import Settings, load_settings
from coldtrace.wiring import Services, build_services


@dataclass
class Stack:
    services: Services
    collector: object | None
    client: TestClient
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params):
        r = self.client.get(path, params=params, headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()
        self.client.close()
        self.services.close()


def make_settings(tmp_path: Path, mqtt_url: str | None = None, **over) -> Settings:
    mqtt = {"url": mqtt_url, "client_id": f"ct-test-{tmp_path.name[-12:]}"}
    mqtt.update(over.pop("mqtt", {}))
    # in-process ingest: tests read the pipeline's counters and may move a ManualClock
    ingest = {"worker_process": False, **over.pop("ingest", {})}
    return load_settings(data_dir=tmp_path / "data", mqtt=mqtt, tick_interval_s=over.pop("tick_interval_s", 0.5),
                         ingest=ingest, **over)


def start_stack(tmp_path: Path, mqtt_url: str | None = None, clock: Clock | None = None,
                with_collector: bool = True, **over) -> Stack:
    from api.app import create_app

    settings = make_settings(tmp_path, mqtt_url, **over)
    services = build_services(settings, clock)
    collector = None
    if with_collector and mqtt_url:
        from collector.service import CollectorService

        collector = CollectorService(services, with_notifier=False)
        collector.start(connect_timeout=10)
        assert collector.mqtt.wait_connected(10), "collector did not connect"
        services.extras["collector"] = collector.mqtt
    token = auth.create_token(services.db, role="admin", name="tests", actor="tests")
    client = TestClient(create_app(settings, services=services))
    return Stack(services, collector, client, token)


def ok_json(r, status: int = 200):
    """An API answer that must have ``status``: its JSON body (the body is the failure message otherwise)."""
    assert r.status_code == status, r.text
    return r.json()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

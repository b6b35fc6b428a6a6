"""`coldtrace collector` and `coldtrace api` as two processes on one PostgreSQL database (--store-url), with a
real Mosquitto: readings that make an excursion are ingested by the collector, and the API, which shares
nothing with it but the database, lists the excursion and its alert. Nothing is written to a data directory's
SQLite file, and the password appears in neither process's log.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from coldtrace.core.clock import to_iso
from coldtrace.store.db import open_database
from tests.support.services import free_port, stop_processes
from tests.support.stack import wait_for

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "coldtrace.cli"]
MINUTE = 60_000


def _get(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def _publish(port: int, device: str, readings: list[tuple[int, float]], seq: int) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, f"pub-{device}-{seq}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        body = {"v": 1, "device_id": device, "seq": seq, "readings": [{"ts": ts, "temp_c": t} for ts, t in readings]}
        c.publish(f"coldtrace/v1/devices/{device}/readings", json.dumps(body), qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_collector_and_api_processes_share_one_postgresql_database(tmp_path, mosquitto, postgres_server,
                                                                    postgres_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDTRACE_")}
    env.update({"COLDTRACE_INGEST__WORKER_PROCESS": "true", "COLDTRACE_MQTT__CLIENT_ID": "ct-pg"})
    # one audit chain written from two machines needs the same audit keys on both (docs/deployment.md)
    signing = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    env.update({"COLDTRACE_AUDIT__HMAC_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "COLDTRACE_AUDIT__SIGNING_KEY": base64.b64encode(signing).decode()})
    data_c, data_a = tmp_path / "collector-data", tmp_path / "api-data"  # different data dirs: only the DB joins
    r = subprocess.run([*CLI, "token", "create", "--data-dir", str(data_a), "--role", "viewer", "--name", "pg"],
                       capture_output=True, text=True, timeout=60, env={**env, "COLDTRACE_STORE__URL": postgres_url})
    assert r.returncode == 0, r.stderr
    token = re.search(r"(ct_[A-Za-z0-9_-]+)", r.stdout).group(1)
    port = free_port()
    logs = {n: tmp_path / f"{n}.log" for n in ("collector", "api")}
    files = [open(logs[n], "wb") for n in ("collector", "api")]  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen([*CLI, "collector", "--mqtt-url", mosquitto.url, "--data-dir", str(data_c),
                          "--store-url", postgres_url], stdout=files[0], stderr=subprocess.STDOUT, env=env),
        subprocess.Popen([*CLI, "api", "--data-dir", str(data_a), "--api-port", str(port),
                          "--store-url", postgres_url], stdout=files[1], stderr=subprocess.STDOUT, env=env),
    ]
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for(lambda: b"connected to MQTT broker" in logs["collector"].read_bytes(), 30, "collector connected")

        def api_up() -> bool:
            try:
                return _get(f"{api}/health", token) is not None
            except OSError:
                return False

        wait_for(api_up, 60, "the API serving")
        # 2-8 °C logger: an hour in range, 45 min at 12 °C (the 'high' alarm needs 30 min), back in range
        t0 = (int(time.time() * 1000) // MINUTE - 180) * MINUTE
        temps = [5.0] * 60 + [12.0] * 45 + [5.0] * 15
        readings = [(t0 + i * MINUTE, t) for i, t in enumerate(temps)]
        for seq, i in enumerate(range(0, len(readings), 40), start=1):
            _publish(mosquitto.port, "LOG-PG1", readings[i:i + 40], seq)

        def excursions() -> list[dict]:
            return [e for e in _get(f"{api}/excursions?device_id=LOG-PG1", token) if e["limit_id"] == "high"]

        wait_for(lambda: any(not e["open"] for e in excursions()), 30, "the API lists the closed 'high' excursion")
        (exc,) = excursions()
        assert (exc["start"], exc["end"], exc["alarm_at"]) == (to_iso(t0 + 60 * MINUTE), to_iso(t0 + 105 * MINUTE),
                                                               to_iso(t0 + 90 * MINUTE))
        assert exc["peak_c"] == 12.0 and exc["duration_min"] == 45
        alerts = _get(f"{api}/alerts?device_id=LOG-PG1", token)
        alarm = [a for a in alerts if a["excursion_id"] == exc["id"] and a["type"] == "excursion.alarm"]
        assert len(alarm) == 1 and alarm[0]["severity"] == "alarm"

        # the collector stored it in PostgreSQL, not in its data directory
        db = open_database(postgres_url)
        try:
            assert db.query_one("SELECT COUNT(*) FROM readings WHERE device_id = ?", ("LOG-PG1",))[0] == 120
        finally:
            db.close()
        assert not (data_c / "coldtrace.db").exists() and not (data_a / "coldtrace.db").exists()
    finally:
        stop_processes(procs)
        for f in files:
            f.close()
    for name, path in logs.items():
        text = path.read_text(errors="replace")
        assert postgres_server.app_password not in text, f"the password appears in the {name}'s log"
    assert "coldtrace:***@127.0.0.1" in logs["collector"].read_text(errors="replace")  # the redacted URL

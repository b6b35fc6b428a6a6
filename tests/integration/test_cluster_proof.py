"""The proof of issue 15: three collector processes and two API processes on one real PostgreSQL and one real
Mosquitto. 20,000 readings from 50 devices arrive in shuffled batches through a shared MQTT subscription
while one collector is SIGKILLed and restarted. The stored readings are exactly the ones sent; the excursions
and their alert revisions equal, field by field, those of one SQLite process fed the messages one at a time in
the order they were published; and every alert (ids, types, data, revisions) equals that of one SQLite
process committing the messages in the order and grouping the cluster committed them (alerts such as
device.data_gap say what was known at the time, so they depend on arrival order by design). A shipment made
through the APIs evaluates as in that process, and the audit chain both APIs wrote verifies."""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.core.clock import ManualClock, to_iso
from coldtrace.core.model import MINUTE
from coldtrace.services import audit, auth, shipments
from coldtrace.services.pipeline import Pipeline, RawMessage
from coldtrace.store.db import Database, open_database
from coldtrace.store.sqlite import SqliteReadingStore
from tests.integration.cluster_support import wait_for
from tests.support.services import free_port, stop_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "coldtrace.cli"]
DEVICES, PER_DEVICE, BATCH = 50, 400, 50  # 20,000 readings, 400 messages
SHIPPED = [f"LOG-{d:03d}" for d in range(0, 10)]  # ten loggers in one shipment (four with an excursion)
SHIPMENT = {"reference": "PROOF-15", "origin": "Depot A", "destination": "Site 7", "product": "IMP-42",
            "lot": "L-0015", "profile_id": "2-8C"}


def _trip(t0: int) -> list[tuple[str, int]]:
    return [("in_transit", t0 + 30 * MINUTE), ("delivered", t0 + (PER_DEVICE - 30) * MINUTE)]


def _data(now_ms: int) -> tuple[list[tuple[str, list[tuple[int, float]]]], int]:
    """(device, readings) batches in a shuffled order, and the first reading's time. One reading a minute per
    device, 5 °C with noise; 20 devices have one excursion (12 °C or 9 °C for 35-45 min, inside one batch)."""
    rng = random.Random(15)
    t0 = (now_ms // MINUTE - PER_DEVICE - BATCH) // BATCH * BATCH * MINUTE  # batches on whole BATCH minutes
    batches = []
    for d in range(DEVICES):
        temps = [round(5.0 + rng.uniform(-0.8, 0.8), 2) for _ in range(PER_DEVICE)]
        if d % 5 in (0, 3):
            k = rng.randrange(PER_DEVICE // BATCH)
            start, length = k * BATCH + rng.randrange(2, 6), rng.randrange(35, 43)  # ends inside the batch
            level = 12.0 if d % 2 == 0 else 9.0
            for i in range(start, start + length):
                temps[i] = round(level + rng.uniform(-0.3, 0.3), 2)
        readings = [(t0 + i * MINUTE, temps[i]) for i in range(PER_DEVICE)]
        batches += [(f"LOG-{d:03d}", readings[i:i + BATCH]) for i in range(0, PER_DEVICE, BATCH)]
    rng.shuffle(batches)
    return batches, t0


def _body(dev: str, part: list[tuple[int, float]]) -> bytes:
    """A logger's message: its batches numbered 1, 2, 3... in time order (``seq``: a jump is a data gap)."""
    seq = 1 + (part[0][0] // MINUTE) // BATCH
    return json.dumps({"v": 1, "device_id": dev, "seq": seq,
                       "readings": [{"ts": t, "temp_c": v} for t, v in part]}).encode()


def _reference(path, groups: list[list[tuple[str, list[tuple[int, float]]]]], now_ms: int) -> dict:
    """One process on SQLite: the same messages, one ``ingest_raw_many`` transaction per group, in order."""
    db = Database(path, synchronous="OFF")
    pipe = Pipeline(db, SqliteReadingStore(db), ManualClock(now_ms))
    for group in groups:
        res = pipe.ingest_raw_many([RawMessage(_body(dev, part), "mqtt", dev) for dev, part in group])
        assert not res.rejected
    out = _snapshot(db)
    db.close()
    return out


def _ship_reference(path, now_ms: int, t0: int) -> dict:
    """The same shipment in the reference database: made, departed, delivered, evaluated."""
    db = Database(path, synchronous="OFF")
    pipe = Pipeline(db, SqliteReadingStore(db), ManualClock(now_ms))
    sid = shipments.create_shipment(db, **SHIPMENT, actor="qa", now_ms=now_ms)["id"]
    for dev in SHIPPED:
        shipments.attach_logger(db, sid, dev, actor="qa", now_ms=now_ms, uncalibrated="warn")
    for to, at in _trip(t0):
        shipments.transition(db, pipe.readings, sid, to, actor="qa", now_ms=now_ms, at_ts=at, emit=pipe.emit)
    out = {"snapshot": _snapshot(db),
           "evaluation": json.loads(json.dumps(shipments.evaluate(db, pipe.readings, sid).to_dict()))}
    db.close()
    return out


def _as_committed(db, batches) -> list[list[tuple[str, list[tuple[int, float]]]]]:
    """The messages grouped by the PostgreSQL transaction that stored them, in commit order. Every ingest
    transaction holds the cluster-wide write lock from its start, so transaction ids (xmin) follow the commit
    order."""
    tx = {(r[0], r[1]): int(r[2]) for r in db.query("SELECT device_id, ts, xmin::text FROM readings")}
    groups: dict[int, list] = {}
    for dev, part in batches:
        ids = {tx[(dev, t)] for t, _ in part}
        assert len(ids) == 1, f"a message of {dev} was stored in {len(ids)} transactions"
        groups.setdefault(ids.pop(), []).append((dev, part))
    return [groups[k] for k in sorted(groups)]


def _snapshot(db) -> dict:
    readings = {(r[0], r[1], r[2]) for r in db.query("SELECT device_id, ts, temp_c FROM readings")}
    excursions = sorted(tuple(r[k] for k in (
        "id", "series_id", "device_id", "shipment_id", "limit_id", "direction", "threshold_c", "severity",
        "start_ts", "end_ts", "duration_ms", "peak_c", "degree_minutes", "alarm_ts", "alarm_kind", "superseded"))
        for r in db.query("SELECT * FROM excursions"))
    # what the evaluation raised; not the lifecycle (acknowledged, resolved, cleared), which follows people and
    # the clock tick
    alerts = sorted((r["id"], r["type"], r["severity"], r["device_id"], r["shipment_id"], r["excursion_id"], r["ts"],
                     json.loads(r["data"])) for r in db.query("SELECT * FROM alerts"))
    revisions = sorted((r[0], r[1], json.loads(r[2])) for r in db.query(
        "SELECT excursion_id, revision, state FROM excursion_alert_state"))
    return {"readings": readings, "excursions": excursions, "alerts": alerts, "revisions": revisions}


def _http(method: str, url: str, token: str, body: dict | None = None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback only
        return json.loads(r.read() or b"null")


class _Cluster:
    def __init__(self, tmp_path, mqtt_url: str, store_url: str) -> None:
        self.tmp = tmp_path
        signing = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COLDTRACE_")}
        self.env.update({
            "COLDTRACE_STORE__URL": store_url, "COLDTRACE_MQTT__URL": mqtt_url,
            "COLDTRACE_MQTT__SHARED_GROUP": "coldtrace", "COLDTRACE_INGEST__WORKER_PROCESS": "false",
            "COLDTRACE_TICK_INTERVAL_S": "1", "COLDTRACE_SHIPMENTS__UNCALIBRATED_LOGGERS": "warn",
            "COLDTRACE_STORE__POOL_SIZE": "4",
            # one audit chain from five processes: the same keys in each (docs/deployment.md)
            "COLDTRACE_AUDIT__HMAC_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "COLDTRACE_AUDIT__SIGNING_KEY": base64.b64encode(signing).decode()})
        self.procs: dict[str, subprocess.Popen] = {}
        self.api_ports: list[int] = []

    def log(self, name: str):
        return self.tmp / f"{name}.log"

    def start(self, name: str, *args: str, **env: str) -> None:
        with open(self.log(name), "ab") as out:
            self.procs[name] = subprocess.Popen([*CLI, *args, "--data-dir", str(self.tmp / name)], stdout=out,
                                                stderr=subprocess.STDOUT, env={**self.env, **env})

    def collector(self, i: int) -> None:
        self.start(f"collector-{i}", "collector", COLDTRACE_MQTT__CLIENT_ID=f"ct-proof-{i}")

    def api(self, i: int) -> None:
        port = free_port()
        self.api_ports.append(port)
        self.start(f"api-{i}", "api", "--api-port", str(port))

    def subscribed(self, i: int, times: int = 1) -> bool:
        return self.log(f"collector-{i}").read_bytes().count(b"connected to MQTT broker") >= times

    def stop(self) -> None:
        stop_processes(self.procs.values())

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n).read_text(errors='replace')[-3000:]}" for n in self.procs)


def test_three_collectors_two_apis_one_postgresql_equal_one_sqlite_process(tmp_path, mosquitto, postgres_url,
                                                                           monkeypatch):
    now = int(time.time() * 1000)
    batches, t0 = _data(now)
    assert sum(len(p) for _, p in batches) == 20_000
    in_order = _reference(tmp_path / "published.db", [[b] for b in batches], now)  # one message at a time
    assert len(in_order["excursions"]) >= 20 and any(a[1] == "excursion.alarm" for a in in_order["alerts"])

    cluster = _Cluster(tmp_path, mosquitto.url, postgres_url)
    # this process writes to the audit chain too (the token): with the cluster's key, as every writer must
    monkeypatch.setenv("COLDTRACE_AUDIT__HMAC_KEY", cluster.env["COLDTRACE_AUDIT__HMAC_KEY"])
    db = open_database(postgres_url)  # creates the schema before the processes start
    token = auth.create_token(db, role="admin", name="proof", actor="tests")
    try:
        for i in (1, 2, 3):
            cluster.collector(i)
        for i in (1, 2):
            cluster.api(i)
        wait_for(lambda: all(cluster.subscribed(i) for i in (1, 2, 3)), 60, "three collectors subscribed")

        pub = mqtt.Client(CallbackAPIVersion.VERSION2, "proof-pub", protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(100)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        killed = threading.Event()

        def count() -> int:
            return db.query_one("SELECT COUNT(*) FROM readings")[0]

        try:
            infos = []
            for seq, (dev, part) in enumerate(batches):
                infos.append(pub.publish(f"coldtrace/v1/devices/{dev}/readings", _body(dev, part), qos=1))
                if seq == len(batches) // 3:  # a third sent: collector 2 dies, whatever it holds, and comes back
                    wait_for(lambda: count() > 0, 30, "ingest under way")
                    cluster.procs["collector-2"].send_signal(signal.SIGKILL)
                    cluster.procs["collector-2"].wait(10)
                    killed.set()
                    cluster.collector(2)
            for info in infos:
                info.wait_for_publish(60)
        finally:
            pub.disconnect()
            pub.loop_stop()
        assert killed.is_set()
        wait_for(lambda: cluster.subscribed(2, times=2), 60, "collector 2 back")
        wait_for(lambda: count() >= 20_000, 90, "20,000 readings stored")
        got = _snapshot(db)
        assert got["readings"] == in_order["readings"]  # exactly the readings sent: none lost, none added
        # the evaluation does not depend on the order or grouping in which the messages were committed
        assert got["excursions"] == in_order["excursions"]
        assert got["revisions"] == in_order["revisions"]
        # alerts also say what was known when: a gap while a batch was still on its way (device.data_gap), a
        # jump across it (device.sensor_fault). One process committing the messages in the cluster's order
        # and grouping raises exactly the same alerts, ids, data and revisions included
        same_order = _reference(tmp_path / "as-committed.db", _as_committed(db, batches), now)
        assert got["excursions"] == same_order["excursions"] and got["revisions"] == same_order["revisions"]
        assert got["alerts"] == same_order["alerts"]
        assert {a[1] for a in got["alerts"]} >= {"excursion.opened", "excursion.alarm", "excursion.closed"}
        # both APIs serve what the collectors stored
        alarms = sorted(a[0] for a in got["alerts"] if a[1] == "excursion.alarm")
        for port in cluster.api_ports:
            listed = _http("GET", f"http://127.0.0.1:{port}/api/v1/alerts?type=excursion.alarm&limit=1000", token)
            assert sorted(a["id"] for a in listed) == alarms

        # a shipment of ten loggers: made and departed through one API, delivered and evaluated through the other;
        # its evaluation, and the excursions and alerts of its series, equal the reference's
        api1, api2 = (f"http://127.0.0.1:{p}/api/v1" for p in cluster.api_ports)
        sid = _http("POST", f"{api1}/shipments", token, SHIPMENT)["id"]
        for dev in SHIPPED:
            _http("POST", f"{api1}/shipments/{sid}/loggers", token, {"device_id": dev})
        for (to, at), api in zip(_trip(t0), (api1, api2), strict=True):  # departed on one, delivered on the other
            _http("POST", f"{api}/shipments/{sid}/transitions", token, {"to": to, "at": to_iso(at)})
        evaluation = _http("GET", f"{api2}/shipments/{sid}/evaluation", token)
        shipped = _ship_reference(tmp_path / "as-committed.db", now, t0)
        assert evaluation == shipped["evaluation"]
        assert sum(len(lg["excursions"]) for lg in evaluation["loggers"]) >= 4 and evaluation["mkt_c"] is not None
        got = _snapshot(db)
        for part in ("excursions", "revisions", "alerts"):
            assert got[part] == shipped["snapshot"][part], part
        assert any(e[3] == sid for e in got["excursions"])  # the shipment's own series were evaluated
        # one audit chain, written by this process and both APIs with the shared key, verifies end to end
        chain = audit.verify(db)
        assert chain.ok and chain.checked >= 1 + len(SHIPPED) + 2, chain
        # each of the three collectors took part (the restarted one counts as collector 2)
        for i in (1, 2, 3):
            assert b"Traceback" not in cluster.log(f"collector-{i}").read_bytes(), cluster.logs()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        db.close()

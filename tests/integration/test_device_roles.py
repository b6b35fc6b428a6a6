"""Device roles through the real Pipeline and API: devices on a calibration bench are judged by the calibration
rules only (no excursion, no rate-of-change fault from bath ramps), shipment loggers by their profile, and a
device that leaves the bench is judged from its next reading on, never on its bench readings."""

from __future__ import annotations

import json

import pytest

from coldtrace.core.model import MINUTE
from coldtrace.services.calibration_service import CalibrationService, SessionSpec
from coldtrace.services.device_roles import set_role
from coldtrace.services.pipeline import Pipeline, RawMessage
from coldtrace.store.devices import EFFECTIVE_ROLE_SQL
from firmware_sim.bench import BenchSpec, bench_series, native_payloads, register_bench_devices
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration

SPEC = BenchSpec(set_points=(-20.0, 25.0), hold_ms=30 * MINUTE)


def publish_bench(pipeline: Pipeline, start: int, rename: dict[str, str] | None = None) -> None:
    rename = rename or {}
    msgs = []
    for dev, (ts, temp) in bench_series(SPEC, start).items():
        dev = rename.get(dev, dev)
        msgs += [RawMessage(m, "mqtt", dev) for m in native_payloads(dev, ts, temp, batch=60)]
    pipeline.ingest_raw_many(msgs)


def alert_types(db, dev: str) -> list[str]:
    return [r[0] for r in db.query("SELECT type FROM alerts WHERE device_id = ? ORDER BY ts", (dev,))]


def test_bench_devices_raise_no_excursion_or_rate_fault_while_the_same_ramps_on_loggers_do(pipeline_env):
    clock, db, pipeline = pipeline_env
    start = clock.now_ms() - SPEC.duration_ms - MINUTE
    register_bench_devices(db, SPEC, clock.now_ms())
    # the same bench readings under other names, for devices nobody said were on a bench
    twins = {d: d.replace("BENCH", "TWIN") for d in (SPEC.reference_id, *(lg.device_id for lg in SPEC.loggers))}
    publish_bench(pipeline, start)
    publish_bench(pipeline, start, twins)
    for dev, twin in twins.items():
        assert alert_types(db, dev) == [], dev  # judged by calibration rules: nothing from the profile
        got = set(alert_types(db, twin))
        assert {"excursion.opened", "excursion.alarm", "device.sensor_fault"} <= got, (twin, got)
        fault = db.query_one("SELECT data FROM alerts WHERE device_id = ? AND type = 'device.sensor_fault'",
                             (twin,))
        assert json.loads(fault[0])["kind"] == "jump"  # the bath's 20 °C/min ramp over a whole minute
    assert db.query_one("SELECT COUNT(*) FROM excursions WHERE device_id LIKE 'BENCH-%'")[0] == 0
    roles = dict(db.query("SELECT id, role FROM devices WHERE id LIKE 'BENCH-%'"))
    assert roles == {SPEC.reference_id: "calibration_reference", **{lg.device_id: "device_under_calibration"
                                                                     for lg in SPEC.loggers}}
    clock.advance(2 * 3600_000)
    assert pipeline.tick() == len(twins)  # the twins are monitored loggers gone silent: offline
    for dev in twins:  # a bench that fell silent is not "offline": its session judges missing data
        assert alert_types(db, dev) == [], dev


def test_a_running_session_puts_its_devices_on_the_bench_and_they_leave_it_when_it_ends(pipeline_env):
    clock, db, pipeline = pipeline_env
    svc = CalibrationService(db, pipeline.readings, pipeline, clock)
    t0 = clock.now_ms() - 2 * 3600_000  # every reading below is in the past

    def send(dev: str, pts: list[tuple[int, float]]) -> None:
        body = {"v": 1, "device_id": dev, "readings": [{"ts": t, "temp_c": v} for t, v in pts]}
        pipeline.ingest_raw(json.dumps(body).encode(), topic_device_id=dev)

    send("LOG-9", [(t0 + k * MINUTE, 5.0) for k in range(10)])  # a shipment logger in its fridge
    sid = svc.create_session(SessionSpec(reference_id="REF-9", duts={"LOG-9": 0.01}, set_points=(25.0,),
                                         mpe_c=0.5, u_ref_c=0.03, start_ms=t0 + 10 * MINUTE))
    role_sql = f"SELECT {EFFECTIVE_ROLE_SQL} FROM devices WHERE id = 'LOG-9'"
    assert db.query_one(role_sql)[0] == "device_under_calibration"  # what GET /devices?role= filters on
    # on the bench at 25 °C for 40 min: judged by the session, not by the 2-8 °C profile
    send("LOG-9", [(t0 + k * MINUTE, 25.0) for k in range(10, 50)])
    assert alert_types(db, "LOG-9") == []
    svc.cancel_session(sid)
    assert db.query_one(role_sql)[0] == "shipment_logger"
    assert db.query_one("SELECT judged_from FROM devices WHERE id = 'LOG-9'")[0] == t0 + 49 * MINUTE + 1
    # back in service: judged by its profile from its next reading on (an excursion there is real) ...
    send("LOG-9", [(t0 + k * MINUTE, 12.0) for k in range(60, 100)])
    assert "excursion.alarm" in alert_types(db, "LOG-9")
    starts = [r[0] for r in db.query("SELECT start_ts FROM excursions WHERE device_id = 'LOG-9'")]
    assert starts and min(starts) == t0 + 60 * MINUTE
    # ... and a late bench reading that forces a re-evaluation still does not make the bench an excursion
    pipeline.invalidate_profile()
    send("LOG-9", [(t0 + 30 * MINUTE + 30_000, 25.0), (t0 + 100 * MINUTE, 12.0)])
    starts = [r[0] for r in db.query("SELECT start_ts FROM excursions WHERE device_id = 'LOG-9' AND superseded = 0")]
    assert starts and min(starts) == t0 + 60 * MINUTE


def test_roles_through_the_api_with_audit_and_validation(tmp_path):
    stack = start_stack(tmp_path)
    try:
        c, h = stack.client, stack.headers
        assert c.post("/api/v1/devices", headers=h, json={"id": "REF-1", "kind": "reference"}).status_code == 201
        assert stack.get("/api/v1/devices/REF-1")["role"] == "calibration_reference"  # from its kind
        assert stack.get("/api/v1/devices/REF-1")["role_source"] == "kind"
        r = c.post("/api/v1/devices", headers=h, json={"id": "DUT-1", "role": "device_under_calibration"})
        assert r.status_code == 201 and (r.json()["role"], r.json()["role_source"]) == (
            "device_under_calibration", "set")
        r = c.put("/api/v1/devices/DUT-1/role", headers=h, json={"role": "shipment_logger", "reason": "back in use"})
        assert r.status_code == 200 and r.json()["role"] == "shipment_logger"
        audit = stack.services.db.query("SELECT actor, old_value, new_value, reason FROM audit_log"
                                        " WHERE action = 'device.role' ORDER BY id")
        assert [json.loads(a["new_value"])["role"] for a in audit] == ["device_under_calibration", "shipment_logger"]
        assert audit[-1]["reason"] == "back in use" and audit[-1]["actor"] == "token:tests"
        bad = c.put("/api/v1/devices/DUT-1/role", headers=h, json={"role": "fridge"})
        assert bad.status_code == 422 and "code" in bad.json()["error"]
        assert c.put("/api/v1/devices/NOPE/role", headers=h, json={"role": None}).status_code == 404
        from coldtrace.services import auth

        viewer = auth.create_token(stack.services.db, role="viewer", name="v", actor="tests")
        r = c.put("/api/v1/devices/DUT-1/role", headers={"Authorization": f"Bearer {viewer}"},
                  json={"role": "device_under_calibration"})
        assert r.status_code == 403
        listed = {d["id"]: d["role"] for d in stack.get("/api/v1/devices")}
        assert listed == {"REF-1": "calibration_reference", "DUT-1": "shipment_logger"}
        assert [d["id"] for d in stack.get("/api/v1/devices", role="calibration_reference")] == ["REF-1"]
        assert [d["id"] for d in stack.get("/api/v1/devices", role="shipment_logger", limit=1)] == ["DUT-1"]
    finally:
        stack.close()


def test_a_session_keeps_devices_without_a_role_on_the_bench_through_the_baths_tail(pipeline_env):
    clock, db, pipeline = pipeline_env
    TAIL = BenchSpec(set_points=(25.0,), hold_ms=60 * MINUTE)  # noqa: N806 - a spec like SPEC
    svc = CalibrationService(db, pipeline.readings, pipeline, clock)
    start = clock.now_ms()
    series = bench_series(TAIL, start)
    sid = svc.create_session(SessionSpec(
        reference_id=TAIL.reference_id, duts={lg.device_id: lg.resolution_c for lg in TAIL.loggers},
        set_points=TAIL.set_points, mpe_c=0.5, u_ref_c=TAIL.reference_U_c, start_ms=start))

    def publish(lo: int, hi: int) -> None:
        msgs = []
        for dev, (ts, temp) in series.items():
            sel = (ts >= lo) & (ts < hi)
            msgs += [RawMessage(m, "mqtt", dev) for m in native_payloads(dev, ts[sel], temp[sel], batch=60)]
        pipeline.ingest_raw_many(msgs)

    # the bench reports minute by minute while the session follows it, as the collector's tick does
    t = start
    while db.query_one("SELECT state FROM calibration_sessions WHERE id = ?", (sid,))[0] == "running":
        assert t < start + TAIL.duration_ms, "the session should complete before the bench ends"
        publish(t, t + MINUTE)
        t += MINUTE
        clock.set(t + 1000)
        svc.tick()
    completed_at = db.query_one("SELECT completed_at FROM calibration_sessions WHERE id = ?", (sid,))[0]
    assert start + TAIL.duration_ms - t >= 5 * MINUTE  # a tail at 25 °C follows the last capture
    publish(t, start + TAIL.duration_ms + 1)  # the bath holds 25 °C until the bench is switched off
    clock.set(start + TAIL.duration_ms + MINUTE)
    for dev in series:  # no role of their own: the session put them on the bench; its tail stays bench data
        assert db.query_one("SELECT role FROM devices WHERE id = ?", (dev,))[0] is None
        assert db.query_one("SELECT judged_from FROM devices WHERE id = ?", (dev,))[0] >= completed_at + 3600_000
        assert [t for t in alert_types(db, dev) if t.startswith(("excursion.", "device.sensor"))] == [], dev
    assert db.query_one("SELECT COUNT(*) FROM excursions")[0] == 0


def test_a_simulation_restart_registers_the_bench_again_without_audit_records_for_unchanged_roles(pipeline_env):
    """Seen from outside (judge of issues 13/17): every restart of `run --simulate` added four audit records
    "device.role calibration_reference -> calibration_reference". A role set to what it already is is no
    change: nothing to record; a real change still is."""
    clock, db, _ = pipeline_env
    register_bench_devices(db, SPEC, clock.now_ms())
    clock.advance(MINUTE)
    register_bench_devices(db, SPEC, clock.now_ms())  # the restart
    rows = db.query("SELECT entity_id, old_value, new_value FROM audit_log WHERE action = 'device.role' ORDER BY id")
    assert sorted(r[0] for r in rows) == sorted([SPEC.reference_id, *(lg.device_id for lg in SPEC.loggers)])
    assert all(json.loads(r[1])["role"] is None for r in rows)
    with db.write() as c:
        out = set_role(c, SPEC.reference_id, "shipment_logger", actor="bob", now=clock.now_ms(), reason="back in use")
    assert out["previous"] == "calibration_reference"
    last = db.query_one("SELECT actor, new_value FROM audit_log WHERE action = 'device.role' ORDER BY id DESC")
    assert (last[0], json.loads(last[1])["role"]) == ("bob", "shipment_logger")

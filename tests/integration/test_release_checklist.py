"""The release checklist of a shipment through the HTTP API, on the case QA reported (issue 16): two loggers,
one of them warm for 6 h (its own MKT far over the 8 °C limit while the combined MKT is under it), the lot's
stability budget exhausted, an unacknowledged alarm, a data gap, an open conflicting duplicate, and a logger
whose calibration falls due during the trip. Each item must say fail with the numbers, and turn to pass
when QA has done what it asks. Expected numbers are worked out by hand.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import HOUR, MINUTE
from coldtrace.services import alerts
from tests.support.stack import ok_json as _ok
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration
API = "/api/v1"
DAY = 24 * HOUR
PASSWORD = "release-checklist-2026"


def mkt_by_hand(blocks: list[tuple[float, float]]) -> float:
    dh_r = 83144.0 / 8.3144598
    total = sum(m for m, _ in blocks)
    return dh_r / -math.log(sum(m * math.exp(-dh_r / (c + 273.15)) for m, c in blocks) / total) - 273.15


def _ingest(services, dev: str, ts: list[int], temps: list[float]) -> None:
    body = {"v": 1, "device_id": dev, "readings": [{"ts": t, "temp_c": v} for t, v in zip(ts, temps, strict=True)]}
    res = services.pipeline.ingest_raw(json.dumps(body).encode(), source="mqtt", topic_device_id=dev)
    assert not res.rejected


def _items(stack, sid: str) -> dict[str, dict]:
    return {i["id"]: i for i in stack.get(f"{API}/shipments/{sid}/checklist")["items"]}


@pytest.fixture
def stack(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    yield s
    s.close()


def test_release_checklist_fails_each_item_then_passes_when_qa_has_acted(stack):
    c, h, svc = stack.client, stack.headers, stack.services
    clock = svc.clock
    t0 = clock.now_ms()
    _ok(c.post(f"{API}/users", headers=h, json={"username": "qp", "full_name": "Dr Ana Silva", "password": PASSWORD,
                                                 "role": "qa"}), 201)
    # COOL is calibrated for the year; WARM's calibration falls due 3 h into the trip
    _ok(c.put(f"{API}/calibration/devices/COOL", headers=h, json={
        "last_calibrated_at": t0 - 30 * DAY, "interval_days": 365, "certificate_ref": "UKAS-0042-2026"}))
    _ok(c.put(f"{API}/calibration/devices/WARM", headers=h, json={
        "last_calibrated_at": t0 + 3 * HOUR - 365 * DAY, "interval_days": 365, "certificate_ref": "UKAS-0043-2025"}))
    sh = _ok(c.post(f"{API}/shipments", headers=h, json={
        "reference": "SHP-REL-1", "origin": "Basel", "destination": "Leeds", "product": "IMP-4471", "lot": "L7",
        "profile_id": "2-8C"}), 201)
    sid = sh["id"]
    for dev in ("COOL", "WARM"):
        _ok(c.post(f"{API}/shipments/{sid}/loggers", headers=h, json={"device_id": dev}), 201)
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=h, json={"to": "in_transit", "at": t0}))
    # 6 h every 5 min. COOL at 3 °C but silent from 1 h to 3 h (a 90 min gap after its 30 min hold); WARM at
    # 9.8 °C all along (its "high" limit, 30 min delay, alarms at 30 min; 360 min beyond 8 °C)
    ts = [t0 + i * 5 * MINUTE for i in range(72)]
    cool_ts = [t for t in ts if not (t0 + HOUR < t < t0 + 3 * HOUR)]
    clock.advance(6 * HOUR + MINUTE)
    _ingest(svc, "COOL", cool_ts, [3.0] * len(cool_ts))
    _ingest(svc, "WARM", ts, [9.8] * 72)
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=h, json={"to": "delivered", "at": t0 + 6 * HOUR}))
    # a second reading for a stored (COOL, ts) with another value, quarantined by ingest and not yet resolved
    with svc.db.write() as conn:
        conn.execute("INSERT INTO quarantine (received_at, source, device_id, reason, detail, reading_ts) VALUES"
                     " (?, 'mqtt', 'COOL', 'conflicting_duplicate', 'stored 4.0, received 9.1', ?)",
                     (clock.now_ms(), t0 + 40 * MINUTE))
        # an unresolved conflict outside the window does not count
        conn.execute("INSERT INTO quarantine (received_at, source, device_id, reason, detail, reading_ts) VALUES"
                     " (?, 'mqtt', 'COOL', 'conflicting_duplicate', 'before departure', ?)",
                     (clock.now_ms(), t0 - HOUR))
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=h, json={"to": "under_review"}))

    cl = stack.get(f"{API}/shipments/{sid}/checklist")
    items = {i["id"]: i for i in cl["items"]}
    assert cl["overall"] == "fail" and cl["uncalibrated_policy"] == "refuse"
    assert {k: i["status"] for k, i in items.items()} == {
        "alarms": "fail", "mkt": "fail", "stability_budget": "fail", "calibration": "fail", "coverage": "fail",
        "conflicts": "fail"}
    for i in cl["items"]:
        assert i["link"].startswith("/")

    # MKT: WARM's own 9.80 °C over the 8 °C limit, although the combined MKT is under it
    combined = mkt_by_hand([(270, 3.0), (360, 9.8)])  # COOL covers 6 h minus its 90 min gap
    assert combined < 8.0
    mkt = items["mkt"]
    assert mkt["combined_c"] == pytest.approx(combined, abs=1e-3) and mkt["limit_c"] == 8.0
    assert [(r["device_id"], round(r["mkt_c"], 2), r["exceeded"]) for r in mkt["rows"]] == [
        ("COOL", 3.0, False), ("WARM", 9.8, True)]
    assert "WARM 9.80 °C" in mkt["detail"]
    # ... and WARM's mkt excursion is the whole window's, closed at arrival (not "ongoing, 0 s" from there)
    ev = stack.get(f"{API}/shipments/{sid}/evaluation")
    warm = next(lg for lg in ev["loggers"] if lg["device_id"] == "WARM")
    m = next(e for e in warm["excursions"] if e["limit_id"] == "mkt")
    assert (m["start_ts"], m["end_ts"], m["duration_ms"], m["alarm_ts"]) == (
        t0, t0 + 6 * HOUR, 6 * HOUR, t0 + 6 * HOUR)

    # the lot's stability budget: 360 of 240 min above 8 °C (WARM, the worst logger)
    high = next(b for b in items["stability_budget"]["rows"] if b["band"] == "high")
    assert (high["used_ms"], high["remaining_ms"], high["status"]) == (360 * MINUTE, 0, "exhausted")
    assert "used 360.0 min of 240.0 min" in items["stability_budget"]["detail"]

    # calibration: COOL valid with its certificate; WARM's due date fell inside the trip
    cal = {r["device_id"]: r for r in items["calibration"]["rows"]}
    assert (cal["COOL"]["result"], cal["COOL"]["certificate_ref"]) == ("pass", "UKAS-0042-2026")
    assert cal["WARM"]["result"] == "fail" and cal["WARM"]["certificate_ref"] == "UKAS-0043-2025"
    assert cal["COOL"]["link"] == "/ui/calibration/devices/COOL"  # an external certificate

    # coverage: COOL's gap from 1.5 h (30 min hold after the 1 h reading) to the 3 h reading
    cov = {r["device_id"]: r for r in items["coverage"]["rows"]}
    assert cov["COOL"]["gaps"] == [[t0 + 90 * MINUTE, t0 + 3 * HOUR]] and cov["COOL"]["gap_ms"] == 90 * MINUTE
    assert cov["COOL"]["coverage_pct"] == pytest.approx(75.0) and cov["WARM"]["gaps"] == []
    # conflicts: one open in COOL's window (the one before departure is outside it)
    assert [(r["device_id"], r["open_conflicts"]) for r in items["conflicts"]["rows"]] == [("COOL", 1), ("WARM", 0)]

    # alarms: WARM's "high" alarm (and its high-warn warning) unacknowledged; QA acknowledges them
    alarms = items["alarms"]["rows"]
    assert {(a["device_id"], a["limit_id"]) for a in alarms} >= {("WARM", "high")}
    assert all(a["acknowledged_at"] is None for a in alarms)
    login = _ok(c.post(f"{API}/auth/login", json={"username": "qp", "password": PASSWORD}))
    qp = {"X-CSRF-Token": login["csrf_token"]}

    # a release over failing items is refused unless the signer overrides them explicitly
    r = c.post(f"{API}/shipments/{sid}/decisions", headers=qp,
               json={"meaning": "released", "reason": "ok", "password": PASSWORD})
    assert r.status_code == 409 and r.json()["error"]["code"] == "checklist_failed"
    assert "Mean kinetic temperature" in r.json()["error"]["message"]
    assert stack.get(f"{API}/shipments/{sid}/decisions") == []

    for a in alarms:
        _ok(c.post(f"{API}/alerts/{a['alert_id']}/acknowledge", headers=qp, json={"comment": "reefer failure"}))
    with svc.db.write() as conn:
        conn.execute("UPDATE quarantine SET resolved_at = ?, resolved_by = 'qp', resolution = 'kept_stored'"
                     " WHERE device_id = 'COOL' AND reading_ts = ?", (clock.now_ms(), t0 + 40 * MINUTE))
    items = _items(stack, sid)
    assert (items["alarms"]["status"], items["conflicts"]["status"]) == ("pass", "pass")
    acked = items["alarms"]["rows"]
    assert all(a["acknowledged_by"] == "qp" and a["comment"] == "reefer failure" for a in acked)
    # what no action can undo stays failed: QA rejects (no override needed for a rejection)
    assert items["mkt"]["status"] == "fail" and items["stability_budget"]["status"] == "fail"
    dec = _ok(c.post(f"{API}/shipments/{sid}/decisions", headers=qp, json={
        "meaning": "rejected", "reason": "WARM MKT 9.80 °C; lot budget exhausted", "password": PASSWORD}), 201)
    assert dec["meaning"] == "rejected"
    trail = stack.get(f"{API}/audit", entity_id=sid, action="decision.sign", **{"from": t0 - HOUR})["items"]
    assert trail[-1]["new_value"]["checklist"]["summary"].startswith("alarms=pass, mkt=fail")


def test_uncalibrated_logger_policy_warn_attaches_and_the_checklist_warns(tmp_path):
    stack = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False,
                        shipments={"uncalibrated_loggers": "warn"})
    try:
        c, h = stack.client, stack.headers
        sh = _ok(c.post(f"{API}/shipments", headers=h, json={
            "reference": "SHP-REL-2", "origin": "A", "destination": "B", "product": "P", "lot": "L",
            "profile_id": "2-8C"}), 201)
        _ok(c.post(f"{API}/shipments/{sh['id']}/loggers", headers=h, json={"device_id": "NOCAL"}), 201)
        cl = stack.get(f"{API}/shipments/{sh['id']}/checklist")
        cal = next(i for i in cl["items"] if i["id"] == "calibration")
        assert (cl["uncalibrated_policy"], cal["policy"], cal["status"]) == ("warn", "warn", "warn")
        assert cal["rows"][0]["status"] == "unknown" and "policy: warn" in cal["detail"]
        assert cl["ready"] is False  # not delivered yet
        trail = stack.get(f"{API}/audit", entity_id=sh["id"], action="shipment.attach_logger")["items"]
        assert "policy 'warn'" in trail[0]["reason"]
    finally:
        stack.close()


def test_a_warning_that_resolved_itself_does_not_hold_the_checklist_on_fail(stack):
    """The judge's walk of issue 16 on the demo: a reefer failure raises high-warn (warning, 15 min) and high
    (alarm, 30 min) at 8 °C; once the excursion has been over for 60 min the warning resolves itself (the
    profile marks warnings self-clearing) and can no longer be acknowledged (409). The checklist asked for its
    acknowledgement all the same, so it failed for ever and every release needed an override. A self-resolved
    warning is handled; the alarm still needs a person."""
    c, h, svc = stack.client, stack.headers, stack.services
    clock = svc.clock
    t0 = clock.now_ms()
    _ok(c.post(f"{API}/users", headers=h, json={"username": "qp", "full_name": "Dr Ana Silva", "password": PASSWORD,
                                                 "role": "qa"}), 201)
    _ok(c.put(f"{API}/calibration/devices/HOT", headers=h, json={
        "last_calibrated_at": t0 - 30 * DAY, "interval_days": 365, "certificate_ref": "UKAS-0044-2026"}))
    sid = _ok(c.post(f"{API}/shipments", headers=h, json={
        "reference": "SHP-REL-3", "origin": "Basel", "destination": "Leeds", "product": "IMP-4471", "lot": "L8",
        "profile_id": "2-8C"}), 201)["id"]
    _ok(c.post(f"{API}/shipments/{sid}/loggers", headers=h, json={"device_id": "HOT"}), 201)
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=h, json={"to": "in_transit", "at": t0}))
    # 5 °C, then 12 °C from 1 h to 2 h (warning at 15 min, alarm at 30 min), then 5 °C again until 6 h
    ts = [t0 + i * 5 * MINUTE for i in range(73)]
    clock.advance(6 * HOUR + MINUTE)
    _ingest(svc, "HOT", ts, [12.0 if HOUR <= t - t0 < 2 * HOUR else 5.0 for t in ts])
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=h, json={"to": "delivered", "at": t0 + 6 * HOUR}))
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=h, json={"to": "under_review"}))
    alerts.tick(svc.db, clock.now_ms())  # the clock tick: the warning's excursion ended 4 h ago

    rows = {a["limit_id"]: a for a in _items(stack, sid)["alarms"]["rows"]}
    assert {k: a["severity"] for k, a in rows.items()} == {"high-warn": "warning", "high": "alarm"}
    warn = stack.get(f"{API}/alerts/{rows['high-warn']['alert_id']}")
    assert warn["state"] == "resolved"
    login = _ok(c.post(f"{API}/auth/login", json={"username": "qp", "password": PASSWORD}))
    qp = {"X-CSRF-Token": login["csrf_token"]}
    r = c.post(f"{API}/alerts/{rows['high-warn']['alert_id']}/acknowledge", headers=qp, json={"comment": "seen"})
    assert r.status_code == 409  # nobody can acknowledge it any more
    # the alarm is what needs a person: unacknowledged, the item fails on it alone
    items = _items(stack, sid)
    assert items["alarms"]["status"] == "fail"
    assert items["alarms"]["detail"] == "1 of 2 alarms not acknowledged (1 warning resolved itself)"
    _ok(c.post(f"{API}/alerts/{rows['high']['alert_id']}/acknowledge", headers=qp, json={"comment": "reefer failure"}))
    items = _items(stack, sid)
    assert items["alarms"]["status"] == "pass", items["alarms"]["detail"]
    rows = {a["limit_id"]: a for a in items["alarms"]["rows"]}
    assert rows["high"]["acknowledged_by"] == "qp" and rows["high"]["auto_resolved_at"] is None
    assert rows["high-warn"]["acknowledged_at"] is None
    assert rows["high-warn"]["auto_resolved_at"] == clock.now_ms()  # by the tick above
    assert items["alarms"]["detail"] == "2 alarms, 1 acknowledged, 1 warning resolved itself (2 alarmed excursions)"
    cl = stack.get(f"{API}/shipments/{sid}/checklist")
    assert cl["overall"] == "pass", [(i["id"], i["status"], i["detail"]) for i in cl["items"]]
    # the trip report agrees with the checklist: the warning resolved itself, the alarm has its person
    html = c.get(f"{API}/shipments/{sid}/report.html", headers=h)
    assert html.status_code == 200
    text = re.sub(r"<[^>]+>", " ", html.text)
    assert "resolved itself (self-clearing; no acknowledgement needed); auto resolved by system at" in text
    assert "acknowledged by qp at" in text and "reefer failure" in text
    assert "NOT ACKNOWLEDGED" not in text

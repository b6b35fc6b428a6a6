"""A shipment's whole life through the HTTP API: create, attach loggers, readings arrive over HTTP ingest,
an excursion, QA acknowledges its alarm, signs a rejection; the trip report and the CSV hold the numbers.

Expected numbers are worked out by hand here (and MKT with the formula written out below), not taken from
the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import math

import pypdf
import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.errors import StoreError
from coldtrace.core.model import HOUR, MINUTE, Reading
from coldtrace.services import shipments
from coldtrace.store.db import is_integrity_error
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration
API = "/api/v1"
QA_PASSWORD = "cold-chain-qa-2026"


def mkt_by_hand(blocks: list[tuple[float, float]]) -> float:
    """RULES.md MKT over (minutes, °C) blocks: ΔH = 83.144 kJ/mol, R = 8.3144598 J/(mol·K)."""
    dh_r = 83144.0 / 8.3144598
    total = sum(m for m, _ in blocks)
    mean = sum(m * math.exp(-dh_r / (c + 273.15)) for m, c in blocks) / total
    return dh_r / -math.log(mean) - 273.15


@pytest.fixture
def stack(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    yield s
    s.close()


def _ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json() if r.headers.get("content-type", "").startswith("application/json") else r


def test_shipment_life(stack):
    c, admin, clock = stack.client, stack.headers, stack.services.clock
    t0 = clock.now_ms()
    _ok(c.post(f"{API}/users", headers=admin, json={"username": "qa1", "full_name": "Quinn Assurance",
                                                     "password": QA_PASSWORD, "role": "qa"}), 201)
    device_token = _ok(c.post(f"{API}/auth/device-tokens", headers=admin,
                              json={"device_ids": ["LOG-1", "LOG-2"]}), 201)["token"]
    # QA works in the browser: a cookie session and the CSRF header on writes
    login = _ok(c.post(f"{API}/auth/login", json={"username": "qa1", "password": QA_PASSWORD}))
    qa = {"X-CSRF-Token": login["csrf_token"]}
    assert c.cookies.get("ct_session")
    r = c.post(f"{API}/shipments", json={"reference": "SHP-0042", "origin": "Basel", "destination": "Leeds",
                                          "product": "IMP-7", "lot": "L2026-01", "profile_id": "2-8C"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"  # cookie without CSRF header
    sh = _ok(c.post(f"{API}/shipments", headers=qa, json={
        "reference": "SHP-0042", "origin": "Basel", "destination": "Leeds", "product": "IMP-7",
        "lot": "L2026-01", "profile_id": "2-8C"}), 201)
    sid = sh["id"]
    # a logger without any calibration record is refused (policy "refuse", the default); recorded, accepted
    r = c.post(f"{API}/shipments/{sid}/loggers", headers=qa, json={"device_id": "LOG-1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "logger_uncalibrated"
    for dev in ("LOG-1", "LOG-2"):
        _ok(c.put(f"{API}/calibration/devices/{dev}", headers=qa, json={
            "last_calibrated_at": t0 - 30 * 24 * HOUR, "interval_days": 365, "certificate_ref": f"EXT-{dev}"}))
        _ok(c.post(f"{API}/shipments/{sid}/loggers", headers=qa, json={"device_id": dev}), 201)
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=qa, json={"to": "in_transit", "at": t0}))

    # 6 h every 5 min; LOG-1 at 10 °C for readings 24..35 (60 min), else 5 °C; LOG-2 steady at 4 °C
    clock.advance(6 * HOUR + MINUTE)
    temps1 = [10.0 if 24 <= i < 36 else 5.0 for i in range(72)]
    for dev, temps in (("LOG-1", temps1), ("LOG-2", [4.0] * 72)):
        body = {"v": 1, "device_id": dev, "seq": 1,
                "readings": [{"ts": t0 + i * 5 * MINUTE, "temp_c": t} for i, t in enumerate(temps)]}
        res = _ok(c.post(f"{API}/ingest", content=json.dumps(body),
                         headers={"Authorization": f"Bearer {device_token}", "Content-Type": "application/json"}),
                  202)
        assert res == {"accepted": 72, "duplicates": 0, "rejected": []}

    # the logger's alarm is raised in real time; QA acknowledges it
    alarms = [a for a in stack.get(f"{API}/alerts", type="excursion.alarm", device_id="LOG-1")
              if a["data"]["limit_id"] == "high"]
    assert len(alarms) == 1 and alarms[0]["ts"].startswith("2026-11-26T12:30")  # 30 min after 12:00
    # six hours later the idle session has ended (Annex 11 §12): QA logs in again
    assert c.get(f"{API}/auth/session").json()["error"]["code"] == "session_expired"
    login = _ok(c.post(f"{API}/auth/login", json={"username": "qa1", "password": QA_PASSWORD}))
    qa = {"X-CSRF-Token": login["csrf_token"]}
    _ok(c.post(f"{API}/alerts/{alarms[0]['id']}/acknowledge", headers=qa,
               json={"comment": "door left open at the hub"}))
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=qa, json={"to": "delivered", "at": t0 + 6 * HOUR}))
    _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=qa, json={"to": "under_review"}))

    ev = stack.get(f"{API}/shipments/{sid}/evaluation")
    log1 = next(lg for lg in ev["loggers"] if lg["device_id"] == "LOG-1")
    high = next(e for e in log1["excursions"] if e["limit_id"] == "high")
    assert (high["start_ts"], high["end_ts"]) == (t0 + 120 * MINUTE, t0 + 180 * MINUTE)
    assert high["duration_ms"] == 60 * MINUTE and high["peak_c"] == 10.0 and high["degree_minutes"] == 120.0
    assert high["alarm_ts"] == t0 + 150 * MINUTE
    s1 = log1["stats"]
    assert (s1["count"], s1["min_c"], s1["max_c"], s1["covered_ms"]) == (72, 5.0, 10.0, 360 * MINUTE)
    assert s1["mean_c"] == pytest.approx((300 * 5 + 60 * 10) / 360, abs=1e-4)
    assert s1["in_range_ms"] == 300 * MINUTE and s1["gap_ms"] == 0
    mkt1 = mkt_by_hand([(300, 5.0), (60, 10.0)])
    assert s1["mkt_c"] == pytest.approx(mkt1, abs=1e-3)
    mkt_ship = mkt_by_hand([(300, 5.0), (60, 10.0), (360, 4.0)])
    assert ev["mkt_c"] == pytest.approx(mkt_ship, abs=1e-3)

    # signing: the password is re-entered; a wrong one is refused and recorded
    bad = c.post(f"{API}/shipments/{sid}/decisions", headers=qa,
                 json={"meaning": "rejected", "reason": "x", "password": "wrong password"})
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "signature_failed"
    first = _ok(c.post(f"{API}/shipments/{sid}/decisions", headers=qa, json={
        "meaning": "quarantined", "reason": "pending stability assessment", "password": QA_PASSWORD}), 201)
    again = c.post(f"{API}/shipments/{sid}/decisions", headers=qa,
                   json={"meaning": "rejected", "reason": "r", "password": QA_PASSWORD})
    assert again.status_code == 409  # a later decision must say why it supersedes
    dec = _ok(c.post(f"{API}/shipments/{sid}/decisions", headers=qa, json={
        "meaning": "rejected", "reason": "60 min above 8 °C exceeds the stability data",
        "password": QA_PASSWORD, "supersede_reason": "stability assessment received"}), 201)
    assert dec["supersedes_id"] == first["id"] and dec["printed_name"] == "Quinn Assurance"
    assert dec["signature_valid"] and dec["signed_at"] == "2026-11-26T16:01:00.000Z"
    assert stack.get(f"{API}/shipments/{sid}")["state"] == "rejected"
    with pytest.raises(StoreError) as refused, stack.services.db.write() as conn:  # a decision is never edited
        conn.execute("UPDATE shipment_decisions SET meaning = 'released'")
    assert is_integrity_error(refused.value), refused.value  # the trigger, in either dialect

    # the trip report states the numbers
    pdf = c.get(f"{API}/shipments/{sid}/report.pdf", headers=admin)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages).split())
    for expected in ("SHP-0042", "IMP-7 / L2026-01", "5.00 °C", "10.00 °C", "5.83 °C", f"{mkt1:.2f} °C",
                     f"{mkt_ship:.2f} °C", "83.3 %", "60.0 min", "120.0", "4.00 °C", "REJECTED", "QUARANTINED",
                     "Quinn Assurance (qa1)", "60 min above 8 °C exceeds the stability data",
                     "door left open at the hub", "acknowledged by qa1", "stability assessment received"):
        assert expected in text, expected
    html = c.get(f"{API}/shipments/{sid}/report.html", headers=admin).text
    assert "<svg" in html and f"{mkt1:.2f} °C" in html and "door left open at the hub" in html

    # the CSV equals the stored readings of each logger's window
    got = list(csv.DictReader(io.StringIO(c.get(f"{API}/shipments/{sid}/readings.csv", headers=admin).text)))
    stored = [r for dev in ("LOG-1", "LOG-2") for r in stack.services.readings.query(dev, t0, t0 + 6 * HOUR)]
    assert [(g["device_id"], int(g["ts_ms"]), float(g["temp_c"])) for g in got] == \
           [(r.device_id, r.ts, r.temp_c) for r in stored]
    assert len(got) == 144

    # the lot's stability budget: 60 of the 240 min above 8 °C used
    band = next(b for b in stack.get(f"{API}/lots/IMP-7/L2026-01/budget")["bands"] if b["band"] == "high")
    assert (band["used_ms"], band["remaining_ms"], band["status"]) == (60 * MINUTE, 180 * MINUTE, "ok")

    trail = stack.get(f"{API}/audit", entity_id=sid, **{"from": t0 - HOUR})["items"]
    actions = [a["action"] for a in trail]
    assert actions[0] == "shipment.create" and actions.count("decision.sign") == 2
    assert "decision.signature_failed" in actions
    assert stack.get(f"{API}/audit/verify")["ok"] is True


def test_lot_budget_alerts_below_ten_percent_and_when_exhausted(stack):
    """Three legs of one lot: 60 + 170 min above 8 °C leave 10 of 240 min (4 %) -> low; 20 more -> exhausted."""
    svc, now = stack.services, stack.services.clock.now_ms()
    db = svc.db
    start = now - 30 * HOUR
    raised = []

    def emit(conn, alerts, at):
        raised.extend(a.type for a in alerts)
        return svc.pipeline.emit(conn, alerts, at)

    for leg, minutes_above in enumerate((60, 170, 20)):
        dev = f"LEG-{leg}"
        t = start + leg * 8 * HOUR
        sh = shipments.create_shipment(db, reference=f"LEG-{leg}", origin="A", destination="B", product="IMP-9",
                                       lot="L1", profile_id="2-8C", actor="qa1", now_ms=now)
        shipments.attach_logger(db, sh["id"], dev, actor="qa1", now_ms=now, uncalibrated="warn")
        shipments.transition(db, svc.readings, sh["id"], "in_transit", actor="qa1", now_ms=now, at_ts=t)
        n_above = minutes_above // 5
        temps = [9.0] * n_above + [5.0] * (72 - n_above)
        svc.readings.write([Reading(dev, t + i * 5 * MINUTE, v) for i, v in enumerate(temps)])
        shipments.transition(db, svc.readings, sh["id"], "delivered", actor="qa1", now_ms=now,
                             at_ts=t + 6 * HOUR, emit=emit)
        if leg == 0:
            assert raised == []
        if leg == 1:
            assert raised == ["lot.stability_low"]
    assert raised == ["lot.stability_low", "lot.stability_low", "lot.stability_exhausted"]
    stored = db.query("SELECT type, severity, data FROM alerts WHERE type LIKE 'lot.%' ORDER BY created_at, type")
    assert [(r["type"], r["severity"]) for r in stored] == [("lot.stability_exhausted", "critical"),
                                                            ("lot.stability_low", "warning")]
    exhausted = json.loads(stored[0]["data"])
    assert exhausted["used_ms"] == 250 * MINUTE and exhausted["remaining_ms"] == 0
    assert db.query_one("SELECT COUNT(*) FROM outbox WHERE type LIKE 'lot.%'")[0] == 2  # each once

"""A conflicting reading on the QA pages (issue 12 item 4), end to end: a logger on a shipment stores a value
over MQTT (the pipeline), the same (device, ts) then arrives over HTTP with another value. The quarantine page
shows both values and where each came from, the device page and the shipment's release checklist say
"conflicting data", and so does the trip report, until QA resolves it on the quarantine page; then every flag
is gone and the stored series is unchanged."""

from __future__ import annotations

import html

import pytest

from coldtrace.services import auth
from tests.e2e.conftest import login
from tests.e2e.live_app import HOUR, MINUTE, ingest_series
from tests.support.stack import ok_json as _ok

pytestmark = pytest.mark.e2e

DEV = "LOG-E2E-C"


def test_a_conflict_is_flagged_on_every_page_until_qa_resolves_it(live_app, page, shot):
    s = live_app.services
    now = s.clock.now_ms()
    t0 = now - 2 * HOUR - now % MINUTE
    with live_app.api() as c:
        _ok(c.put(f"/api/v1/calibration/devices/{DEV}", json={
            "last_calibrated_at": now - 30 * 86_400_000, "interval_days": 365, "certificate_ref": "CAL-2026-222"}))
        sid = _ok(c.post("/api/v1/shipments", json={
            "reference": "SHP-E2E-CONFLICT", "origin": "Basel depot", "destination": "Site 7, Turin",
            "product": "IMP-4471 vials", "lot": "L2026-131", "profile_id": "2-8C"}), 201)["id"]
        _ok(c.post(f"/api/v1/shipments/{sid}/loggers", json={"device_id": DEV}), 201)
        _ok(c.post(f"/api/v1/shipments/{sid}/transitions", json={"to": "in_transit", "at": t0}))
        ts = [t0 + i * 5 * MINUTE for i in range(20)]
        ingest_series(s, DEV, ts, [5.0] * len(ts))  # over MQTT (the pipeline, source mqtt)
        conflict_ts = ts[10]
        token = auth.create_device_token(s.db, [DEV])
        r = c.post("/api/v1/ingest", headers={"Authorization": f"Bearer {token}"},
                   json={"v": 1, "device_id": DEV, "seq": 99, "readings": [{"ts": conflict_ts, "temp_c": 9.4}]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflicting_duplicate", r.text
        # the trip report (what an inspector reads) flags it as the checklist does
        report = c.get(f"/api/v1/shipments/{sid}/report.html")
        assert report.status_code == 200
        assert "Conflicting data" in report.text and "1 conflicting duplicate reading(s) await QA" in report.text

    login(page, live_app.base_url, f"/ui/quarantine?device_id={DEV}")
    row = page.locator("tr", has=page.locator("dl.conflict"))
    row.wait_for()
    values = " ".join(row.locator("dl.conflict").inner_text().split())
    assert "Stored (kept) from mqtt 5 °C (seq 0)" in values and "Received from http 9.4 °C (seq 99)" in values, values
    assert "Resolving" not in row.inner_text()  # QA may resolve: the form is there
    shot(page, "quarantine-conflict-open")

    page.goto(f"{live_app.base_url}/ui/devices/{DEV}")
    page.get_by_text("conflicting data", exact=True).wait_for()
    assert "1 open conflict" in page.locator("main").inner_text()
    shot(page, "device-conflicting-data")

    page.goto(f"{live_app.base_url}/ui/shipments/{sid}")
    item = page.locator("#release-checklist [data-item=conflicts]")
    item.wait_for()
    assert "FAIL" in item.inner_text() and f"{DEV} 1" in item.inner_text()
    shot(page, "shipment-checklist-conflict")

    # QA resolves it on the quarantine page (audited); every flag goes
    page.goto(f"{live_app.base_url}/ui/quarantine?device_id={DEV}")
    row = page.locator("tr", has=page.locator("dl.conflict"))
    row.get_by_label("Decision").select_option("stored_value_correct")
    row.get_by_label("Comment").fill("logger re-sent a corrupted frame over the cellular fallback; 5.0 confirmed")
    row.get_by_role("button", name="Resolve").click()
    page.locator("tr", has=page.locator("dl.conflict")).get_by_text("resolved", exact=True).wait_for()
    shot(page, "quarantine-conflict-resolved")
    with live_app.api() as c:
        q = _ok(c.get("/api/v1/quarantine", params={"device_id": DEV}))
        assert [(x["resolution"].split(":")[0], x["resolved_by"] is not None) for x in q] == [
            ("stored_value_correct", True)]
        assert _ok(c.get(f"/api/v1/devices/{DEV}"))["conflicting_data"] is False
        items = {i["id"]: i for i in _ok(c.get(f"/api/v1/shipments/{sid}/checklist"))["items"]}
        assert items["conflicts"]["status"] == "pass"
        report = html.unescape(c.get(f"/api/v1/shipments/{sid}/report.html").text)
        assert "no open conflicting duplicate in the loggers' windows" in report
        stored = _ok(c.get(f"/api/v1/devices/{DEV}/readings", params={"limit": 100}))["items"]
        assert [x["temp_c"] for x in stored if x["ts_ms"] == conflict_ts] == [5.0]  # the series is not edited
    page.goto(f"{live_app.base_url}/ui/shipments/{sid}")
    item = page.locator("#release-checklist [data-item=conflicts]")
    item.wait_for()
    assert "PASS" in item.inner_text()
    page.goto(f"{live_app.base_url}/ui/devices/{DEV}")
    page.locator("main h1").wait_for()
    page.wait_for_load_state("networkidle")
    assert "conflicting data" not in page.locator("main").inner_text()

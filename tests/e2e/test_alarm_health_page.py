"""The alarm system health page in headless Chromium against the real app: a burst of alarms (a flood and a
chattering source), a standing excursion alarm and the most frequent sources, as the API counts them; and the
calibration list saying "valid, drift predicted <date>"."""

from __future__ import annotations

import math

import pytest

from coldtrace.core.model import Alert
from tests.e2e.conftest import DRAWN_PIXELS_JS, login
from tests.e2e.live_app import DAY, HOUR, MINUTE, ingest_series

pytestmark = pytest.mark.e2e

CHATTY, STANDING, DRIFTING = "LOG-E2E-CHATTY", "LOG-E2E-WARM", "LOG-E2E-DRIFT"


@pytest.fixture(scope="module")
def alarms(live_app):
    s = live_app.services
    now = s.clock.now_ms()
    # a probe with a loose contact: 12 sensor faults at once (a flood, and one source chattering)
    s.pipeline.emit_now([Alert(f"e2e-chatty-{k}", "device.sensor_fault", "alarm", CHATTY, now - k * 1000,
                               {"kind": "jump", "k": k}) for k in range(12)])
    # a fridge above 8 °C for 30 h, still warm: its alarms have been active for more than a day
    ts = [now - 30 * HOUR + k * 5 * MINUTE for k in range(12 * 30)]
    ingest_series(s, STANDING, ts, [9.3 + 0.2 * math.sin(k / 5) for k in range(len(ts))])
    with live_app.api() as c:
        # a logger calibrated 30 days ago whose as-found history reaches the tolerance in ~4 months
        assert c.post("/api/v1/devices", json={"id": DRIFTING, "name": "fridge 3 probe"}).status_code == 201
        c.put(f"/api/v1/calibration/devices/{DRIFTING}", json={
            "last_calibrated_at": now - 30 * DAY, "interval_days": 365}).raise_for_status()
        for k, err in enumerate((0.0, 0.2)):
            c.post(f"/api/v1/calibration/devices/{DRIFTING}/history", json={
                "set_point_c": 5.0, "ts": now - (2 - k) * 365 * DAY, "error_c": err, "expanded_u_c": 0.04,
                "mpe_c": 0.5, "certificate_ref": f"CAL-D-{k}"}).raise_for_status()
        report = c.get("/api/v1/alarm-health", params={"from": now - DAY, "to": now + MINUTE}).json()
        cal = c.get(f"/api/v1/calibration/devices/{DRIFTING}").json()["status"]
    return {"report": report, "calibration": cal}


def test_alarm_health_page_shows_rate_floods_standing_chattering_and_top_alarms(live_app, alarms, page, shot):
    rep = alarms["report"]
    assert rep["floods"]["count"] >= 1 and rep["standing"]["items"] and rep["chattering"]["items"]
    login(page, live_app.base_url, "/ui/alarm-health")
    page.get_by_role("heading", name="Alarm system health").wait_for()
    assert page.get_by_role("link", name="Alarm health").get_attribute("aria-current") == "page"
    tiles = page.get_by_label("Alarm system health summary")
    tiles.get_by_text("Floods").wait_for()
    tile = lambda label: tiles.locator(".tile", has=page.get_by_text(label, exact=True)).locator(".v").inner_text()  # noqa: E731
    # the page shows what the API counts (the page asks for the last 24 h up to a minute from now)
    assert tile("Floods") == str(rep["floods"]["count"])
    assert tile("Standing") == str(len(rep["standing"]["items"]))
    assert tile("Chattering") == str(len(rep["chattering"]["items"]))
    assert int(tile("Alarms in range")) == rep["alarms"]
    # the plot: bars per 10 minutes with the acceptable and flood lines, described for screen readers
    canvas = "#alarm-rate-chart canvas"
    page.wait_for_function(f"() => ({DRAWN_PIXELS_JS})(\"{canvas}\") > 1000")
    label = page.locator("#alarm-rate-chart .chart-canvas").get_attribute("aria-label")
    assert f"{rep['alarms']} alarms" in label and "flood" in label
    card = lambda title: page.locator("section", has=page.get_by_role("heading", name=title))  # noqa: E731
    floods = card("Floods (more than 10 alarms in 10 minutes)")
    assert floods.get_by_role("row").count() == 1 + rep["floods"]["count"]
    standing = card("Standing alarms (active for more than 24 h)")
    row = standing.get_by_role("row").filter(has_text=STANDING).first
    assert "Excursion alarm (high" in row.inner_text()
    assert row.locator("time").first.get_attribute("title").endswith("UTC")
    chatter = card("Chattering alarms (3 or more activations in 1 minute)")
    assert "12" in chatter.get_by_role("row").filter(has_text=CHATTY).inner_text()
    top = card("The 10 most frequent alarms")
    first = top.get_by_role("row").nth(1).inner_text()
    assert CHATTY in first and "Sensor fault" in first
    shot(page, "alarm-health")
    # another range: the buttons say which one is shown, the page follows without a reload
    page.evaluate("window.__not_reloaded = true")
    page.get_by_role("button", name="7d").click()
    assert page.get_by_role("button", name="7d").get_attribute("aria-pressed") == "true"
    page.wait_for_url("**/ui/alarm-health?range=7d")
    assert page.evaluate("window.__not_reloaded === true")


def test_calibration_list_says_valid_drift_predicted_with_the_date(live_app, alarms, page, shot):
    st = alarms["calibration"]
    assert st["status"] == "valid" and st["drift_predicted_ms"] is not None
    assert st["summary"].startswith("valid, drift predicted ")
    login(page, live_app.base_url, "/ui/calibration")
    row = page.get_by_role("row").filter(has_text=DRIFTING)
    row.get_by_text("drift predicted").wait_for()
    text = row.inner_text()
    assert "valid" in text and "drift predicted" in text
    when = row.locator(".drift-predicted time")
    assert when.get_attribute("datetime")[:10] == st["summary"][-10:]
    shot(page, "calibration-drift-predicted")
    with live_app.api() as c:
        (a,) = c.get("/api/v1/alerts", params={"type": "calibration.drift_predicted", "device_id": DRIFTING}).json()
    assert a["severity"] == "warning"
    # the fleet says it too, next to the device
    page.get_by_role("link", name="Fleet").click()
    fleet_row = page.get_by_role("row").filter(has_text=DRIFTING)
    fleet_row.get_by_text("drift predicted").wait_for()
    assert "valid" in fleet_row.inner_text()

"""The QA pages in headless Chromium against the real app: log in, a shipment's chart with its excursion,
acknowledging an alert (seen through the API), a calibration drift chart. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import DRAWN_PIXELS_JS, login
from tests.e2e.live_app import (
    DRIFT_DEVICE,
    EXCURSION_LOGGER,
    FLEET_LOGGER,
    QA_NAME,
    QA_PASSWORD,
    SHIPMENT_REF,
    ingest_series,
)

pytestmark = pytest.mark.e2e



def test_pages_need_a_session_and_login_returns_to_the_page(live_app):
    with httpx.Client(base_url=live_app.base_url, follow_redirects=False) as c:
        r = c.get("/ui/alerts?state=open")
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=/ui/alerts%3Fstate%3Dopen"
        assert c.get("/ui/login?next=//evil.example/").status_code == 200  # served, and next is never trusted
        assert "default-src 'self'" in c.get("/ui/login").headers["content-security-policy"]
        assert c.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
        assert c.get("/ui/no-such-page").status_code == 404


def test_login_rejects_a_wrong_password_then_shows_the_fleet(live_app, page, shot):
    page.goto(f"{live_app.base_url}/ui/fleet")
    page.wait_for_url("**/ui/login?next=/ui/fleet")
    page.get_by_label("Username").fill("qa.anna")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    error = page.get_by_role("alert")
    error.wait_for()
    assert "Wrong username or password" in error.inner_text()
    shot(page, "login-error")
    login(page, live_app.base_url)
    assert page.locator(".user").inner_text().startswith(QA_NAME)
    row = page.get_by_role("row").filter(has_text=FLEET_LOGGER)
    row.wait_for()
    assert "online" in row.inner_text() or "unknown" in row.inner_text()
    assert "64 %" in row.inner_text()  # battery of the seeded payloads
    # times follow the browser's zone (Europe/Zurich) and give UTC on hover
    t = row.locator("time").first
    assert t.get_attribute("title").endswith("UTC")
    page.get_by_role("row").filter(has_text=EXCURSION_LOGGER).wait_for()
    shot(page, "fleet")
    # live: a new reading arrives; the page shows it without a reload
    page.evaluate("window.__not_reloaded = true")
    now = live_app.services.clock.now_ms()
    ingest_series(live_app.services, FLEET_LOGGER, [now - 1000], [7.77], battery=63)
    row.filter(has_text="7.77 °C").wait_for(timeout=15_000)
    assert page.evaluate("window.__not_reloaded === true")


def test_shipment_with_an_excursion_shows_its_chart(live_app, page, shot):
    login(page, live_app.base_url, "/ui/shipments")
    page.get_by_role("link", name=SHIPMENT_REF).click()
    page.wait_for_url(f"**/ui/shipments/{live_app.facts['shipment_id']}")
    canvas = f"[data-device='{EXCURSION_LOGGER}'] canvas"
    page.wait_for_selector(canvas)
    page.wait_for_function(f"() => ({DRAWN_PIXELS_JS})(\"{canvas}\") > 2000")
    assert page.evaluate(DRAWN_PIXELS_JS, canvas) > 2000
    card = page.locator("section", has=page.locator(canvas))
    text = card.inner_text()
    assert "above 8 °C" in text and "alarm" in text  # the excursion row
    assert re.search(r"Min / mean / max\s+\d", text)
    assert "MKT" in page.locator(".tiles").inner_text()
    aria = page.locator(f"[data-device='{EXCURSION_LOGGER}'] [role=img]").get_attribute("aria-label")
    assert "excursion" in aria and "highest 11." in aria
    assert page.get_by_role("button", name="Sign decision…").is_visible()
    # the release checklist: the unacknowledged alarm fails its item, with a link to it
    checklist = page.locator("#release-checklist")
    alarms = checklist.locator("[data-item=alarms]")
    assert "FAIL" in alarms.inner_text() and "not acknowledged" in alarms.inner_text()
    assert "CAL-2026-101" in checklist.locator("[data-item=calibration]").inner_text()
    assert 'policy "refuse"' in checklist.inner_text()
    assert "high" in page.locator("#lot-budget").inner_text()
    shot(page, "shipment")
    # the decision dialog: no decision pre-selected; nothing is signed without one, a reason and the password
    page.get_by_role("button", name="Sign decision…").click()
    dialog = page.get_by_role("dialog")
    assert dialog.locator("input[name=meaning]:checked").count() == 0
    dialog.get_by_role("button", name="Sign").click()
    alert_text = dialog.get_by_role("alert").inner_text()
    assert "choose a decision" in alert_text and "give a reason" in alert_text
    assert "Release checklist: FAIL" in dialog.inner_text()
    dialog.get_by_role("radio", name="Release").check()
    shot(page, "signature-dialog")
    # a release over failing checklist items must be confirmed as such
    dialog.get_by_label("Reason (recorded with the signature)").fill(
        "Excursion of 73 min above 8 °C; stability data allow 240 min cumulative. MKT within limit.")
    dialog.get_by_label("Password of qa.anna (re-enter to sign)").fill("wrong password")
    dialog.get_by_role("button", name="Sign").click()
    dialog.get_by_text("confirm that you release over the failing checklist items").wait_for()
    dialog.get_by_role("checkbox", name="I release although").check()
    # sign: the password is re-entered; a wrong one is refused and nothing is recorded
    dialog.get_by_role("button", name="Sign").click()
    dialog.get_by_text("the password is not correct").wait_for()
    with live_app.api() as api:
        assert api.get(f"/api/v1/shipments/{live_app.facts['shipment_id']}/decisions").json() == []
    dialog.get_by_label("Password of qa.anna (re-enter to sign)").fill(QA_PASSWORD)
    dialog.get_by_role("button", name="Sign").click()
    page.get_by_text("signature verified").wait_for()
    with live_app.api() as api:
        decisions = api.get(f"/api/v1/shipments/{live_app.facts['shipment_id']}/decisions").json()
    assert [(d["meaning"], d["signer_username"], d["signature_valid"]) for d in decisions] == [
        ("released", "qa.anna", True)]
    assert "released" in page.locator("h1").inner_text()
    shot(page, "shipment-released")


def test_acknowledge_an_alert_with_a_comment(live_app, page, shot):
    with live_app.api() as api:
        alarms = api.get("/api/v1/alerts", params={"type": "excursion.alarm", "state": "open",
                                                    "device_id": EXCURSION_LOGGER}).json()
    assert alarms, "the seeded excursion raised no open alarm"
    target = alarms[0]
    assert target["isa_state"] == "unack_cleared"  # the reefer was cooled back: over, but nobody acknowledged
    login(page, live_app.base_url, "/ui/alerts")
    row = page.get_by_role("row").filter(has_text=EXCURSION_LOGGER).filter(has_text="Excursion alarm").first
    assert "Cleared, unacknowledged" in row.inner_text()
    row.get_by_role("button", name="Excursion alarm").click()
    page.get_by_label("Assign to").fill("qa.anna")
    page.get_by_role("button", name="Assign", exact=True).click()
    page.get_by_text("Assigned to qa.anna.").wait_for()
    page.get_by_label("Comment (recorded with the acknowledgement)").fill("Pallet moved to the cold room at 14:05")
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_text("Acknowledged.").wait_for()
    with live_app.api() as api:
        a = api.get(f"/api/v1/alerts/{target['id']}").json()
        handling = api.get(f"/api/v1/alerts/{target['id']}/handling").json()
    # acknowledged and already cleared: back to normal at once (ISA-18.2), with the person's acknowledgement
    assert (a["state"], a["isa_state"]) == ("resolved", "normal")
    assert handling["acknowledged_by"] == "qa.anna" and handling["assignee"] == "qa.anna"
    assert handling["ack_comment"] == "Pallet moved to the cold room at 14:05"
    assert handling["resolution"].startswith("Returned to normal: acknowledged by qa.anna")
    expect(page.locator("#alert-detail").get_by_text("Normal", exact=True).first).to_be_visible()
    page.get_by_label("State").select_option("resolved")  # it left the inbox; here with its assignee
    handled = page.get_by_role("row").filter(has_text="Excursion alarm").filter(has_text="qa.anna")
    handled.first.wait_for()
    assert "Normal" in handled.first.inner_text()
    shot(page, "alert-acknowledged")


def test_calibration_drift_chart_with_the_predicted_date(live_app, page, shot):
    login(page, live_app.base_url, "/ui/calibration")
    page.get_by_role("link", name=DRIFT_DEVICE, exact=True).first.click()
    page.wait_for_url(f"**/ui/calibration/devices/{DRIFT_DEVICE}")
    canvas = ".drift-chart canvas"
    page.wait_for_selector(canvas)
    page.wait_for_function(f"() => ({DRAWN_PIXELS_JS})(\"{canvas}\") > 1000")
    with live_app.api() as api:
        sp = api.get(f"/api/v1/calibration/devices/{DRIFT_DEVICE}/drift").json()["set_points"][0]
    assert sp["predicted_out_of_tolerance_ms"] is not None
    card = page.locator("section", has=page.locator(canvas)).inner_text()
    assert "Predicted out of tolerance" in card and "°C/year" in card
    assert page.locator(".drift-chart time, section time").count() > 0
    shot(page, "calibration-drift")


def test_device_page_from_the_fleet_with_chart_summary_and_quarantine(live_app, page, shot):
    login(page, live_app.base_url)
    page.get_by_role("link", name=EXCURSION_LOGGER, exact=True).click()
    page.wait_for_url(f"**/ui/devices/{EXCURSION_LOGGER}")
    canvas = ".chart-box canvas"
    page.wait_for_function(f"() => ({DRAWN_PIXELS_JS})(\"{canvas}\") > 2000")
    assert "2-8 °C" in page.locator("#s-facts").locator("xpath=..").inner_text()  # the profile, from the API
    exc = page.locator("section", has_text="Excursions in this range")
    exc.get_by_role("link", name=SHIPMENT_REF).first.wait_for()  # the same episode, judged in the shipment
    # the summary is asked for after the chart and the excursions (it reads every reading): wait for it
    expect(page.get_by_text("Time in range").first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="7d").click()
    assert page.get_by_role("button", name="7d").get_attribute("aria-pressed") == "true"
    page.wait_for_function(f"() => ({DRAWN_PIXELS_JS})(\"{canvas}\") > 2000")
    shot(page, "device")
    page.get_by_role("link", name="Quarantine").click()
    page.get_by_role("row").filter(has_text="bad_json").wait_for()
    first, second = (page.get_by_role("row").filter(has_text="out_of_range").filter(has_text=f"reading {n}")
                     for n in (1, 2))
    expect(first).to_contain_text('{"v": 1')  # the message's raw bytes, once, on its first row
    expect(second).to_contain_text("on the message's first row")
    shot(page, "quarantine")


def test_keyboard_only_sign_in_and_navigation(live_app, page):
    page.goto(f"{live_app.base_url}/ui/login")
    # autofocus is applied at a rendering update after load, and the form's script is a module: wait for both
    # before typing, or the first keystrokes (or the Enter) can arrive before the page is ready for them
    page.wait_for_load_state("networkidle")
    # Playwright's own waits, not wait_for_function("<expression>"): that re-evals the string in the page at
    # every poll, which the pages' CSP (no 'unsafe-eval') refuses once the first check came out false
    expect(page.locator("#username")).to_be_focused(timeout=30_000)
    page.keyboard.type("qa.anna")  # the username field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(QA_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/fleet")
    page.get_by_role("row").filter(has_text=FLEET_LOGGER).wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Alerts":
            break
    assert page.evaluate("document.activeElement.textContent") == "Alerts"
    style = page.evaluate("getComputedStyle(document.activeElement)['outline-style']")
    assert style == "solid"  # a visible focus ring
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/alerts")
    expect(page).to_have_title(re.compile(r"^Alerts"), timeout=30_000)  # the page's script sets its title

"""The alert inbox on a phone (390 px, Chromium): cards instead of a 1,000 px table, the detail and the
Acknowledge button right under the tapped alert, and the ISA-18.2 lifecycle as on-call staff see it - an
acknowledged alarm stays listed as "acknowledged, still active" until its condition clears, then leaves the
inbox. Screenshots under test-artifacts/."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest
from playwright.sync_api import expect

from coldtrace.core.model import Alert
from coldtrace.services import alerts as lifecycle
from tests.e2e.conftest import login
from tests.e2e.live_app import MINUTE

pytestmark = pytest.mark.e2e

PHONE = "LOG-PHONE-1"


def _ingest(app, pairs: list[tuple[int, float]]) -> None:
    body = {"v": 1, "device_id": PHONE, "readings": [{"ts": t, "temp_c": v} for t, v in pairs]}
    r = app.services.pipeline.ingest_raw(json.dumps(body).encode(), source="mqtt", topic_device_id=PHONE)
    assert not r.rejected, r


@pytest.fixture
def phone(browser):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                              has_touch=True, timezone_id="Europe/Zurich", locale="en-GB")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    expected = re.compile(r"Failed to load resource: .* (401|404|422)")
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and not expected.search(m.text) else None)
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_phone_inbox_cards_acknowledge_next_to_the_alert_and_the_lifecycle(live_app, phone, shot):
    now = live_app.services.clock.now_ms()
    # a logger at 26.4 °C for the last 35 min: critical (and alarm, warning), still going on
    _ingest(live_app, [(now - 40 * MINUTE, 5.0)] + [(now - (35 - 5 * i) * MINUTE, 26.4) for i in range(8)])
    with live_app.api() as api:
        inbox = api.get("/api/v1/alerts", params={"view": "inbox", "min_severity": "warning"}).json()
    crit = next(a for a in inbox if a["device_id"] == PHONE and a["severity"] == "critical")
    assert crit["isa_state"] == "unack_active"

    login(phone, live_app.base_url, "/ui/alerts")
    cards = phone.locator("li.alert-card")
    cards.first.wait_for()
    assert phone.locator("#alert-list table").count() == 0  # cards, not the table
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    # ISA-18.2 order: the unacknowledged active critical alarm comes first
    first = cards.first.inner_text()
    assert PHONE in first and "critical" in first and "Unacknowledged, active" in first
    states = [t for t in cards.locator(".alert-card-head .badge:nth-child(2)").all_inner_texts()]
    rank = {"Unacknowledged, active": 0, "Acknowledged, still active": 1, "Cleared, unacknowledged": 2}
    assert [rank[s] for s in states] == sorted(rank[s] for s in states)
    # high-warn and high share 8 °C: one card for that episode, with its staged severities
    mine = cards.filter(has_text=PHONE)
    assert mine.count() == 2  # the 25 °C episode (critical) and the 8 °C one
    staged = mine.filter(has_text="above 8 °C")
    assert staged.count() == 1 and "alarm" in staged.locator(".alert-card-head").inner_text()
    assert re.search(r"Stages: warning .+ → alarm .+", staged.locator(".stages").inner_text())
    shot(phone, "alerts-phone-inbox")

    card = cards.filter(has_text=PHONE).filter(has_text="critical").first
    card.locator("button.alert-card-open").tap()
    ack = card.locator("#ack-button")  # the detail opens inside the tapped card
    expect(card.locator("#detail-state")).to_contain_text("Unacknowledged, active")  # the detail is complete
    card_box, ack_box = card.bounding_box(), ack.bounding_box()
    gap = ack_box["y"] - card_box["y"]
    assert 0 < gap < 400, f"Acknowledge is {gap:.0f} px below the top of the tapped alert"
    assert ack_box["x"] >= 0 and ack_box["x"] + ack_box["width"] <= 390
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "alerts-phone-detail")

    card.get_by_label("Comment (recorded with the acknowledgement)").fill("Cold room door closed, product moved")
    ack.tap()
    phone.get_by_text("Acknowledged.").wait_for()
    # acknowledged, but the logger still reads 26.4 °C: it stays in the inbox, saying so
    still = cards.filter(has_text=PHONE).filter(has_text="critical").first
    expect(still.locator(".alert-card-head")).to_contain_text("Acknowledged, still active")
    expect(still.locator("#detail-state")).to_contain_text("Acknowledged, still active")
    with live_app.api() as api:
        a = api.get(f"/api/v1/alerts/{crit['id']}/handling").json()
    assert (a["state"], a["condition"], a["isa_state"]) == ("acknowledged", "active", "ack_active")
    assert a["acknowledged_by"] == "qa.anna" and a["ack_comment"] == "Cold room door closed, product moved"
    shot(phone, "alerts-phone-acknowledged-still-active")
    # the ISA-18.2 order with all three states listed: the 8 °C episode (nobody has it yet) above the
    # acknowledged critical alarm, cleared-but-unacknowledged alarms last
    states = cards.locator(".alert-card-head .badge:nth-child(2)").all_inner_texts()
    assert {rank[s] for s in states} == {0, 1, 2}, states
    assert [rank[s] for s in states] == sorted(rank[s] for s in states), states
    titles = cards.locator(".alert-card-head").all_inner_texts()
    heads = [t for t in cards.all_inner_texts() if PHONE in t]
    assert "above 8 °C" in heads[0] and "critical" in heads[1], (heads, titles)

    # the logger is back in range: the condition clears and the alarm leaves the inbox (live refresh)
    _ingest(live_app, [(now + 1, 5.0)])
    expect(cards.filter(has_text=PHONE).filter(has_text="critical")).to_have_count(0, timeout=20_000)
    # the 8 °C episode has cleared too, but nobody acknowledged it: it stays, saying so
    assert "Cleared, unacknowledged" in cards.filter(has_text=PHONE).filter(has_text="above 8 °C").inner_text()
    with live_app.api() as api:
        a = api.get(f"/api/v1/alerts/{crit['id']}/handling").json()
    assert (a["condition"], a["isa_state"]) == ("cleared", "normal")
    lifecycle.tick(live_app.services.db, live_app.services.clock.now_ms())
    with live_app.api() as api:
        a = api.get(f"/api/v1/alerts/{crit['id']}/handling").json()
    assert (a["state"], a["resolved_by"]) == ("resolved", "system")
    assert a["resolution"].startswith("Returned to normal: acknowledged by qa.anna")
    shot(phone, "alerts-phone-cleared")


def test_device_page_shows_one_excursion_row_per_episode_with_its_stages(live_app, page, shot):
    """high-warn and high share 8 °C: the device page lists that episode once, with both stages."""
    now = live_app.services.clock.now_ms()
    dev = "LOG-STAGES-1"
    # 25 min above 8 °C so far: the warning stage (15 min) reached, the alarm stage (30 min) not yet
    pairs = [(now - 30 * MINUTE, 5.0)] + [(now - (25 - 5 * i) * MINUTE, 9.4) for i in range(6)]
    body = {"v": 1, "device_id": dev, "readings": [{"ts": t, "temp_c": v} for t, v in pairs]}
    assert not live_app.services.pipeline.ingest_raw(json.dumps(body).encode(), topic_device_id=dev).rejected
    login(page, live_app.base_url, f"/ui/devices/{dev}")
    exc = page.locator("section", has_text="Excursions in this range")
    row = exc.get_by_role("row").filter(has_text="above 8 °C")
    row.first.wait_for()
    assert row.count() == 1
    text = row.inner_text()
    assert "high-warn, high" in text and re.search(r"warning\s*→\s*alarm", text)
    assert re.search(r"warning \d.*, alarm not reached", text), text
    shot(page, "device-staged-excursion")


def test_shelving_with_a_reason_and_an_expiry_in_the_browser(live_app, page, shot):
    """ISA-18.2 shelving on the laptop page: a reason is required, the alarm leaves the inbox for the chosen
    time (listed under "Shelved" with who, why and until when), and at the expiry the clock tick brings it
    back as an unacknowledged, active alarm - and pages at once, since it is overdue."""
    dev = "LOG-SHELVE-1"
    now = live_app.services.clock.now_ms()
    body = {"v": 1, "device_id": dev, "readings": [{"ts": now - 20 * MINUTE, "temp_c": 5.0}]
            + [{"ts": now - (15 - 5 * i) * MINUTE, "temp_c": 27.0} for i in range(4)]}
    assert not live_app.services.pipeline.ingest_raw(json.dumps(body).encode(), topic_device_id=dev).rejected
    with live_app.api() as api:
        (crit,) = api.get("/api/v1/alerts", params={"device_id": dev, "type": "excursion.alarm",
                                                     "severity": "critical"}).json()
    assert crit["isa_state"] == "unack_active"

    login(page, live_app.base_url, "/ui/alerts")
    row = page.get_by_role("row").filter(has_text=dev).filter(has_text="critical")
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Excursion alarm").click()
    expect(page.locator("#detail-state")).to_contain_text("Unacknowledged, active")
    page.locator("#shelve-box summary").click()
    page.get_by_role("button", name="Shelve", exact=True).click()  # no reason: refused in the page
    expect(page.get_by_label("Reason")).to_be_focused()
    with live_app.api() as api:
        assert api.get(f"/api/v1/alerts/{crit['id']}/handling").json()["shelved_until"] is None
    page.get_by_label("Reason").fill("Planned defrost of cold room 2")
    page.get_by_label("For").select_option("30")
    before = live_app.services.clock.now_ms()
    page.get_by_role("button", name="Shelve", exact=True).click()
    page.get_by_text("Shelved.").wait_for()
    after = live_app.services.clock.now_ms()

    # out of the inbox; the detail says who shelved it, why, and until when
    expect(page.get_by_role("row").filter(has_text=dev).filter(has_text="critical")).to_have_count(0)
    expect(page.locator("#detail-state")).to_contain_text("Shelved")
    shelved_dd = page.locator("#alert-detail dd").filter(has_text="Planned defrost of cold room 2")
    expect(shelved_dd).to_contain_text("by qa.anna")
    with live_app.api() as api:
        h = api.get(f"/api/v1/alerts/{crit['id']}/handling").json()
        inbox = api.get("/api/v1/alerts", params={"view": "inbox", "device_id": dev}).json()
    until = datetime.fromisoformat(h["shelved_until"].replace("Z", "+00:00"))
    until_ms = int(until.timestamp() * 1000)
    assert before + 30 * MINUTE <= until_ms <= after + 30 * MINUTE
    assert (h["isa_state"], h["shelved_by"], h["shelve_reason"]) == ("shelved", "qa.anna",
                                                                       "Planned defrost of cold room 2")
    assert crit["id"] not in {a["id"] for a in inbox}
    assert datetime.fromisoformat(shelved_dd.locator("time").get_attribute("datetime").replace("Z", "+00:00")) \
        == until
    page.get_by_label("State").select_option("shelved")
    listed = page.get_by_role("row").filter(has_text=dev).filter(has_text="critical")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("Shelved")
    shot(page, "alert-shelved")

    # the expiry: the clock tick lifts the shelving, and the alarm - unacknowledged for 30 min, past the
    # 15 min of a critical one - is escalated at once
    result = lifecycle.tick(live_app.services.db, until_ms)
    assert crit["id"] in result.unshelved and crit["id"] in result.escalated
    page.get_by_label("State").select_option("inbox")
    back = page.get_by_role("row").filter(has_text=dev).filter(has_text="critical")
    expect(back).to_have_count(1)
    expect(back).to_contain_text("Unacknowledged, active")
    back.get_by_role("button", name="Excursion alarm").click()
    history = page.locator("#alert-detail ol.history")
    expect(history).to_contain_text("system unshelved")
    expect(history).to_contain_text("shelving expired")
    expect(history).to_contain_text("qa.anna shelved")
    expect(history).to_contain_text("system escalated")
    shot(page, "alert-unshelved-at-expiry")


def test_phone_inbox_names_calibration_alerts_and_refuses_an_unknown_assignee(live_app, phone, shot):
    """The judge's walk of issue 16 on the demo: calibration cards read "calibration.failed",
    "calibration.drift" and "over_mpe" (codes, not words), and assigning an alert to a user who does not exist
    said "Assigned failed: …". The card names the alert; the refusal (422) says which action failed."""
    dev = "BENCH-PHONE-3"
    now = live_app.services.clock.now_ms()
    live_app.services.pipeline.emit_now([
        Alert("e2e-cal-failed", "calibration.failed", "alarm", dev, now - 2 * MINUTE,
              {"session_id": "cal_e2e", "decision": "fail", "kind": "as_found"}),
        Alert("e2e-cal-drift", "calibration.drift", "warning", dev, now - 3 * MINUTE,
              {"session_id": "cal_e2e", "set_point_c": 25.0, "reason": "over_mpe"})])
    login(phone, live_app.base_url, "/ui/alerts")
    cards = phone.locator("li.alert-card").filter(has_text=dev)
    expect(cards).to_have_count(2)
    text = " ".join(cards.all_inner_texts())
    assert f"Calibration failed · {dev}" in text and f"Calibration drift · {dev}" in text, text
    assert "error beyond the MPE, set point 25 °C" in text, text
    assert "calibration." not in text and "over_mpe" not in text, text

    card = cards.filter(has_text="Calibration failed").first
    card.locator("button.alert-card-open").tap()
    card.get_by_label("Assign to").fill("nobody.here")
    card.get_by_role("button", name="Assign", exact=True).tap()
    expect(card.locator(".form-error")).to_have_text(
        "Assign failed: no active user 'nobody.here': an alert can only be assigned to a user of ColdTrace")
    with live_app.api() as api:
        assert api.get("/api/v1/alerts/e2e-cal-failed/handling").json()["assignee"] is None
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "alerts-phone-calibration-cards")

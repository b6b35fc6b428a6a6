"""Profiles (with the preview of the limits on a sample curve) and the administration page (people added and
edited, tokens, webhook subscriptions added, edited, their secret rotated, with "send test event") in
headless Chromium, checked through the API, the audit trail and a real webhook receiver on loopback.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import expect

from coldtrace.services import auth
from tests.e2e.conftest import DRAWN_PIXELS_JS, login, login_as
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e
ADMIN = ("admin.ida", "Ida Lindqvist", "site-admin-2026-ok")


@pytest.fixture(scope="module")
def admin_user(live_app):
    auth.create_user(live_app.services.db, ADMIN[0], ADMIN[1], ADMIN[2], "admin", actor="e2e",
                     now_ms=live_app.services.clock.now_ms())
    return ADMIN


def test_profile_created_with_a_preview_of_its_limits(live_app, admin_user, page, shot):
    login_as(page, live_app.base_url, ADMIN[0], ADMIN[2], "/ui/profiles")
    page.get_by_role("button", name="Copy 2-8C").click()
    form = page.locator("#profile-form")
    form.get_by_label("Profile id").fill("2-8C-site-104")
    form.get_by_label("Name").fill("2-8 °C, site 104 (short door alarms)")
    # the "high" limit's delay from 30 to 10 min: its alarm moves on the sample curve
    high = form.locator("tr", has=page.locator("input[aria-label='Limit id'][value='high']"))
    high.get_by_label("Alarm delay (min)").fill("10")
    canvas = "#profile-preview canvas"
    page.wait_for_function(f"() => ({DRAWN_PIXELS_JS})(\"{canvas}\") > 2000")
    alarms = page.locator("#preview-alarms")
    # the high limit's own row follows the edit (the low limit alarms after 10 min already: not proof enough)
    expect(alarms.get_by_role("row").filter(has_text="high (above 8 °C)")).to_contain_text("after 10 min (at 08:10")
    expect(alarms.get_by_role("row").filter(has_text="high-warn (above 8 °C)")).to_contain_text("after 15 min")
    # the chart's time axis is the same sample day as the table: it starts at local midnight, so the warm-up the
    # table puts "from 08:00 h into the sample day" is drawn at 08:00 on the axis (it was drawn at "now - 24 h")
    label = page.locator("#profile-preview .chart-canvas").get_attribute("aria-label")
    m = re.search(r"points from (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", label)
    assert m, label
    start = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Zurich"))
    assert (start.hour, start.minute) == (0, 0), f"the sample day starts at {start:%H:%M} local time: {label}"
    shot(page, "form-profile")
    form.get_by_role("button", name="Save profile").click()
    form.get_by_text("Profile 2-8C-site-104 saved.").wait_for()
    with live_app.api() as api:
        p = api.get("/api/v1/profiles/2-8C-site-104").json()
    high_limit = next(lim for lim in p["limits"] if lim["id"] == "high")
    assert (high_limit["delay_ms"], high_limit["cumulative_ms"], p["mkt_max_c"]) == (10 * 60_000, 240 * 60_000, 8.0)
    assert p["history"][0]["changed_by"] == ADMIN[0]


def test_admin_adds_a_person_a_token_and_a_webhook_that_receives_a_test_event(live_app, admin_user, page, shot):
    receiver = WebhookReceiver().start()
    try:
        login_as(page, live_app.base_url, ADMIN[0], ADMIN[2], "/ui/admin")
        page.get_by_text("Add a person").click()
        form = page.locator("#user-form")
        form.get_by_label("Username").fill("qa.chen")
        form.get_by_label("Full name (printed with signatures)").fill("Dr Li Chen")
        form.get_by_label("Initial password").fill("initial-password-2026")
        form.get_by_label("Role").select_option("qa")
        form.get_by_role("button", name="Add person").click()
        form.get_by_text("Dr Li Chen (qa.chen) added as qa.").wait_for()
        page.get_by_role("cell", name="Dr Li Chen").wait_for()

        page.get_by_text("Create a token").click()
        form = page.locator("#token-form")
        form.get_by_label("Token name").fill("LIMS export")
        form.get_by_label("Role").select_option("viewer")
        form.get_by_role("button", name="Create token").click()
        secret = page.locator("#shown-once .secret")
        secret.wait_for()
        token = secret.inner_text().strip()
        with httpx.Client(base_url=live_app.base_url) as c:  # the token works, as a viewer
            assert c.get("/api/v1/shipments", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert c.post("/api/v1/shipments", headers={"Authorization": f"Bearer {token}"},
                          json={}).status_code in (403, 422)
        page.get_by_role("button", name="I have stored it").click()

        page.get_by_text("Add a subscription").click()
        form = page.locator("#webhook-form")
        form.get_by_label("Receiver URL").fill(receiver.url)
        form.get_by_label("Description").fill("on-call pager bridge")
        form.get_by_role("button", name="Add subscription").click()
        secret.wait_for()
        receiver.secrets = [secret.inner_text().strip()]
        page.get_by_role("button", name="I have stored it").click()
        page.get_by_role("button", name="Send test event").click()
        page.get_by_text("delivered: HTTP 204").wait_for(timeout=20_000)
        shot(page, "admin")
        # the receiver verified the signature with the secret shown once
        assert [(r.status, r.signature_ok) for r in receiver.requests] == [(204, True)]
        page.get_by_role("button", name="Revoke LIMS export").wait_for()
    finally:
        receiver.stop()


def _audit(live_app, action: str, entity_id: str) -> list[tuple[str, dict, dict]]:
    rows = live_app.services.db.query("SELECT actor, old_value, new_value FROM audit_log WHERE action = ? AND"
                                      " entity_id = ? ORDER BY id", (action, entity_id))
    return [(r["actor"], json.loads(r["old_value"] or "null"), json.loads(r["new_value"] or "null")) for r in rows]


def test_admin_edits_a_person_inline_and_the_change_reaches_their_session(live_app, admin_user, page, shot):
    db, now = live_app.services.db, live_app.services.clock.now_ms()
    uid = auth.create_user(db, "qa.dana", "Dana Roth", "dana-password-2026", "qa", actor="e2e", now_ms=now)
    token = auth.create_token(db, user=uid, name="dana's LIMS export", now_ms=now)
    with httpx.Client(base_url=live_app.base_url) as dana:  # Dana is signed in elsewhere meanwhile
        assert dana.post("/api/v1/auth/login", json={"username": "qa.dana",
                                                     "password": "dana-password-2026"}).status_code == 200
        page.on("dialog", lambda d: d.accept())  # "Disable qa.dana?", "Set a new password?"
        login_as(page, live_app.base_url, ADMIN[0], ADMIN[2], "/ui/admin")

        page.get_by_role("button", name="Edit qa.dana").click()
        form = page.get_by_role("form", name="Edit qa.dana")
        form.get_by_label("Full name").fill("Dr Dana Roth")
        form.get_by_label("Role").select_option("viewer")
        shot(page, "admin-edit-person")
        form.get_by_role("button", name="Save changes").click()
        page.get_by_text("qa.dana: full name “Dr Dana Roth”; role qa → viewer.").wait_for()
        page.get_by_role("cell", name="Dr Dana Roth").wait_for()
        assert dana.get("/api/v1/auth/session").json()["role"] == "viewer"  # her open session follows at once
        token_row = page.locator("tr", has=page.get_by_role("button", name="Revoke dana's LIMS export"))
        assert "qa (acts as viewer)" in token_row.inner_text()
        assert _audit(live_app, "user.update", uid) == [
            (ADMIN[0], {"full_name": "Dana Roth", "role": "qa"}, {"full_name": "Dr Dana Roth", "role": "viewer"})]

        page.get_by_role("button", name="Edit qa.dana").click()
        form = page.get_by_role("form", name="Edit qa.dana")
        form.get_by_label("active (may sign in)").uncheck()
        form.get_by_role("button", name="Save changes").click()
        page.get_by_text("qa.dana: disabled: sessions ended, tokens stopped.").wait_for()
        row = page.locator("tr", has=page.get_by_role("button", name="Edit qa.dana"))
        assert "disabled" in row.inner_text()
        assert dana.get("/api/v1/auth/session").status_code == 401
        assert dana.get("/api/v1/shipments", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert [a[0] for a in _audit(live_app, "user.disable", uid)] == [ADMIN[0]]
        assert "owner disabled" in token_row.inner_text()

        # enabled again with a new password set by the admin
        page.get_by_role("button", name="Edit qa.dana").click()
        form = page.get_by_role("form", name="Edit qa.dana")
        form.get_by_label("active (may sign in)").check()
        form.get_by_role("button", name="Save changes").click()
        page.get_by_text("qa.dana: enabled.").wait_for()
        page.get_by_role("button", name="Edit qa.dana").click()
        pw = page.get_by_role("form", name="Password of qa.dana")
        pw.get_by_label("New password").fill("reset-by-ida-2026")
        pw.get_by_role("button", name="Set password").click()
        page.get_by_text("qa.dana: password set").wait_for()
        assert dana.post("/api/v1/auth/login", json={"username": "qa.dana",
                                                     "password": "dana-password-2026"}).status_code == 401
        assert dana.post("/api/v1/auth/login", json={"username": "qa.dana",
                                                     "password": "reset-by-ida-2026"}).status_code == 200
        assert [a[0] for a in _audit(live_app, "user.password", uid)] == [ADMIN[0]]

    # the last active admin cannot demote herself: the form says why and keeps what was typed
    page.get_by_role("button", name=f"Edit {ADMIN[0]}").click()
    form = page.get_by_role("form", name=f"Edit {ADMIN[0]}")
    form.get_by_label("Role").select_option("qa")
    form.get_by_role("button", name="Save changes").click()
    form.get_by_text("(last_admin)").wait_for()
    assert "is the last active admin" in form.get_by_role("alert").inner_text()
    assert form.get_by_label("Role").input_value() == "qa"
    shot(page, "admin-last-admin")
    assert auth.find_user(db, ADMIN[0])["role"] == "admin"


def test_admin_edits_a_subscription_and_rotates_its_secret(live_app, admin_user, page, shot):
    receiver = WebhookReceiver().start()
    try:
        with live_app.api() as api:
            r = api.post("/api/v1/webhooks/subscriptions", json={"url": receiver.url, "description": "LIMS bridge"})
            assert r.status_code == 201, r.text
            sub = r.json()
        page.on("dialog", lambda d: d.accept())  # "Give ... a new signing secret?"
        login_as(page, live_app.base_url, ADMIN[0], ADMIN[2], "/ui/admin")
        row = page.locator("tr", has_text=receiver.url)
        row.get_by_role("button", name="Edit").click()
        form = page.get_by_role("form", name=f"Edit subscription to {receiver.url}")
        assert form.get_by_label("Description").input_value() == "LIMS bridge"
        form.get_by_label("Description").fill("on-call escalation, site 104")
        form.get_by_label("Event types").fill("excursion.*, alert.escalated")
        form.get_by_label("Minimum severity").select_option("alarm")
        form.get_by_label("Device ids").fill("LOG-104-A, LOG-104-B")
        form.get_by_label("escalation contact").check()
        shot(page, "admin-edit-subscription")
        form.get_by_role("button", name="Save subscription").click()
        page.get_by_text(f"Subscription to {receiver.url} saved").wait_for()
        row.get_by_text("devices: LOG-104-A, LOG-104-B").wait_for()
        with live_app.api() as api:
            got = api.get(f"/api/v1/webhooks/subscriptions/{sub['id']}").json()
        assert {k: got[k] for k in ("description", "event_types", "min_severity", "device_ids", "escalation",
                                    "enabled")} == {
            "description": "on-call escalation, site 104", "event_types": ["excursion.*", "alert.escalated"],
            "min_severity": "alarm", "device_ids": ["LOG-104-A", "LOG-104-B"], "escalation": True, "enabled": True}
        ((actor, old, new),) = _audit(live_app, "webhook.update", sub["id"])
        assert (actor, old["description"], new["description"]) == (ADMIN[0], "LIMS bridge",
                                                                   "on-call escalation, site 104")

        # a bad URL is refused in the form; nothing changes
        row.get_by_role("button", name="Edit").click()
        form.get_by_label("Receiver URL").fill("ftp://example.invalid/hook")
        form.get_by_role("button", name="Save subscription").click()
        form.get_by_text("a webhook URL is http:// or https://").wait_for()
        form.get_by_role("button", name="Cancel").click()
        assert len(_audit(live_app, "webhook.update", sub["id"])) == 1

        row.get_by_role("button", name="Rotate secret").click()
        secret = page.locator("#shown-once .secret")
        secret.wait_for()
        new_secret = secret.inner_text().strip()
        assert new_secret and new_secret != sub["secret"]
        row.get_by_text("old secret also signs until").wait_for()  # the table is reloaded after the secret shows
        receiver.secrets = [new_secret]  # the receiver knows only the secret shown once
        page.get_by_role("button", name="I have stored it").click()
        row.get_by_role("button", name="Send test event").click()
        row.get_by_text("delivered: HTTP 204").wait_for(timeout=20_000)
        shot(page, "admin-rotated-secret")
        assert [(r.status, r.signature_ok) for r in receiver.requests] == [(204, True)]
        assert [a[0] for a in _audit(live_app, "webhook.rotate_secret", sub["id"])] == [ADMIN[0]]
    finally:
        receiver.stop()


def test_the_admin_page_refuses_a_qa_user(live_app, page):
    login(page, live_app.base_url, "/ui/admin")
    page.get_by_text("This page needs the admin role.").wait_for()
    assert page.get_by_role("link", name="Admin").count() == 0  # not in the navigation either

"""Profiles (with the preview of the limits on a sample curve) and the administration page (people, tokens,
webhook subscriptions with "send test event") in headless Chromium, checked through the API and a real
webhook receiver on loopback. Screenshots go to test-artifacts/."""

from __future__ import annotations

import httpx
import pytest

from coldtrace import auth
from tests.e2e.conftest import login
from tests.e2e.test_qa_forms import login_as
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e
ADMIN = ("admin.ida", "Ida Lindqvist", "site-admin-2026-ok")
DRAWN_PIXELS_JS = """(sel) => {
  const c = document.querySelector(sel);
  if (!c) return -1;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""


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
    alarms.get_by_text("after 10 min").first.wait_for()
    assert "high (above 8 °C)" in alarms.inner_text()
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


def test_the_admin_page_refuses_a_qa_user(live_app, page):
    login(page, live_app.base_url, "/ui/admin")
    page.get_by_text("This page needs the admin role.").wait_for()
    assert page.get_by_role("link", name="Admin").count() == 0  # not in the navigation either

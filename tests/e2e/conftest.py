"""Fixtures of the QA pages' end-to-end tests: the real app on a free loopback port, seeded, and Debian's
Chromium driven by Playwright. Without /usr/bin/chromium the tests fail in CI (CI=true) and skip elsewhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e.live_app import CHROMIUM, CHROMIUM_ARGS, QA_PASSWORD, QA_USER, LiveApp, seed, start_app
from tests.support.services import missing_service

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def live_app(tmp_path_factory) -> LiveApp:
    app = start_app(tmp_path_factory.mktemp("e2e") / "data")
    try:
        app.facts = seed(app)
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        missing_service(f"chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context at laptop size, in a time zone other than UTC (times must follow the user)."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 860}, timezone_id="Europe/Zurich", locale="en-GB")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # refusals the tests provoke (wrong password: 401 at login, 403 when signing; a refused form: 400, 409) and
    # optional API parts (404)
    expected = re.compile(r"Failed to load resource: .* (400|401|403|404|409)")
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and not expected.search(m.text) else None)
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shot():
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"e2e-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# Pixels of a uPlot canvas that are not background: a drawn curve, bands and shading make thousands.
DRAWN_PIXELS_JS = """(sel) => {
  const c = document.querySelector(sel);
  if (!c) return -1;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""


def login(page, base_url: str, next_path: str = "/ui/fleet") -> None:
    page.goto(f"{base_url}{next_path}")
    page.wait_for_url("**/ui/login**")
    page.get_by_label("Username").fill(QA_USER)
    page.get_by_label("Password").fill(QA_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # not a glob: "**/ui/fleet" would also match the login page's own URL (…/ui/login?next=/ui/fleet)
    page.wait_for_url(lambda url: "/ui/login" not in url and url.endswith(next_path))


def login_as(page, base_url: str, user: str, password: str, next_path: str) -> None:
    """Sign in as someone else than the QA user (a second signatory, an admin)."""
    page.goto(f"{base_url}{next_path}")
    page.wait_for_url("**/ui/login**")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/ui/login" not in url and url.endswith(next_path))

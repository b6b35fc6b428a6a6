"""/docs (Swagger UI) and /redoc (ReDoc) work without internet: they load only from ColdTrace itself (the
vendored bundles), under a Content-Security-Policy that allows no other origin, and show the API's operations."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _hosts(page) -> set[str]:
    seen: set[str] = set()
    page.on("request", lambda r: seen.add(urlsplit(r.url).netloc) if urlsplit(r.url).scheme in ("http", "https")
            else None)
    return seen


def test_swagger_ui_from_the_project_lists_the_operations(live_app, page, shot):
    with httpx.Client(base_url=live_app.base_url) as c:
        r = c.get("/docs")
        assert r.status_code == 200 and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in r.text
        assert "script-src 'self';" in r.headers["content-security-policy"]
        assert "cdn" not in r.text.lower()
        assert c.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    hosts = _hosts(page)
    page.goto(f"{live_app.base_url}/docs")
    page.locator(".opblock-summary-path", has_text="/api/v1/shipments/{shipment_id}/checklist").first.wait_for()
    assert page.locator(".opblock").count() > 50
    assert hosts == {urlsplit(live_app.base_url).netloc}
    shot(page, "api-docs-swagger")


def test_redoc_from_the_project(live_app, page, shot):
    hosts = _hosts(page)
    page.goto(f"{live_app.base_url}/redoc")
    page.locator("h2", has_text="Release checklist: each item pass/fail with a link").first.wait_for(timeout=30_000)
    assert hosts == {urlsplit(live_app.base_url).netloc}
    shot(page, "api-docs-redoc")

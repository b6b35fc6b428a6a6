"""The QA pages: HTML shells behind the login, and their static files (JS modules, CSS, the vendored uPlot).

The pages are static: every number on them comes from the JSON API with the same session cookie (writes add
the X-CSRF-Token header), so the pages can show nothing the API would not. A page URL without a valid
session redirects to the login page, which comes back to the page afterwards. Static files (code, no data)
are public under /static so the login page can load its own script.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from coldtrace.services import auth

from ..deps import SESSION_COOKIE, ServicesDep

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGES = ("fleet", "devices", "shipments", "alerts", "calibration", "quarantine", "profiles", "admin",
         "alarm-health")
_NEXT_RE = re.compile(r"^/ui/[A-Za-z0-9._:/@%?=&+-]*$")  # only our own pages: no open redirect

# The pages load nothing from elsewhere: scripts, styles, fonts and API calls stay on this origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                                " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _html(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def _signed_in(request: Request, services) -> bool:
    cookie = request.cookies.get(SESSION_COOKIE)
    return bool(cookie) and auth.authenticate_session(services.db, cookie, services.clock.now_ms()) is not None


def safe_next(value: str | None) -> str:
    return value if value and _NEXT_RE.fullmatch(value) and "//" not in value else "/ui/fleet"


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/fleet", status_code=303)


@router.get("/ui")
@router.get("/ui/")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/fleet", status_code=303)


@router.get("/ui/login")
def login_page(request: Request, services: ServicesDep, next: str | None = None) -> Response:
    if _signed_in(request, services):
        return RedirectResponse(safe_next(next), status_code=303)
    return _html("login.html")


@router.get("/ui/{page}")
@router.get("/ui/{page}/{rest:path}")
def page(page: str, request: Request, services: ServicesDep, rest: str = "") -> Response:
    """The one shell of every page; /static/js/app.js renders the page named by the URL."""
    if page not in PAGES:
        return Response("No such page. Go to /ui/fleet", status_code=404, media_type="text/plain",
                        headers=SECURITY_HEADERS)
    if not _signed_in(request, services):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/login?next={quote(safe_next(target), safe='/')}", status_code=303)
    return _html("app.html")


def setup(app: FastAPI) -> None:
    """Mount the static files (called by create_app after the router is included)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

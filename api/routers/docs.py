"""The API documentation pages, /docs (Swagger UI) and /redoc (ReDoc), served from the project's own copy of
their bundles (api/static/vendor, vendored from npm by scripts/vendor_js.sh): a site without internet sees
them too. The pages' scripts are files (no inline script), so the Content-Security-Policy allows only this
origin for scripts; ReDoc's styled components need inline styles and its search a blob: worker."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
            " font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none';"
            " base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def _page(title: str, openapi_url: str, head: str, body: str) -> HTMLResponse:
    html = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{escape(title)}</title>"
            f"<link rel='icon' href='/static/favicon.svg' type='image/svg+xml'>{head}</head>"
            f"<body data-openapi='{escape(openapi_url)}'>{body}</body></html>")
    return HTMLResponse(html, headers=HEADERS)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return _page(f"{request.app.title} API (Swagger UI)", request.app.openapi_url or "",
                 "<link rel='stylesheet' href='/static/vendor/swagger-ui/swagger-ui.css'>"
                 "<script src='/static/vendor/swagger-ui/swagger-ui-bundle.js' defer></script>"
                 "<script src='/static/js/docs/swagger-init.js' defer></script>",
                 "<div id='swagger-ui'></div>")


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return _page(f"{request.app.title} API (ReDoc)", request.app.openapi_url or "",
                 "<script src='/static/vendor/redoc/redoc.standalone.js' defer></script>"
                 "<script src='/static/js/docs/redoc-init.js' defer></script>",
                 "<div id='redoc'></div>")

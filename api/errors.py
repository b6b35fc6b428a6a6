"""Errors as JSON with a stable code: {"error": {"code": "...", "message": "..."}}. Never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coldtrace.core.errors import (
    ColdTraceError,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadError,
    RateLimited,
    StoreError,
)

log = logging.getLogger(__name__)

_STATUS = [(NotFound, 404), (Conflict, 409), (Forbidden, 403), (PayloadError, 400), (ConfigError, 400),
           (StoreError, 503), (RateLimited, 429)]
_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
               422: "validation", 429: "rate_limited", 503: "unavailable"}


class ApiError(Exception):
    """Raise from a route: status, stable code, message for a person."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.extra = extra or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: object) -> JSONResponse:
    body: dict = {"error": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(ColdTraceError)
    async def _ct_error(request: Request, exc: ColdTraceError) -> JSONResponse:
        status = next((s for t, s in _STATUS if isinstance(exc, t)), 500)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(status, getattr(exc, "code", "error"), str(exc), getattr(exc, "headers", None))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        return error_response(exc.status_code, code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()]
        return error_response(422, "validation", "the request does not match the API", problems=problems)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error; the server log has the details")

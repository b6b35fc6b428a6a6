"""Dependencies: the Services of the running app, the authenticated Principal, role checks, time ranges."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from coldtrace.core.clock import parse_time
from coldtrace.core.model import DAY
from coldtrace.services import auth
from coldtrace.services.auth import Principal
from coldtrace.wiring import Services

from .errors import ApiError

SESSION_COOKIE = "ct_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(request: Request, services: ServicesDep) -> Principal:
    """Bearer token (people's ct_..., devices' ctd_...) or the QA pages' session cookie (+ CSRF header)."""
    now = services.clock.now_ms()
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "use 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})
        p = auth.authenticate_bearer(services.db, token.strip(), now)
        if p is None:
            raise ApiError(401, "unauthenticated", "unknown, revoked or expired token", {"WWW-Authenticate": "Bearer"})
        return p
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = auth.authenticate_session(services.db, cookie, now)
        if session is None:
            raise ApiError(401, "session_expired", "the session has ended; log in again")
        if request.method not in _SAFE_METHODS and not auth.check_csrf(session, request.headers.get(CSRF_HEADER)):
            raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
        return session.principal
    raise ApiError(401, "unauthenticated", "authentication required", {"WWW-Authenticate": "Bearer"})


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_role(role: str):
    def _check(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(role):
            raise ApiError(403, "forbidden", f"this needs the {role} role")
        return principal

    return _check


Viewer = Annotated[Principal, Depends(require_role("viewer"))]
QA = Annotated[Principal, Depends(require_role("qa"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]


def parse_ts_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, "bad_time", f"{name} must be RFC 3339 with an offset or epoch milliseconds") from None


class TimeRange:
    """``from``/``to`` query parameters, bounded to the configured maximum span."""

    def __init__(self, services: ServicesDep,
                 from_: Annotated[str | None, Query(alias="from", description="RFC 3339 or epoch ms")] = None,
                 to: Annotated[str | None, Query(description="RFC 3339 or epoch ms (exclusive)")] = None) -> None:
        now = services.clock.now_ms()
        max_span = services.settings.api.max_range_days * DAY
        end = parse_ts_param(to, "to")
        start = parse_ts_param(from_, "from")
        self.end = end if end is not None else now + 10 * 60_000
        self.start = start if start is not None else self.end - 7 * DAY
        if self.start >= self.end:
            raise ApiError(400, "bad_range", "from must be before to")
        if self.end - self.start > max_span:
            raise ApiError(400, "range_too_large",
                           f"at most {services.settings.api.max_range_days} days per request; page through")


RangeDep = Annotated[TimeRange, Depends(TimeRange)]


def page_limit(services: ServicesDep, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> int:
    return min(limit, services.settings.api.page_limit)


LimitDep = Annotated[int, Depends(page_limit)]

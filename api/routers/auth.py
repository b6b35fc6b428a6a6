"""Log in and out of the QA pages (cookie session), who am I, users, API tokens and device tokens.

Object-level rules: anyone signed in manages their own personal tokens; only an admin sees or revokes
other people's tokens, creates service tokens, device tokens and users.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from coldtrace.core.clock import parse_time, to_iso
from coldtrace.core.errors import NotFound, RateLimited
from coldtrace.core.payload import DEVICE_ID_RE
from coldtrace.services import auth
from coldtrace.services.login_guard import LoginThrottle

from ..deps import CSRF_HEADER, SESSION_COOKIE, Admin, CurrentPrincipal, ServicesDep, Viewer
from ..errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["auth"])

HumanRole = Literal["viewer", "qa", "admin"]


class LoginIn(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1000)]


class SessionOut(BaseModel):
    kind: str
    name: str
    role: str
    user_id: str | None
    full_name: str | None = None
    device_ids: list[str] = []
    csrf_token: str | None = None  # send it back as X-CSRF-Token on writes made with the cookie
    csrf_header: str = CSRF_HEADER
    expires_at: str | None = None


class TokenIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: HumanRole | None = None  # default: your own role (never above it)
    expires: Annotated[int | str | None, Field(description=(
        "RFC 3339 or epoch ms; at most (and by default) viewer 90 days, qa 30 days, admin 7 days from now"))] = None
    service: bool = False  # admin only: a token not tied to a person (cannot sign decisions)


class TokenCreated(BaseModel):
    id: str
    token: str  # shown once
    role: str
    expires_at: str | None


class TokenOut(BaseModel):
    id: str
    name: str
    user_id: str | None
    role: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class DeviceTokenIn(BaseModel):
    device_ids: Annotated[list[Annotated[str, Field(pattern=DEVICE_ID_RE.pattern)]],
                          Field(min_length=1, max_length=1000)]
    name: Annotated[str | None, Field(max_length=100)] = None


class DeviceTokenCreated(BaseModel):
    token: str  # shown once
    device_ids: list[str]


# a person's name has no control characters (a NUL byte would also be refused by PostgreSQL's text type: a
# 422 here, never a store error)
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class UserIn(BaseModel):
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9._@-]{2,64}$")]
    full_name: Annotated[str, Field(min_length=1, max_length=200, pattern=PRINTABLE)]
    password: Annotated[str, Field(min_length=auth.MIN_PASSWORD_LEN, max_length=1000)]
    role: HumanRole


class UserPatch(BaseModel):
    """Only the fields given change; the username (the audit trail's actor name) never does."""

    model_config = ConfigDict(extra="forbid")
    full_name: Annotated[str | None, Field(min_length=1, max_length=200, pattern=PRINTABLE)] = None
    role: HumanRole | None = None
    active: bool | None = Field(None, description="false: no sign-in, open sessions ended, personal tokens refused")


class PasswordSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: Annotated[str, Field(min_length=auth.MIN_PASSWORD_LEN, max_length=1000)]


class UserOut(BaseModel):
    id: str
    username: str
    full_name: str
    role: str
    active: bool


def setup(app: FastAPI) -> None:
    """Size the password hashing to this process's memory (or ``api.password_hash_slots``) at start."""
    auth.configure_password_hashing(app.state.services.settings.api.password_hash_slots)


def login_throttle(services) -> LoginThrottle:
    """The sign-in throttle (one per Services); its counts are in the database, shared by every API process."""
    throttle = services.extras.get("login_throttle")
    if throttle is None:
        throttle = services.extras.setdefault("login_throttle", LoginThrottle(services.db))
    return throttle


_LOGIN_RESPONSES: dict[int | str, dict] = {
    401: {"description": "`login_failed`: the same answer for a wrong password, an unknown user and a locked"
                         " or disabled account"},
    429: {"description": "`login_throttled` (too many attempts from this client or for this username) or"
                         " `login_busy` (password hashing full); wait the Retry-After seconds"},
}


@router.post("/auth/login", response_model=SessionOut, summary="Username + password -> session cookie",
             responses=_LOGIN_RESPONSES)
async def login(body: LoginIn, request: Request, response: Response, services: ServicesDep) -> SessionOut:
    # the throttle (its counts are in the database) and the password check run in worker threads
    now = services.clock.now_ms()
    client = request.client.host if request.client else None
    throttle = login_throttle(services)
    admission = await run_in_threadpool(throttle.admit, client, body.username, now)  # RateLimited -> 429
    try:
        res = await run_in_threadpool(auth.check_login, services.db, body.username, body.password, now_ms=now,
                                      client=client)
    except RateLimited:  # hashing full: the password was not checked, the attempt does not count
        await run_in_threadpool(lambda: throttle.settle(admission, tried=False))
        raise
    await run_in_threadpool(lambda: throttle.settle(admission, succeeded=res.principal is not None))
    p = res.principal
    if p is None or p.user_id is None:
        raise ApiError(401, "login_failed", "wrong username or password, or the account is locked")
    s = await run_in_threadpool(auth.create_session, services.db, p.user_id, now)
    response.set_cookie(SESSION_COOKIE, s.token, max_age=(s.expires_at - now) // 1000, httponly=True,
                        samesite="strict", path="/",
                        secure=services.settings.api.cookie_secure or request.url.scheme == "https")
    user = await run_in_threadpool(auth.get_user, services.db, p.user_id) or {}
    return SessionOut(kind=p.kind, name=p.name, role=p.role, user_id=p.user_id, full_name=user.get("full_name"),
                      csrf_token=s.csrf_token, expires_at=to_iso(s.expires_at))


@router.post("/auth/logout", status_code=204)
def logout(request: Request, services: ServicesDep, _: CurrentPrincipal) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        auth.revoke_session(services.db, cookie, services.clock.now_ms())
    resp = Response(status_code=204)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/auth/session", response_model=SessionOut, summary="Who am I")
def session(request: Request, services: ServicesDep, p: CurrentPrincipal) -> SessionOut:
    out = SessionOut(kind=p.kind, name=p.name, role=p.role, user_id=p.user_id, device_ids=sorted(p.device_ids))
    if p.user_id:
        out.full_name = (auth.get_user(services.db, p.user_id) or {}).get("full_name")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and not request.headers.get("authorization"):
        s = auth.authenticate_session(services.db, cookie, services.clock.now_ms())
        if s is not None:
            out.csrf_token, out.expires_at = s.csrf_token, to_iso(s.expires_at)
    return out


def _token_out(r: dict) -> TokenOut:
    return TokenOut(id=r["id"], name=r["name"], user_id=r["user_id"], role=r["role"],
                    created_at=to_iso(r["created_at"]) or "", expires_at=to_iso(r["expires_at"]),
                    revoked_at=to_iso(r["revoked_at"]), last_used_at=to_iso(r["last_used_at"]))


@router.get("/auth/tokens", response_model=list[TokenOut], summary="Your tokens (an admin sees all)")
def list_tokens(services: ServicesDep, p: Viewer) -> list[TokenOut]:
    rows = auth.list_tokens(services.db)
    if p.role != "admin":
        rows = [r for r in rows if r["user_id"] is not None and r["user_id"] == p.user_id]
    return [_token_out(r) for r in rows]


@router.post("/auth/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenIn, services: ServicesDep, p: Viewer) -> TokenCreated:
    now = services.clock.now_ms()
    try:
        requested = parse_time(body.expires) if body.expires not in (None, "") else None
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, "bad_time", "expires must be RFC 3339 with an offset or epoch milliseconds") from None
    if body.service:
        if p.role != "admin":
            raise ApiError(403, "forbidden", "only an admin creates service tokens")
        user = None
    else:
        if p.user_id is None:
            raise ApiError(403, "forbidden", "a service token cannot create personal tokens")
        user = p.user_id
    role = body.role or (p.role if user else "viewer")
    if auth.ROLE_RANK.get(role, 99) > auth.ROLE_RANK.get(p.role, 0):  # a viewer token of an admin stays a viewer
        raise ApiError(400, "bad_token_request", f"a token cannot hold role {role} above your current role {p.role}")
    try:
        expires = auth.token_expiry(role, requested, now)  # capped by the token's role (docs/SECURITY.md)
    except auth.TokenExpiryTooLong as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "bad_token_request", str(exc)) from None
    try:
        raw = auth.create_token(services.db, user=user, role=role, name=body.name, expires=expires,
                                actor=p.name, now_ms=now)
    except ValueError as exc:
        raise ApiError(400, "bad_token_request", str(exc)) from None
    tid = auth.api_token_id(services.db, raw)
    row = next(r for r in auth.list_tokens(services.db) if r["id"] == tid)
    return TokenCreated(id=row["id"], token=raw, role=row["role"], expires_at=to_iso(row["expires_at"]))


@router.delete("/auth/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, services: ServicesDep, p: Viewer) -> Response:
    owner = auth.token_owner(services.db, token_id)
    if owner is None:
        raise ApiError(404, "unknown_token", f"no token {token_id!r}")
    own = owner.kind == "api" and owner.user_id is not None and owner.user_id == p.user_id
    if not own and p.role != "admin":
        raise ApiError(404, "unknown_token", f"no token {token_id!r}")  # do not reveal others' tokens
    auth.revoke_token(services.db, token_id, actor=p.name, now_ms=services.clock.now_ms())
    return Response(status_code=204)


@router.post("/auth/device-tokens", response_model=DeviceTokenCreated, status_code=201)
def create_device_token(body: DeviceTokenIn, services: ServicesDep, p: Admin) -> DeviceTokenCreated:
    raw = auth.create_device_token(services.db, body.device_ids, name=body.name, actor=p.name,
                                   now_ms=services.clock.now_ms())
    return DeviceTokenCreated(token=raw, device_ids=sorted(set(body.device_ids)))


@router.get("/users", response_model=list[UserOut])
def list_users(services: ServicesDep, _: Admin) -> list[UserOut]:
    return [UserOut(**{**u, "active": bool(u["active"])}) for u in auth.list_users(services.db)]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, services: ServicesDep, p: Admin) -> UserOut:
    try:
        uid = auth.create_user(services.db, body.username, body.full_name, body.password, body.role, actor=p.name,
                               now_ms=services.clock.now_ms())
    except ValueError as exc:
        raise ApiError(400, "bad_user", str(exc)) from None
    u = auth.get_user(services.db, uid) or {}
    return UserOut(**{**u, "active": bool(u["active"])})


_USER_EDIT_RESPONSES: dict[int | str, dict] = {
    404: {"description": "`unknown_user`"},
    409: {"description": "`last_admin`: the change would leave no active admin"},
}


def _user_out(services, username: str) -> UserOut:
    u = auth.find_user(services.db, username)
    if u is None:
        raise ApiError(404, "unknown_user", f"no user {username!r}")
    return UserOut(**{**u, "active": bool(u["active"])})


@router.patch("/users/{username}", response_model=UserOut, responses=_USER_EDIT_RESPONSES,
              summary="Change a person's full name, role or active state (audited)")
def update_user(username: str, body: UserPatch, services: ServicesDep, p: Admin) -> UserOut:
    """Disabling ends the person's sessions and stops their personal tokens; a role change applies to their
    open sessions and tokens from the next request. The last active admin can be neither demoted nor
    disabled (409 ``last_admin``)."""
    try:
        auth.update_user(services.db, username, full_name=body.full_name, role=body.role, active=body.active,
                         actor=p.name, now_ms=services.clock.now_ms())
    except NotFound:
        raise ApiError(404, "unknown_user", f"no user {username!r}") from None
    except ValueError as exc:
        raise ApiError(400, "bad_user", str(exc)) from None
    return _user_out(services, username)


@router.post("/users/{username}/password", status_code=204, responses=_USER_EDIT_RESPONSES,
             summary="Set a person's password (admin reset; audited; ends their sessions)")
def set_user_password(username: str, body: PasswordSet, services: ServicesDep, p: Admin) -> Response:
    u = auth.find_user(services.db, username)
    if u is None:
        raise ApiError(404, "unknown_user", f"no user {username!r}")
    try:
        auth.set_password(services.db, u["id"], body.password, actor=p.name, now_ms=services.clock.now_ms())
    except ValueError as exc:
        raise ApiError(400, "bad_password", str(exc)) from None
    return Response(status_code=204)

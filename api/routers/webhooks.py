"""Webhook subscriptions (admin only): CRUD, secret shown once, rotation, deliveries and attempts,
manual redelivery, and a test ping."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field, field_validator

from coldtrace.core.model import HOUR
from coldtrace.services import webhooks as wh
from coldtrace.services.audit import record_audit
from coldtrace.services.delivery import Notifier
from coldtrace.store import webhooks as store

from ..deps import Admin, ServicesDep
from ..errors import ApiError

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

DEVICE_RE = r"^[A-Za-z0-9._-]{1,64}$"
SeverityName = Literal["info", "warning", "alarm", "critical"]
DeliveryId = Annotated[int, Path(ge=1, le=2**62)]


def _check_types(types: list[str] | None) -> list[str] | None:
    if types is None:
        return None
    families = {t.split(".", 1)[0] for t in wh.EVENT_TYPES}
    for t in types:
        ok = t in wh.EVENT_TYPES or (t.endswith(".*") and t[:-2] in families)
        if not ok:
            raise ValueError(f"unknown event type {t!r}; one of {', '.join(wh.EVENT_TYPES)} or '<family>.*'")
    return types


class SubscriptionIn(BaseModel):
    url: Annotated[str, Field(min_length=8, max_length=2000)]
    description: Annotated[str, Field(max_length=500)] = ""
    event_types: list[str] = Field(default_factory=list, description="empty: every type; 'excursion.*'")
    min_severity: SeverityName | None = None
    device_ids: list[Annotated[str, Field(pattern=DEVICE_RE)]] = Field(default_factory=list)
    enabled: bool = True
    escalation: bool = Field(False, description="an escalation contact: receives alert.escalated")

    _types = field_validator("event_types")(_check_types)


class SubscriptionPatch(BaseModel):
    url: Annotated[str | None, Field(min_length=8, max_length=2000)] = None
    description: Annotated[str | None, Field(max_length=500)] = None
    event_types: list[str] | None = None
    min_severity: SeverityName | None = None
    device_ids: list[Annotated[str, Field(pattern=DEVICE_RE)]] | None = None
    enabled: bool | None = None
    escalation: bool | None = None

    _types = field_validator("event_types")(_check_types)


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    min_severity: str | None
    device_ids: list[str]
    enabled: bool
    escalation: bool
    disabled_reason: str | None
    created_at: int
    created_by: str | None
    updated_at: int
    rotation_expires_at: int | None


class SubscriptionWithSecret(SubscriptionOut):
    secret: str = Field(description="shown only in this answer; store it now")


class RotateIn(BaseModel):
    overlap_hours: Annotated[float | None, Field(ge=0, le=24 * 30)] = None


class DeliveryOut(BaseModel):
    id: int
    subscription_id: str
    event_id: str
    event_type: str
    state: str
    attempts: int
    next_attempt_at: int | None
    created_at: int
    delivered_at: int | None
    last_status: int | None
    last_error: str | None


class AttemptOut(BaseModel):
    id: int
    delivery_id: int
    attempt_no: int
    trigger: str
    started_at: int
    status: int | None
    latency_ms: int | None
    error: str | None
    response: str | None = Field(description="the receiver's status line (e.g. 'HTTP/1.1 503 Service Unavailable');"
                                             " its body is never read nor kept")


class DeliveryDetail(DeliveryOut):
    attempts_list: list[AttemptOut]


class PingOut(BaseModel):
    delivery_id: int
    outcome: str
    status: int | None
    latency_ms: int
    error: str | None


def _safe_target(services: Any, url: str) -> None:
    try:
        wh.check_target(url, services.settings.webhooks.allowed_private_targets)
    except wh.WebhookError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


def _audit(services: Any, actor: str, action: str, sid: str, old: Any = None, new: Any = None) -> None:
    with services.db.write() as c:
        record_audit(c, actor=actor, action=action, entity="webhook_subscription", entity_id=sid, old=old,
                     new=new, ts=services.clock.now_ms())


@router.get("/subscriptions", response_model=list[SubscriptionOut])
def list_subscriptions(services: ServicesDep, _: Admin) -> list[dict]:
    return store.list_subscriptions(services.db)


@router.post("/subscriptions", response_model=SubscriptionWithSecret, status_code=201,
             summary="Create a subscription; the answer holds its secret, shown this once")
def create_subscription(body: SubscriptionIn, services: ServicesDep, who: Admin) -> dict:
    _safe_target(services, body.url)
    secret = wh.generate_secret()
    sub = store.create_subscription(services.db, secret=secret, now=services.clock.now_ms(),
                                    created_by=who.name, **body.model_dump())
    _audit(services, who.name, "webhook.create", sub["id"], new=sub)
    return {**sub, "secret": secret}


@router.get("/subscriptions/{sid}", response_model=SubscriptionOut)
def get_subscription(sid: str, services: ServicesDep, _: Admin) -> dict:
    return store.get_subscription(services.db, sid)


@router.patch("/subscriptions/{sid}", response_model=SubscriptionOut)
def update_subscription(sid: str, body: SubscriptionPatch, services: ServicesDep, who: Admin) -> dict:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("url"):
        _safe_target(services, changes["url"])
    old = store.get_subscription(services.db, sid)
    new = store.update_subscription(services.db, sid, changes, services.clock.now_ms())
    _audit(services, who.name, "webhook.update", sid, old=old, new=new)
    if changes.get("enabled"):
        services.pipeline.alerts_emitted.set()  # held deliveries resume: wake the notifier
    return new


@router.delete("/subscriptions/{sid}", status_code=204)
def delete_subscription(sid: str, services: ServicesDep, who: Admin) -> Response:
    old = store.get_subscription(services.db, sid)
    store.delete_subscription(services.db, sid)
    _audit(services, who.name, "webhook.delete", sid, old=old)
    return Response(status_code=204)


@router.post("/subscriptions/{sid}/rotate", response_model=SubscriptionWithSecret,
             summary="New secret (shown once); the old one keeps signing as a second signature for a while")
def rotate_secret(sid: str, services: ServicesDep, who: Admin, body: RotateIn | None = None) -> dict:
    hours = body.overlap_hours if body and body.overlap_hours is not None \
        else services.settings.webhooks.rotation_overlap_hours
    secret = wh.generate_secret()
    sub = store.rotate_secret(services.db, sid, secret, services.clock.now_ms(), int(hours * HOUR))
    _audit(services, who.name, "webhook.rotate_secret", sid, new={"rotation_expires_at": sub["rotation_expires_at"]})
    return {**sub, "secret": secret}


@router.post("/subscriptions/{sid}/ping", response_model=PingOut,
             summary="Send a signed webhook.ping now and report what the receiver answered")
def ping(sid: str, services: ServicesDep, _: Admin) -> dict:
    ws = services.settings.webhooks
    notifier = Notifier(services.db, services.clock, allowed_private_targets=ws.allowed_private_targets,
                        timeout_s=ws.timeout_s, lane_concurrency=1)
    try:
        r = notifier.ping(sid)
    finally:
        notifier.close()
    return {"delivery_id": r.delivery_id, "outcome": r.outcome, "status": r.status, "latency_ms": r.latency_ms,
            "error": r.error}


@router.get("/deliveries", response_model=list[DeliveryOut])
def list_deliveries(services: ServicesDep, _: Admin, subscription_id: str | None = None,
                    state: Literal["pending", "delivered", "failed", "disabled"] | None = None,
                    event_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[dict]:
    return store.list_deliveries(services.db, subscription_id, state, event_id, limit, offset)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_delivery(delivery_id: DeliveryId, services: ServicesDep, _: Admin) -> dict:
    d = store.get_delivery(services.db, delivery_id)
    return {**d, "attempts_list": store.list_attempts(services.db, delivery_id)}


@router.get("/deliveries/{delivery_id}/attempts", response_model=list[AttemptOut])
def list_attempts(delivery_id: DeliveryId, services: ServicesDep, _: Admin) -> list[dict]:
    return store.list_attempts(services.db, delivery_id)


@router.post("/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut, status_code=202,
             summary="Send the same event (same webhook-id) again as soon as the notifier runs")
def redeliver(delivery_id: DeliveryId, services: ServicesDep, who: Admin) -> dict:
    d = store.redeliver(services.db, delivery_id, services.clock.now_ms())
    _audit(services, who.name, "webhook.redeliver", d["subscription_id"], new={"delivery_id": delivery_id,
                                                                              "event_id": d["event_id"]})
    services.pipeline.alerts_emitted.set()
    return d


"""Alert handling by people: acknowledge, assign, comment, resolve, and the full history of an alert.

Reading is for every role; changing an alert's handling needs the QA role (operators with a QA role in a
GDP warehouse acknowledge alarms). The actor recorded is the authenticated principal, never a field of
the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from coldtrace.core.clock import to_iso
from coldtrace.services import alerts as lifecycle
from coldtrace.services.auth import Principal

from ..deps import QA, ServicesDep, Viewer
from ..errors import ApiError
from ..schemas import AlertOut

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

Comment = Annotated[str | None, Field(max_length=4000)]


class AckIn(BaseModel):
    comment: Comment = None


class AssignIn(BaseModel):
    assignee: Annotated[str | None, Field(max_length=200, description="a username; null unassigns")]
    comment: Comment = None


class CommentIn(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class ResolveIn(BaseModel):
    comment: Annotated[str, Field(min_length=1, max_length=4000, description="why it is resolved")]


class ShelveIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=4000, description="why it is suppressed")]
    minutes: Annotated[int, Field(ge=1, le=lifecycle.MAX_SHELVE_MS // 60_000,
                                  description="how long (ISA-18.2: shelving always expires)")]


class UnshelveIn(BaseModel):
    reason: Comment = None


class AlertHandlingOut(AlertOut):
    """The alert as listed, plus its handling by people."""

    assignee: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    ack_comment: str | None
    resolved_at: str | None
    resolved_by: str | None
    resolution: str | None
    escalations: int
    last_escalated_at: str | None
    next_escalation_at: str | None
    shelved_at: str | None
    shelved_by: str | None
    shelve_reason: str | None


class AlertEventOut(BaseModel):
    at: str
    actor: str
    action: str
    comment: str | None
    data: dict[str, Any] | None


def _out(a: dict[str, Any]) -> AlertHandlingOut:
    times = ("ts", "created_at", "acknowledged_at", "resolved_at", "last_escalated_at", "next_escalation_at",
             "cleared_at", "shelved_until", "shelved_at")
    return AlertHandlingOut(**{k: (to_iso(a[k]) if k in times else a[k]) for k in AlertHandlingOut.model_fields
                               if k in a})


def _bad(exc: ValueError) -> ApiError:
    return ApiError(400, "bad_request", str(exc))


@router.get("/{alert_id}/handling", response_model=AlertHandlingOut,
            summary="The alert with who acknowledged, assigned, resolved it and its escalations")
def get_handling(alert_id: str, services: ServicesDep, _: Viewer) -> AlertHandlingOut:
    return _out(lifecycle.get(services.db, alert_id, services.clock.now_ms()))


@router.get("/{alert_id}/history", response_model=list[AlertEventOut],
            summary="Every change of the alert, oldest first, with who and when")
def get_history(alert_id: str, services: ServicesDep, _: Viewer) -> list[AlertEventOut]:
    return [AlertEventOut(at=to_iso(e["at"]) or "", actor=e["actor"], action=e["action"], comment=e["comment"],
                          data=e["data"]) for e in lifecycle.history(services.db, alert_id)]


def _person(who: Principal, what: str) -> None:
    """ISA-18.2: acknowledging (and closing) an alarm is what a person does; a service token is a program."""
    if who.user_id is None:
        raise ApiError(403, "person_required", f"{what} an alert needs a person (a user, or a user's own token),"
                                               " not a service token")


@router.post("/{alert_id}/acknowledge", response_model=AlertHandlingOut,
             responses={403: {"description": "`person_required`: a service token cannot acknowledge"}})
def acknowledge(alert_id: str, services: ServicesDep, who: QA, body: AckIn | None = None) -> AlertHandlingOut:
    _person(who, "acknowledging")
    a = lifecycle.acknowledge(services.db, alert_id, actor=who.name, now=services.clock.now_ms(),
                              comment=body.comment if body else None)
    services.pipeline.alerts_emitted.set()  # alert.acknowledged goes out now
    return _out(a)


@router.post("/{alert_id}/assign", response_model=AlertHandlingOut,
             responses={422: {"description": "`unknown_user`: the assignee is not an active user"}})
def assign(alert_id: str, body: AssignIn, services: ServicesDep, who: QA) -> AlertHandlingOut:
    try:
        return _out(lifecycle.assign(services.db, alert_id, actor=who.name, assignee=body.assignee,
                                     now=services.clock.now_ms(), comment=body.comment))
    except lifecycle.UnknownUser as exc:
        raise ApiError(422, exc.code, str(exc)) from None


@router.post("/{alert_id}/comments", response_model=AlertEventOut, status_code=201)
def comment(alert_id: str, body: CommentIn, services: ServicesDep, who: QA) -> AlertEventOut:
    try:
        e = lifecycle.add_comment(services.db, alert_id, actor=who.name, text=body.text,
                                  now=services.clock.now_ms())
    except ValueError as exc:
        raise _bad(exc) from None
    return AlertEventOut(at=to_iso(e["at"]) or "", actor=e["actor"], action=e["action"], comment=e["comment"],
                         data=e["data"])


@router.post("/{alert_id}/shelve", response_model=AlertHandlingOut,
             summary="Suppress an alert for a while, with a reason (audited; the expiry brings it back)")
def shelve(alert_id: str, body: ShelveIn, services: ServicesDep, who: QA) -> AlertHandlingOut:
    _person(who, "shelving")
    now = services.clock.now_ms()
    try:
        return _out(lifecycle.shelve(services.db, alert_id, actor=who.name, role=who.role, reason=body.reason,
                                     until=now + body.minutes * 60_000, now=now))
    except ValueError as exc:
        raise _bad(exc) from None


@router.post("/{alert_id}/unshelve", response_model=AlertHandlingOut, summary="End a shelving now")
def unshelve(alert_id: str, services: ServicesDep, who: QA, body: UnshelveIn | None = None) -> AlertHandlingOut:
    return _out(lifecycle.unshelve(services.db, alert_id, actor=who.name, now=services.clock.now_ms(),
                                   reason=body.reason if body else None))


@router.post("/{alert_id}/resolve", response_model=AlertHandlingOut,
             responses={403: {"description": "`person_required`: a service token cannot resolve"},
                        409: {"description": "`condition_active`: its excursion is still going on"}})
def resolve(alert_id: str, body: ResolveIn, services: ServicesDep, who: QA) -> AlertHandlingOut:
    _person(who, "resolving")
    try:
        a = lifecycle.resolve(services.db, alert_id, actor=who.name, now=services.clock.now_ms(),
                              comment=body.comment)
    except ValueError as exc:
        raise _bad(exc) from None
    services.pipeline.alerts_emitted.set()
    return _out(a)

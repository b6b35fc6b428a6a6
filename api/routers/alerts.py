"""Alerts: facts raised by the engines (never deleted)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from coldtrace.core.errors import NotFound
from coldtrace.ports import AlertQuery
from coldtrace.services import alerts as lifecycle

from ..deps import ServicesDep, Viewer, parse_ts_param
from ..errors import ApiError
from ..schemas import AlertOut

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


@router.get("", response_model=list[AlertOut], summary="Alerts, newest first (or the inbox), with filters")
def list_alerts(services: ServicesDep, _: Viewer,
                type: Annotated[str | None, Query(description="e.g. excursion.alarm")] = None,
                severity: str | None = None,
                min_severity: Annotated[Literal["info", "warning", "alarm", "critical"] | None, Query(
                    description="this severity and above")] = None,
                device_id: str | None = None, shipment_id: str | None = None,
                state: Annotated[str | None, Query(description="open | acknowledged | resolved")] = None,
                condition: Annotated[str | None, Query(description="active | cleared")] = None,
                view: Annotated[Literal["inbox", "shelved"] | None, Query(
                    description="inbox: what needs a person (not resolved, not acknowledged-and-cleared, not "
                                "shelved), unacknowledged-active first, then acknowledged-active, then "
                                "unacknowledged-cleared; shelved: the shelved alerts")] = None,
                group: Annotated[Literal["episode"] | None, Query(
                    description="episode: one entry per excursion episode - limits sharing direction and "
                                "threshold (high-warn, high) are staged severities of one episode; the entry "
                                "is the episode's first alert in this order, with `episode.stages`")] = None,
                since: Annotated[str | None, Query(description="created at or after (RFC 3339 / ms)")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[AlertOut]:
    now = services.clock.now_ms()
    sevs = None
    if min_severity is not None:
        order = ("critical", "alarm", "warning", "info")
        sevs = order[:order.index(min_severity) + 1]
    query = AlertQuery(type=type or None, severity=severity or None, severities=sevs, device_id=device_id or None,
                       shipment_id=shipment_id or None, state=state or None, condition=condition or None,
                       since=parse_ts_param(since, "since"), view=view)
    out = []
    for r, ep in lifecycle.list_alerts(services.db, query, now, limit=limit, offset=offset, group=group):
        a = AlertOut.from_row(r, now)  # with its assignee: shown in the QA pages' inbox
        if group is not None:
            a.episode = ep
        out.append(a)
    return out


@router.get("/{alert_id}", response_model=AlertOut)
def get_alert(alert_id: str, services: ServicesDep, _: Viewer) -> AlertOut:
    try:
        row = lifecycle.get_alert(services.db, alert_id)
    except NotFound:
        raise ApiError(404, "unknown_alert", f"no alert {alert_id!r}") from None
    return AlertOut.from_row(row, services.clock.now_ms())

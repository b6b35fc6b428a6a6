"""Alerts: facts raised by the engines (never deleted)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from coldtrace.services.alerts import group_by_episode, inbox_sql
from coldtrace.store.db import add_equal_filters

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
    where: list[str] = []
    params: list = []
    add_equal_filters(where, params, ((col, val or None) for col, val in (
        ("type", type), ("severity", severity), ("device_id", device_id), ("shipment_id", shipment_id),
        ("state", state), ("condition", condition))))
    if min_severity is not None:
        sevs = ["critical", "alarm", "warning", "info"]
        sevs = sevs[:sevs.index(min_severity) + 1]
        where.append(f"severity IN ({','.join('?' * len(sevs))})")
        params.extend(sevs)
    t = parse_ts_param(since, "since")
    if t is not None:
        where.append("created_at >= ?")
        params.append(t)
    order = "created_at DESC, ts DESC, id"
    if view == "inbox":
        inbox_where, order = inbox_sql()
        where.append(inbox_where)
        params.append(now)
    elif view == "shelved":
        where.append("state != 'resolved' AND shelved_until > ?")
        params.append(now)
    sql = ("SELECT *, (SELECT assignee FROM alert_lifecycle WHERE alert_id = alerts.id) AS assignee FROM alerts"
           + (" WHERE " + " AND ".join(where) if where else ""))  # assignee: shown in the QA pages' inbox
    sql += f" ORDER BY {order}"
    if group is None:
        rows = services.db.query(sql + " LIMIT ? OFFSET ?", (*params, limit, offset))
        return [AlertOut.from_row(r, now) for r in rows]
    # grouping folds several rows into one: group a bounded window, then page through the entries
    rows = services.db.query(sql + " LIMIT ?", (*params, min(4 * (limit + offset), 20_000)))
    out = []
    for r, ep in group_by_episode(services.db, list(rows), offset, limit):
        a = AlertOut.from_row(r, now)
        a.episode = ep
        out.append(a)
    return out


@router.get("/{alert_id}", response_model=AlertOut)
def get_alert(alert_id: str, services: ServicesDep, _: Viewer) -> AlertOut:
    row = services.db.query_one("SELECT * FROM alerts WHERE id = ?", (alert_id,))
    if row is None:
        raise ApiError(404, "unknown_alert", f"no alert {alert_id!r}")
    return AlertOut.from_row(row, services.clock.now_ms())

"""Quarantine: everything that arrived and could not be stored, with its reason."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coldtrace.store.db import add_equal_filters

from ..deps import ServicesDep, Viewer
from ..schemas import QuarantineOut

router = APIRouter(prefix="/api/v1/quarantine", tags=["quarantine"])


@router.get("", response_model=list[QuarantineOut], summary="Quarantined messages and readings, newest first")
def list_quarantine(services: ServicesDep, _: Viewer, reason: str | None = None, device_id: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[QuarantineOut]:
    where: list[str] = []
    params: list = []
    add_equal_filters(where, params, (("reason", reason or None), ("device_id", device_id or None)))
    sql = "SELECT * FROM quarantine" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
    params += [limit, offset]
    return [QuarantineOut.from_row(r) for r in services.db.query(sql, tuple(params))]


@router.get("/summary", summary="Counts by reason")
def quarantine_summary(services: ServicesDep, _: Viewer) -> dict[str, int]:
    return {r[0]: r[1] for r in services.db.query("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason")}

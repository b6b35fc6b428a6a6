"""Quarantine: everything that arrived and could not be stored, with its reason."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from coldtrace.services.audit import record_audit
from coldtrace.store import devices as device_store

from ..deps import QA, ServicesDep, Viewer
from ..errors import ApiError
from ..schemas import QuarantineOut

router = APIRouter(prefix="/api/v1/quarantine", tags=["quarantine"])


@router.get("", response_model=list[QuarantineOut], summary="Quarantined messages and readings, newest first")
def list_quarantine(services: ServicesDep, _: Viewer, reason: str | None = None, device_id: str | None = None,
                    open_only: Annotated[bool, Query(alias="open")] = False,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[QuarantineOut]:
    """``open=true``: only conflicting duplicates that QA has not resolved yet."""
    rows = device_store.list_quarantine(services.db.conn(), reason=reason or None, device_id=device_id or None,
                                        open_only=open_only, limit=limit, offset=offset)
    return [QuarantineOut.from_row(r) for r in rows]


@router.get("/summary", summary="Counts by reason")
def quarantine_summary(services: ServicesDep, _: Viewer) -> dict[str, int]:
    return device_store.quarantine_by_reason(services.db.conn())


class ResolutionIn(BaseModel):
    decision: Literal["stored_value_correct", "received_value_correct", "both_invalid", "other"]
    comment: str = Field(min_length=3, max_length=2000)


@router.post("/{quarantine_id}/resolve", response_model=QuarantineOut,
             summary="QA resolves a conflicting duplicate (audited); the device is flagged until then",
             responses={404: {"description": "no such quarantine row"},
                        409: {"description": "not a conflicting duplicate, or already resolved"}})
def resolve_conflict(quarantine_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: ResolutionIn,
                     services: ServicesDep, who: QA) -> QuarantineOut:
    """Records QA's decision on a conflicting duplicate (RULES.md, "Conflicting readings"). The stored series is
    not changed: the decision and its comment are the record of which value is right."""
    db = services.db
    now = services.clock.now_ms()
    resolution = f"{body.decision}: {body.comment}"
    with db.write() as c:
        row = device_store.get_quarantine(c, quarantine_id)
        if row is None:
            raise ApiError(404, "not_found", f"no quarantine row {quarantine_id}")
        if row["reason"] != "conflicting_duplicate":
            raise ApiError(409, "not_a_conflict", f"quarantine row {quarantine_id} is {row['reason']!r}, not a"
                           " conflicting duplicate: only conflicts are resolved")
        if row["resolved_at"] is not None:
            raise ApiError(409, "already_resolved", f"quarantine row {quarantine_id} is already resolved")
        device_store.resolve_quarantine(c, quarantine_id, now, who.name, resolution)
        record_audit(c, actor=who.name, action="quarantine.resolve_conflict", entity="quarantine",
                     entity_id=str(quarantine_id), old={"resolved_at": None},
                     new={"decision": body.decision, "comment": body.comment, "device_id": row["device_id"],
                          "reading_ts": row["reading_ts"]}, ts=now)
    return QuarantineOut.from_row(device_store.get_quarantine(db.conn(), quarantine_id))

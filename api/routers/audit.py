"""The audit trail, for QA and admins: records in order, and a verification of the hash chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from coldtrace import audit
from coldtrace.clock import to_iso

from ..deps import QA, RangeDep, ServicesDep

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditOut(BaseModel):
    id: int
    ts: str
    ts_ms: int
    actor: str
    action: str
    entity: str
    entity_id: str | None
    old_value: Any = None
    new_value: Any = None
    reason: str | None
    hash: str


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_after_id: int | None = None  # pass as ?after_id= for the next page


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    head_hash: str
    first_bad_id: int | None
    problem: str | None


@router.get("", response_model=AuditPage, summary="Audit records in order (keyset pagination)")
def list_audit(services: ServicesDep, _: QA, rng: RangeDep,
               entity: Annotated[str | None, Query(max_length=64)] = None,
               entity_id: Annotated[str | None, Query(max_length=200)] = None,
               actor: Annotated[str | None, Query(max_length=200)] = None,
               action: Annotated[str | None, Query(max_length=64)] = None,
               after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
               limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100) -> AuditPage:
    rows = audit.query(services.db, entity=entity, entity_id=entity_id, actor=actor, action=action,
                       start=rng.start, end=rng.end, after_id=after_id, limit=limit)
    items = [AuditOut(**{k: r[k] for k in ("id", "actor", "action", "entity", "entity_id", "old_value",
                                           "new_value", "reason", "hash")}, ts=to_iso(r["ts"]) or "",
                      ts_ms=r["ts"]) for r in rows]
    return AuditPage(items=items, next_after_id=rows[-1]["id"] if len(rows) == limit else None)


@router.get("/verify", response_model=VerifyOut, summary="Walk the hash chain; name the first bad record")
def verify(services: ServicesDep, _: QA) -> VerifyOut:
    return VerifyOut(**audit.verify(services.db).to_dict())

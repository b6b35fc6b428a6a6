"""The audit trail, for QA and admins: records in order, and a verification of the hash chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from coldtrace.core.clock import to_iso
from coldtrace.services import audit, audit_anchor, audit_keys

from ..deps import QA, RangeDep, ServicesDep
from ..errors import ApiError

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
    head_id: int = 0
    key_id: str | None = None  # fingerprint of the HMAC key the keyed records were checked with
    keyed_from: int | None = None  # records before it are the unkeyed chain from before keying began
    heads_checked: int = 0  # signed exported heads (and the kept head) found unchanged in the chain


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


@router.get("/verify", response_model=VerifyOut, summary="Walk the keyed hash chain, check it against the signed"
            " heads exported outside the database; name the first bad record")
def verify(services: ServicesDep, _: QA,
           known_head: Annotated[str | None, Query(max_length=100, description=(
               "ID:HASH of a head kept elsewhere (GET /audit/head earlier): detects a chain cut at its end"))] = None,
           ) -> VerifyOut:
    head = None
    if known_head:
        try:
            head = audit.parse_head(known_head)
        except ValueError as exc:
            raise ApiError(400, "bad_head", str(exc)) from None
    return VerifyOut(**audit_anchor.verify(services.db, services.settings, known_head=head).to_dict())


class HeadOut(BaseModel):
    id: int
    hash: str
    head: str  # ID:HASH, to keep outside ColdTrace (a signed report, a ticket, another system)


@router.get("/head", response_model=HeadOut, summary="The newest record's id and hash, to keep elsewhere")
def head(services: ServicesDep, _: QA) -> HeadOut:
    rid, h = audit.head(services.db)
    return HeadOut(id=rid, hash=h, head=f"{rid}:{h}")


class PublicKeyOut(BaseModel):
    algorithm: str = "Ed25519"
    fingerprint: str
    pem: str  # checks the "sig" of each line of the head file (docs/SECURITY.md)
    head_file: str


@router.get("/public-key", response_model=PublicKeyOut, summary="The public key of the signed audit heads")
def public_key(services: ServicesDep, _: QA) -> PublicKeyOut:
    key = audit_anchor.public_key_for(services.settings)
    if key is None:
        raise ApiError(404, "no_signing_key", "no audit signing key: it is created when the service starts")
    return PublicKeyOut(fingerprint=audit_keys.public_fingerprint(key), pem=audit_keys.public_pem(key),
                        head_file=str(audit_anchor.head_file(services.settings)))

"""Shipments: create, attach loggers, move through transit and review, sign decisions, trip reports, lots."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from coldtrace.core.clock import parse_time, to_iso
from coldtrace.services import release_checklist, report, shipments, signature
from coldtrace.store import shipments as store

from ..deps import QA, ServicesDep, Viewer
from ..errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["shipments"])

Text = Annotated[str, Field(min_length=1, max_length=200)]
Stamp = Annotated[int | str | None, Field(description="RFC 3339 with offset, or epoch ms")]
ID_RE = r"^[A-Za-z0-9._:-]{1,100}$"
DEVICE_RE = r"^[A-Za-z0-9._-]{1,64}$"


class ShipmentIn(BaseModel):
    reference: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]{1,64}$")]
    origin: Text
    destination: Text
    product: Text
    lot: Text
    profile_id: Annotated[str, Field(min_length=1, max_length=64)] = "2-8C"


class ShipmentPatch(BaseModel):
    origin: Text | None = None
    destination: Text | None = None
    product: Text | None = None
    lot: Text | None = None
    profile_id: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    reason: Annotated[str | None, Field(max_length=1000)] = None


class LoggerIn(BaseModel):
    device_id: Annotated[str, Field(pattern=DEVICE_RE)]
    start: Stamp = None
    end: Stamp = None


class TransitionIn(BaseModel):
    to: Literal["in_transit", "delivered", "under_review"]
    at: Stamp = None
    reason: Annotated[str | None, Field(max_length=1000)] = None


class DecisionIn(BaseModel):
    meaning: Literal["released", "rejected", "quarantined"]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    password: Annotated[str, Field(min_length=1, max_length=1000)]
    supersede_reason: Annotated[str | None, Field(max_length=2000)] = None
    override_failed_checks: bool = Field(False, description=(
        "Release although items of the release checklist fail: the signer states it (the reason must justify"
        " it); without it such a release is refused with 409 checklist_failed"))


class LoggerOut(BaseModel):
    device_id: str
    start: str | None
    end: str | None
    attached_at: str
    attached_by: str


class DecisionOut(BaseModel):
    id: str
    meaning: str
    reason: str
    printed_name: str
    signer_username: str
    signed_at: str
    supersedes_id: str | None
    supersede_reason: str | None
    record_hash: str
    signature_hash: str
    signature_valid: bool

    @classmethod
    def from_row(cls, d: dict[str, Any]) -> DecisionOut:
        return cls(id=d["id"], meaning=d["meaning"], reason=d["reason"], printed_name=d["printed_name"],
                   signer_username=d["signer_username"], signed_at=to_iso(d["signed_at"]) or "",
                   supersedes_id=d["supersedes_id"], supersede_reason=d["supersede_reason"],
                   record_hash=d["record_hash"], signature_hash=d["signature_hash"],
                   signature_valid=signature.verify_decision(d))


class ShipmentOut(BaseModel):
    id: str
    reference: str
    origin: str
    destination: str
    product: str
    lot: str
    profile_id: str
    state: str
    start: str | None
    end: str | None
    created_at: str
    created_by: str
    loggers: list[LoggerOut] = []
    decision: DecisionOut | None = None


class ShipmentPage(BaseModel):
    items: list[ShipmentOut]
    next_after: str | None = None  # pass as ?after= for the next page


def _ts(value: int | str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        t = parse_time(value)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, "bad_time", f"{name} must be RFC 3339 with an offset or epoch milliseconds") from None
    if not 0 <= t < 2**53:
        raise ApiError(400, "bad_time", f"{name} is out of range")
    return t


def _out(services: Any, sh: dict[str, Any], full: bool = True) -> ShipmentOut:
    loggers = [LoggerOut(device_id=r["device_id"], start=to_iso(r["start_ts"]), end=to_iso(r["end_ts"]),
                         attached_at=to_iso(r["attached_at"]) or "", attached_by=r["attached_by"])
               for r in store.loggers(services.db, sh["id"])] if full else []
    decs = store.decisions(services.db, sh["id"]) if full else []
    return ShipmentOut(id=sh["id"], reference=sh["reference"], origin=sh["origin"], destination=sh["destination"],
                       product=sh["product"], lot=sh["lot"], profile_id=sh["profile_id"], state=sh["state"],
                       start=to_iso(sh["start_ts"]), end=to_iso(sh["end_ts"]),
                       created_at=to_iso(sh["created_at"]) or "", created_by=sh["created_by"], loggers=loggers,
                       decision=DecisionOut.from_row(decs[-1]) if decs else None)


def _emit(services: Any):
    return services.pipeline.emit


def _policy(services: Any) -> str:
    return services.settings.shipments.uncalibrated_loggers


@router.get("/shipments", response_model=ShipmentPage, summary="Shipments by id, paginated")
def list_shipments(services: ServicesDep, _: Viewer,
                   state: Literal["planned", "in_transit", "delivered", "under_review", "released",
                                  "quarantined", "rejected"] | None = None,
                   product: Annotated[str | None, Query(max_length=200)] = None,
                   lot: Annotated[str | None, Query(max_length=200)] = None,
                   device_id: Annotated[str | None, Query(max_length=64)] = None,
                   after: Annotated[str | None, Query(max_length=100)] = None,
                   limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = 100) -> ShipmentPage:
    rows = store.list_shipments(services.db, state=state, product=product, lot=lot, device_id=device_id,
                                after=after, limit=limit)
    return ShipmentPage(items=[_out(services, r, full=False) for r in rows],
                        next_after=rows[-1]["id"] if len(rows) == limit else None)


@router.post("/shipments", response_model=ShipmentOut, status_code=201)
def create_shipment(body: ShipmentIn, services: ServicesDep, who: QA) -> ShipmentOut:
    sh = shipments.create_shipment(services.db, **body.model_dump(), actor=who.name,
                                   now_ms=services.clock.now_ms())
    return _out(services, sh)


@router.get("/shipments/{shipment_id}", response_model=ShipmentOut)
def get_shipment(shipment_id: str, services: ServicesDep, _: Viewer) -> ShipmentOut:
    return _out(services, store.get_shipment(services.db, shipment_id))


@router.patch("/shipments/{shipment_id}", response_model=ShipmentOut,
              summary="Correct a planned shipment (route, product, lot, profile); audited")
def update_shipment(shipment_id: str, body: ShipmentPatch, services: ServicesDep, who: QA) -> ShipmentOut:
    fields = body.model_dump(exclude_unset=True, exclude={"reason"})
    fields = {k: v for k, v in fields.items() if v is not None}
    sh = shipments.update_shipment(services.db, shipment_id, actor=who.name, now_ms=services.clock.now_ms(),
                                   reason=body.reason, **fields)
    return _out(services, sh)


@router.post("/shipments/{shipment_id}/loggers", response_model=LoggerOut, status_code=201)
def attach_logger(shipment_id: str, body: LoggerIn, services: ServicesDep, who: QA) -> LoggerOut:
    try:
        row = shipments.attach_logger(services.db, shipment_id, body.device_id, actor=who.name,
                                      now_ms=services.clock.now_ms(), start_ts=_ts(body.start, "start"),
                                      end_ts=_ts(body.end, "end"), uncalibrated=_policy(services))
    except ValueError as exc:
        raise ApiError(400, "bad_window", str(exc)) from None
    return LoggerOut(device_id=row["device_id"], start=to_iso(row["start_ts"]), end=to_iso(row["end_ts"]),
                     attached_at=to_iso(row["attached_at"]) or "", attached_by=row["attached_by"])


@router.delete("/shipments/{shipment_id}/loggers/{device_id}", status_code=204)
def detach_logger(shipment_id: str, device_id: str, services: ServicesDep, who: QA,
                  reason: Annotated[str, Query(min_length=1, max_length=1000)]) -> Response:
    shipments.detach_logger(services.db, shipment_id, device_id, actor=who.name, reason=reason,
                            now_ms=services.clock.now_ms())
    return Response(status_code=204)


@router.post("/shipments/{shipment_id}/transitions", response_model=ShipmentOut)
def transition(shipment_id: str, body: TransitionIn, services: ServicesDep, who: QA) -> ShipmentOut:
    now = services.clock.now_ms()
    at = _ts(body.at, "at")
    if at is not None and at > now + 5 * 60_000:
        raise ApiError(400, "bad_time", "a transition cannot be dated in the future")
    try:
        sh = shipments.transition(services.db, services.readings, shipment_id, body.to, actor=who.name,
                                  now_ms=now, at_ts=at, reason=body.reason, emit=_emit(services))
    except ValueError as exc:
        raise ApiError(400, "bad_time", str(exc)) from None
    return _out(services, sh)


@router.get("/shipments/{shipment_id}/evaluation", summary="Excursions, statistics and MKT per logger")
def evaluation(shipment_id: str, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    return shipments.evaluate(services.db, services.readings, shipment_id).to_dict()


@router.get("/shipments/{shipment_id}/checklist", summary="Release checklist: each item pass/fail with a link")
def checklist(shipment_id: str, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    return release_checklist.build(services.db, services.readings, shipment_id, services.clock.now_ms(),
                                   uncalibrated_policy=_policy(services))


@router.get("/shipments/{shipment_id}/decisions", response_model=list[DecisionOut])
def list_decisions(shipment_id: str, services: ServicesDep, _: Viewer) -> list[DecisionOut]:
    store.get_shipment(services.db, shipment_id)
    return [DecisionOut.from_row(d) for d in store.decisions(services.db, shipment_id)]


@router.post("/shipments/{shipment_id}/decisions", response_model=DecisionOut, status_code=201,
             summary="Sign a decision (re-enter your password); a later one supersedes with a reason")
def sign(shipment_id: str, body: DecisionIn, services: ServicesDep, who: QA) -> DecisionOut:
    now = services.clock.now_ms()
    cl = release_checklist.build(services.db, services.readings, shipment_id, now,
                                 uncalibrated_policy=_policy(services))
    failed = [i["title"] for i in cl["items"] if i["status"] == release_checklist.FAIL]
    if body.meaning == "released" and failed and not body.override_failed_checks:
        raise ApiError(409, "checklist_failed",
                       f"release checklist items fail: {'; '.join(failed)}. Review them, or release stating that"
                       " you override them (override_failed_checks) with a reason that justifies it")
    try:
        d = signature.sign_decision(services.db, services.readings, shipment_id, principal=who,
                                    password=body.password, meaning=body.meaning, reason=body.reason,
                                    supersede_reason=body.supersede_reason, now_ms=now,
                                    emit=_emit(services),
                                    checklist={"summary": release_checklist.summary_line(cl), "failed": failed,
                                               "override_failed_checks": bool(failed and body.override_failed_checks
                                                                              and body.meaning == "released")})
    except ValueError as exc:
        raise ApiError(400, "bad_decision", str(exc)) from None
    return DecisionOut.from_row(d)


@router.get("/shipments/{shipment_id}/report.html", response_class=HTMLResponse)
def report_html(shipment_id: str, services: ServicesDep, _: Viewer) -> HTMLResponse:
    data = report.build(services.db, services.readings, shipment_id, services.clock.now_ms(),
                        uncalibrated_policy=_policy(services))
    return HTMLResponse(report.render_html(data))


@router.get("/shipments/{shipment_id}/report.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def report_pdf(shipment_id: str, services: ServicesDep, _: Viewer) -> Response:
    data = report.build(services.db, services.readings, shipment_id, services.clock.now_ms(),
                        uncalibrated_policy=_policy(services))
    return Response(report.render_pdf(data), media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{data["shipment"]["reference"]}.pdf"'})


@router.get("/shipments/{shipment_id}/readings.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def readings_csv(shipment_id: str, services: ServicesDep, _: Viewer) -> StreamingResponse:
    store.get_shipment(services.db, shipment_id)
    return StreamingResponse(report.csv_rows(services.db, services.readings, shipment_id),
                             media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{shipment_id}.csv"'})


@router.get("/lots/{product}/{lot}/budget", summary="Remaining stability budget of a product lot")
def lot_budget(product: str, lot: str, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    bands = shipments.lot_budget(services.db, services.readings, product, lot)
    if not bands and not store.lot_shipments(services.db, product, lot):
        raise ApiError(404, "unknown_lot", f"no shipment of product {product!r} lot {lot!r}")
    return {"product": product, "lot": lot, "bands": bands}

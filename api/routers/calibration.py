"""Calibration: sessions, results, certificates, device calibration state, drift, reverse traceability."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator

from coldtrace.adapters.certificate import render_certificate
from coldtrace.core.clock import parse_time
from coldtrace.core.payload import DEVICE_ID_RE
from coldtrace.services import calibration_records as records
from coldtrace.services import certificate_issue
from coldtrace.services.audit import record_audit
from coldtrace.services.calibration_service import (
    CalibrationService,
    SessionSpec,
    calibration_status,
    for_services,
    status_of,
)
from coldtrace.wiring import Services

from ..deps import QA, ServicesDep, Viewer
from ..errors import ApiError

router = APIRouter(prefix="/api/v1/calibration", tags=["calibration"])

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def calibration_service(services: Services) -> CalibrationService:
    return for_services(services)


MAX_MS = 4_102_444_800_000  # 2100-01-01: anything later is a typo, and must not overflow SQLite


def _time(v: str | int | None, name: str) -> int | None:
    if v is None:
        return None
    try:
        ms = parse_time(v)
    except (ValueError, TypeError, OverflowError):
        ms = None
    if ms is None or not 0 <= ms <= MAX_MS:
        raise ApiError(400, "bad_time", f"{name} must be RFC 3339 with an offset or epoch milliseconds"
                                        " between 1970 and 2100")
    return ms


def _check_device_id(device_id: str) -> None:
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise ApiError(400, "bad_device_id", "device id must match [A-Za-z0-9._-]{1,64}")


class DutIn(BaseModel):
    device_id: str = Field(pattern=DEVICE_ID_RE.pattern)
    resolution_c: float | None = Field(None, gt=0, le=10)


class SessionIn(BaseModel):
    reference_id: str = Field(pattern=DEVICE_ID_RE.pattern)
    duts: list[DutIn] = Field(min_length=1, max_length=200)
    set_points: list[float] = Field(min_length=1, max_length=20)
    mpe_c: float = Field(gt=0, le=20)
    rule: Literal["guarded", "simple"] = "guarded"
    kind: Literal["as_found", "as_left"] = "as_found"
    capture_min: float = Field(10.0, ge=1, le=240)
    tolerance_c: float = Field(1.0, gt=0, le=10)
    u_medium_c: float = Field(0.0, ge=0, le=5)
    u_ref_c: float | None = Field(None, ge=0, le=5, description="U_ref (k=2); default: the reference's state")
    start: str | int | None = Field(None, description="follow readings from here (default: now)")
    start_ms: int | None = Field(None, ge=0, le=MAX_MS)
    notes: str | None = Field(None, max_length=2000)
    customer: str | None = Field(None, max_length=200, description="default: the lab setting lab.customer")
    location: str | None = Field(None, max_length=200, description="default: the lab setting lab.location")
    ambient_c: float | None = Field(None, ge=-40, le=60, description="ambient temperature during calibration")
    ambient_rh_pct: float | None = Field(None, ge=0, le=100, description="ambient relative humidity")

    @field_validator("set_points")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        if any(not -200 <= x <= 100 for x in v):
            raise ValueError("set points must lie in [-200, 100] °C")
        return v


class SessionConditionsIn(BaseModel):
    """What a certificate states about the session besides its results (ISO/IEC 17025 7.8.2.1, 7.8.4.1)."""

    customer: str | None = Field(None, max_length=200)
    location: str | None = Field(None, max_length=200)
    ambient_c: float | None = Field(None, ge=-40, le=60)
    ambient_rh_pct: float | None = Field(None, ge=0, le=100)


class SignIn(BaseModel):
    password: str = Field(min_length=1, max_length=1000)


class IssueIn(BaseModel):
    password: str = Field(min_length=1, max_length=1000)
    changes: str | None = Field(None, max_length=2000, description="a re-issue: what changed and why")


class DeviceCalibrationIn(BaseModel):
    last_calibrated_at: str | int | None = None
    interval_days: float | None = Field(None, gt=0, le=3650)
    certificate_ref: str | None = Field(None, max_length=200)
    expanded_uncertainty_c: float | None = Field(None, ge=0, le=5)
    resolution_c: float | None = Field(None, gt=0, le=10)
    traceability: str | None = Field(None, max_length=2000)
    status: Literal["valid", "failed", "indeterminate"] | None = None
    make: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=100)
    serial_number: str | None = Field(None, max_length=100)
    calibrated_by: str | None = Field(None, max_length=300, description="laboratory that issued its certificate")


class HistoryIn(BaseModel):
    set_point_c: float = Field(ge=-200, le=100)
    ts: str | int
    error_c: float = Field(ge=-50, le=50)
    expanded_u_c: float = Field(ge=0, le=5)
    mpe_c: float = Field(gt=0, le=20)
    certificate_ref: str = Field(min_length=1, max_length=200)


# ---------------------------------------------------------------- sessions
@router.post("/sessions", status_code=201, summary="Start a calibration session (followed on live readings)")
def create_session(body: SessionIn, services: ServicesDep, p: QA) -> dict[str, Any]:
    start = body.start_ms if body.start_ms is not None else _time(body.start, "start")
    spec = SessionSpec(body.reference_id, {d.device_id: d.resolution_c for d in body.duts},
                       tuple(body.set_points), body.mpe_c, body.rule, body.kind, int(body.capture_min * 60_000),
                       body.tolerance_c, body.u_medium_c, body.u_ref_c, start, p.name, body.notes)
    if len(spec.duts) != len(body.duts):
        raise ApiError(400, "duplicate_dut", "a device appears twice among the devices under test")
    lab = services.settings.lab
    try:
        with services.db.write() as c:  # the session and its audit record in one transaction
            sid = calibration_service(services).create_session(spec)
            records.set_session_conditions(c, sid, {
                "customer": body.customer or lab.customer, "location": body.location or lab.location,
                "ambient_c": body.ambient_c, "ambient_rh_pct": body.ambient_rh_pct})
            record_audit(c, actor=p.name, action="calibration.session.create", entity="calibration_session",
                         entity_id=sid, new=body.model_dump(), ts=services.clock.now_ms())
    except ValueError as exc:
        raise ApiError(400, "bad_session", str(exc)) from None
    return records.session_detail(services.db, sid)


@router.get("/sessions", summary="Calibration sessions, newest first")
def list_sessions(services: ServicesDep, _: Viewer, reference_id: str | None = None, device_id: str | None = None,
                  state: Literal["running", "completed", "cancelled"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> list[dict[str, Any]]:
    return records.list_sessions(services.db, reference_id=reference_id, device_id=device_id, state=state,
                                 limit=limit, offset=offset)


@router.get("/sessions/{session_id}", summary="A session with its stable windows and results")
def get_session(session_id: str, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    return records.session_detail(services.db, session_id)


@router.post("/sessions/{session_id}/evaluate", summary="Advance the session on the readings stored so far")
def evaluate_session(session_id: str, services: ServicesDep, _: QA) -> dict[str, Any]:
    records.session_row(services.db, session_id)
    calibration_service(services).advance(session_id, services.clock.now_ms())
    return records.session_detail(services.db, session_id)


@router.post("/sessions/{session_id}/cancel", summary="Stop following a running session")
def cancel_session(session_id: str, services: ServicesDep, p: QA) -> dict[str, Any]:
    calibration_service(services).cancel_session(session_id)
    with services.db.write() as c:
        record_audit(c, actor=p.name, action="calibration.session.cancel", entity="calibration_session",
                     entity_id=session_id, ts=services.clock.now_ms())
    return records.session_detail(services.db, session_id)


@router.delete("/sessions/{session_id}", status_code=204, summary="Delete a session that captured nothing")
def delete_session(session_id: str, services: ServicesDep, p: QA) -> Response:
    with services.db.write() as c:
        records.delete_session(c, session_id)
        record_audit(c, actor=p.name, action="calibration.session.delete", entity="calibration_session",
                     entity_id=session_id, ts=services.clock.now_ms())
    return Response(status_code=204)


@router.get("/sessions/{session_id}/results", summary="Per device and set point: n, e, s, u, U, decision")
def session_results(session_id: str, services: ServicesDep, _: Viewer,
                    device_id: str | None = None) -> list[dict[str, Any]]:
    records.session_row(services.db, session_id)
    return records.session_results(services.db, session_id, device_id)


@router.patch("/sessions/{session_id}", summary="Customer, location and environmental conditions of a session")
def update_conditions(session_id: str, body: SessionConditionsIn, services: ServicesDep, p: QA) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    with services.db.write() as c:
        old = records.set_session_conditions(c, session_id, fields)
        record_audit(c, actor=p.name, action="calibration.session.update", entity="calibration_session",
                     entity_id=session_id, old=old, new=fields,
                     ts=services.clock.now_ms())
    return records.session_detail(services.db, session_id)


@router.post("/sessions/{session_id}/signatures", status_code=201,
             summary="Sign a completed session as performed (re-enter your password)")
def sign_performed(session_id: str, body: SignIn, services: ServicesDep, p: QA) -> dict[str, Any]:
    d = certificate_issue.sign_performed(services.db, session_id, principal=p, password=body.password,
                                         now_ms=services.clock.now_ms())
    return _signature_out(d)


def _signature_out(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {k: d[k] for k in ("id", "role", "meaning", "signer_username", "printed_name", "signed_at",
                              "record_hash", "signature_hash")}


@router.get("/sessions/{session_id}/certificates/{device_id}/revisions",
            summary="A device's certificate: number, issued revisions, signatures")
def certificate_state(session_id: str, device_id: str, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    draft = records.certificate_data(services.db, session_id, device_id,  # 404 for a device not under test
                                     lab=services.settings.lab.model_dump())
    return {"number": records.certificate_ref(session_id, device_id), "session_id": session_id,
            "device_id": device_id,
            "performed": _signature_out(certificate_issue.performed_signature(services.db, session_id)),
            "revisions": certificate_issue.revisions(services.db, session_id, device_id),
            # what the next issue still needs (ISO/IEC 17025 7.8): issuing is refused (409) until it is empty
            "missing": draft.missing()}


@router.post("/sessions/{session_id}/certificates/{device_id}/issue", status_code=201,
             summary="Approve and issue the certificate's next revision (re-enter your password)",
             responses={409: {"description": "`certificate_incomplete`: an element ISO/IEC 17025 7.8 requires is not"
                                             " on record (listed in the message and in `.../revisions` `missing`);"
                                             " `conflict`: not completed or not signed as performed"},
                        403: {"description": "`signature_failed`: wrong password; or the approver performed it"}})
def issue_certificate(session_id: str, device_id: str, body: IssueIn, services: ServicesDep, p: QA
                      ) -> dict[str, Any]:
    try:
        return certificate_issue.issue(services.db, session_id, device_id, principal=p, password=body.password,
                                       now_ms=services.clock.now_ms(), lab=services.settings.lab.model_dump(),
                                       changes=body.changes)
    except ValueError as exc:
        raise ApiError(400, "bad_issue", str(exc)) from None


@router.get("/sessions/{session_id}/certificates/{device_id}.pdf", response_class=Response,
            summary="Calibration certificate of one device under test (PDF): the latest issued revision, a given"
                    " one (?revision=), or a draft when none is issued")
def certificate_pdf(session_id: str, device_id: str, services: ServicesDep, _: Viewer,
                    revision: Annotated[int | None, Query(ge=1, le=10_000)] = None) -> Response:
    data = certificate_issue.issued_data(services.db, session_id, device_id, revision)
    if data is None:
        data = records.certificate_data(services.db, session_id, device_id, lab=services.settings.lab.model_dump())
    name = _SAFE_NAME.sub("_", data.certificate_id + (f"-rev{data.revision}" if data.issued else "-draft"))
    return Response(render_certificate(data), media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'})


# ---------------------------------------------------------------- devices
@router.get("/devices", summary="Every device's calibration state in one list (fleet and calibration pages)")
def list_device_states(services: ServicesDep, _: Viewer,
                       status: Annotated[str | None, Query(description="valid | due_soon | expired | failed |"
                                                           " unknown")] = None,
                       drift_predicted: bool | None = None,
                       limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                       offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
    """The devices known to ColdTrace (registered, heard from, or with a calibration record), each with the
    status of ``GET /devices/{id}``; ``summary`` reads e.g. "valid, drift predicted 2027-03-14"."""
    now = services.clock.now_ms()
    out = []
    for dev, row in records.known_devices(services.db):
        st = status_of(row, dev, now)
        if status and st["status"] != status:
            continue
        if drift_predicted is not None and (st.get("drift_predicted_ms") is not None) != drift_predicted:
            continue
        out.append(st)
    return out[offset:offset + limit]


@router.get("/devices/{device_id}", summary="A device's calibration state and whether it may be used")
def device_state(device_id: str, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    now = services.clock.now_ms()
    return {"device_id": device_id, "state": records.device_calibration(services.db, device_id),
            "status": calibration_status(services.db, device_id, now)}


@router.put("/devices/{device_id}", summary="Record a device's calibration state (e.g. an external certificate)")
def set_device_state(device_id: str, body: DeviceCalibrationIn, services: ServicesDep, p: QA) -> dict[str, Any]:
    _check_device_id(device_id)
    fields = body.model_dump(exclude_unset=True)
    if "last_calibrated_at" in fields:
        fields["last_calibrated_at"] = _time(fields["last_calibrated_at"], "last_calibrated_at")
        fields.setdefault("status", "valid")
        fields["due_alerted"] = None
    now = services.clock.now_ms()
    with services.db.write() as c:
        old = records.device_calibration(c, device_id)
        records.upsert_device_calibration(c, device_id, now, **fields)
        record_audit(c, actor=p.name, action="calibration.device.update", entity="device", entity_id=device_id,
                     old=old, new=fields, ts=now)
    calibration_service(services).judge_drift(now, [device_id])  # the due date may have moved
    return device_state(device_id, services, p)


@router.get("/devices/{device_id}/drift", summary="Long-term drift per set point from as-found history")
def device_drift(device_id: str, services: ServicesDep, _: Viewer) -> dict[str, Any]:
    svc = calibration_service(services)
    return {"device_id": device_id,
            "set_points": records.device_drift(services.db, device_id,
                                               max_rate_c_per_year=svc.max_drift_c_per_year)}


@router.post("/devices/{device_id}/history", status_code=201,
             summary="Import a past as-found result (an external certificate) into the drift history")
def add_history(device_id: str, body: HistoryIn, services: ServicesDep, p: QA) -> dict[str, Any]:
    _check_device_id(device_id)
    ts = _time(body.ts, "ts")
    now = services.clock.now_ms()
    with services.db.write() as c:
        records.import_history(c, device_id, set_point_c=body.set_point_c, ts=ts, error_c=body.error_c,
                               expanded_u_c=body.expanded_u_c, mpe_c=body.mpe_c, certificate_ref=body.certificate_ref)
        record_audit(c, actor=p.name, action="calibration.history.import", entity="device", entity_id=device_id,
                     new=body.model_dump(), ts=now)
    calibration_service(services).judge_drift(now, [device_id])  # new history: calibration.drift_predicted?
    return device_drift(device_id, services, p)


@router.get("/references/{reference_id}/devices",
            summary="Reverse traceability: devices calibrated against this reference")
def calibrated_against(reference_id: str, services: ServicesDep, _: Viewer) -> list[dict[str, Any]]:
    return records.devices_calibrated_against(services.db, reference_id)

"""Profiles as data: list, read (with their change history), create or change, and assign to devices.

Every change of a profile is kept in ``profile_changes`` and every assignment in
``device_profile_assignments`` (who and when), besides the audit trail. Built-in profiles cannot be changed:
copy one under a new id instead. A change takes effect on the next readings: the pipeline forgets its cached
profiles and engines and re-evaluates the series from the store.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from coldtrace.core.excursions import MKT_LIMIT_ID, SeriesEngine
from coldtrace.core.model import MINUTE, Profile
from coldtrace.services.audit import record_audit
from coldtrace.store import devices as device_store

from ..deps import Admin, ServicesDep, Viewer
from ..errors import ApiError

router = APIRouter(tags=["profiles"])

PROFILE_ID = r"^[A-Za-z0-9._-]{1,64}$"


class LimitIn(BaseModel):
    id: Annotated[str, Field(pattern=PROFILE_ID)]
    direction: Literal["above", "below"]
    threshold_c: Annotated[float, Field(ge=-200, le=100)]
    severity: Literal["info", "warning", "alarm", "critical"] = "alarm"
    delay_ms: Annotated[int, Field(ge=0)] = 0
    cumulative_ms: Annotated[int | None, Field(ge=0)] = None
    hysteresis_c: Annotated[float, Field(ge=0, le=10)] = 0.2


class ProfileIn(BaseModel):
    id: Annotated[str, Field(pattern=PROFILE_ID)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    limits: Annotated[list[LimitIn], Field(max_length=32)]
    mkt_max_c: Annotated[float | None, Field(ge=-200, le=100)] = None
    max_gap_ms: Annotated[int, Field(ge=MINUTE, le=7 * 24 * 60 * MINUTE)] = 30 * MINUTE
    offline_after_ms: Annotated[int, Field(ge=MINUTE, le=30 * 24 * 60 * MINUTE)] = 30 * MINUTE
    activation_energy_kj: Annotated[float, Field(gt=0, le=1000)] = 83.144
    self_clearing: Annotated[list[Literal["info", "warning"]], Field(
        max_length=2, description="severities whose alerts resolve themselves once cleared (alarm and critical "
                                  "always need a person's acknowledgement)")] = ["info", "warning"]


class ProfileOut(BaseModel):
    id: str
    name: str
    builtin: bool
    limits: list[dict]
    mkt_max_c: float | None
    max_gap_ms: int
    offline_after_ms: int
    activation_energy_kj: float
    self_clearing: list[str] = ["info", "warning"]
    updated_at: int
    updated_by: str | None

    @classmethod
    def from_row(cls, r) -> ProfileOut:
        body = json.loads(r["body"])
        return cls(id=r["id"], name=r["name"], builtin=bool(r["builtin"]), limits=body.get("limits", []),
                   mkt_max_c=body.get("mkt_max_c"), max_gap_ms=body.get("max_gap_ms", 30 * MINUTE),
                   offline_after_ms=body.get("offline_after_ms", 30 * MINUTE),
                   activation_energy_kj=body.get("activation_energy_kj", 83.144),
                   self_clearing=body.get("self_clearing", ["info", "warning"]), updated_at=r["updated_at"],
                   updated_by=r["updated_by"])


class ProfileChangeOut(BaseModel):
    profile_id: str
    body: dict
    changed_at: int
    changed_by: str


class ProfileDetailOut(ProfileOut):
    history: list[ProfileChangeOut] = []


class AssignIn(BaseModel):
    profile_id: Annotated[str, Field(pattern=PROFILE_ID)]


class AssignmentOut(BaseModel):
    device_id: str
    profile_id: str
    previous_profile_id: str | None
    assigned_at: int
    assigned_by: str


class DeviceProfileOut(BaseModel):
    device_id: str
    profile_id: str | None
    effective_profile_id: str
    assignments: list[AssignmentOut]


def _profile_row(services, profile_id: str):
    row = device_store.get_profile(services.db.conn(), profile_id)
    if row is None:
        raise ApiError(404, "unknown_profile", f"no profile {profile_id!r}")
    return row


@router.get("/api/v1/profiles", response_model=list[ProfileOut], summary="All profiles")
def list_profiles(services: ServicesDep, _: Viewer) -> list[ProfileOut]:
    return [ProfileOut.from_row(r) for r in device_store.list_profiles(services.db.conn())]


@router.get("/api/v1/profiles/{profile_id}", response_model=ProfileDetailOut,
            summary="A profile with every recorded change (who, when)")
def get_profile(profile_id: str, services: ServicesDep, _: Viewer) -> ProfileDetailOut:
    out = ProfileOut.from_row(_profile_row(services, profile_id))
    hist = [ProfileChangeOut(profile_id=r["profile_id"], body=json.loads(r["body"]), changed_at=r["changed_at"],
                             changed_by=r["changed_by"])
            for r in device_store.profile_changes(services.db.conn(), profile_id)]
    return ProfileDetailOut(**out.model_dump(), history=hist)


@router.post("/api/v1/profiles", response_model=ProfileOut, status_code=201,
             summary="Create a profile, or change a custom one (recorded with who and when)")
def save_profile(body: ProfileIn, services: ServicesDep, principal: Admin) -> ProfileOut:
    ids = [lim.id for lim in body.limits]
    if len(set(ids)) != len(ids):
        raise ApiError(400, "duplicate_limit", "limit ids must be unique within a profile")
    if MKT_LIMIT_ID in ids:
        raise ApiError(400, "reserved_limit", f"limit id {MKT_LIMIT_ID!r} is reserved for the MKT limit")
    profile = Profile.from_dict(body.model_dump())
    try:
        SeriesEngine("validate", profile)
    except ValueError as exc:
        raise ApiError(400, "bad_profile", str(exc)) from exc
    db, now = services.db, services.clock.now_ms()
    doc = json.dumps(profile.to_dict())
    with db.write() as c:
        old = device_store.get_profile(c, profile.id)
        if old is not None and old["builtin"]:
            raise ApiError(409, "builtin_profile", f"built-in profile {profile.id!r} cannot be changed;"
                                                   " save a copy under a new id")
        device_store.save_profile(c, profile.id, profile.name, doc, now, principal.name)
        record_audit(c, actor=principal.name, action="profile.create" if old is None else "profile.update",
                     entity="profile", entity_id=profile.id,
                     old=None if old is None else json.loads(old["body"]), new=profile.to_dict(), ts=now)
    services.pipeline.invalidate_profile(profile.id)
    return ProfileOut.from_row(_profile_row(services, profile.id))


def _device_profile_id(services, device_id: str) -> str | None:
    known, profile_id = device_store.device_profile_id(services.db.conn(), device_id)
    if not known:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    return profile_id


def _device_profile(services, device_id: str) -> DeviceProfileOut:
    profile_id = _device_profile_id(services, device_id)
    assigns = [AssignmentOut(device_id=r["device_id"], profile_id=r["profile_id"],
                             previous_profile_id=r["previous_profile_id"], assigned_at=r["assigned_at"],
                             assigned_by=r["assigned_by"])
               for r in device_store.profile_assignments(services.db.conn(), device_id)]
    return DeviceProfileOut(device_id=device_id, profile_id=profile_id,
                            effective_profile_id=services.pipeline.profile(profile_id).id, assignments=assigns)


@router.get("/api/v1/devices/{device_id}/profile", response_model=DeviceProfileOut,
            summary="The profile a device is judged by, and its assignment history")
def get_device_profile(device_id: str, services: ServicesDep, _: Viewer) -> DeviceProfileOut:
    return _device_profile(services, device_id)


@router.put("/api/v1/devices/{device_id}/profile", response_model=DeviceProfileOut,
            summary="Assign a profile to a device (recorded with who and when)")
def assign_profile(device_id: str, body: AssignIn, services: ServicesDep, principal: Admin) -> DeviceProfileOut:
    _profile_row(services, body.profile_id)
    db, now = services.db, services.clock.now_ms()
    with db.write() as c:
        known, previous = device_store.device_profile_id(c, device_id)
        if not known:
            raise ApiError(404, "unknown_device", f"no device {device_id!r}")
        device_store.assign_profile(c, device_id, body.profile_id, previous, now, principal.name)
        record_audit(c, actor=principal.name, action="device.profile", entity="device", entity_id=device_id,
                     old={"profile_id": previous}, new={"profile_id": body.profile_id}, ts=now)
    services.pipeline.invalidate_profile()
    return _device_profile(services, device_id)

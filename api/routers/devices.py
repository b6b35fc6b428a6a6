"""Devices (loggers, references) and their readings."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from coldtrace.core.clock import to_iso
from coldtrace.core.payload import DEVICE_ID_RE
from coldtrace.services.audit import record_audit
from coldtrace.services.device_roles import ROLES, session_roles, set_role
from coldtrace.store import devices as device_store
from coldtrace.store.rollup import chart_grid

from ..deps import Admin, LimitDep, RangeDep, ServicesDep, Viewer
from ..errors import ApiError
from ..schemas import BucketOut, ChartOut, DeviceOut, ReadingOut, ReadingPage

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


def open_conflicts(services, device_ids: list[str] | None = None) -> dict[str, int]:
    """Open conflicting duplicates per device (the partial index quarantine_open_conflicts)."""
    return device_store.open_conflicts(services.db.conn(), device_ids)


def _out(row, conflicts: dict[str, int], session_role: str | None = None) -> DeviceOut:
    d = DeviceOut.from_row(row, session_role)
    d.open_conflicts = conflicts.get(d.id, 0)
    d.conflicting_data = d.open_conflicts > 0
    return d


def _device_row(services, device_id: str):
    row = device_store.get_device(services.db.conn(), device_id)
    if row is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    return row


@router.get("", response_model=list[DeviceOut], summary="All devices with their last reading")
def list_devices(services: ServicesDep, _: Viewer, kind: str | None = None,
                 role: Annotated[str | None, Query(description="shipment_logger | calibration_reference |"
                                                   " device_under_calibration (the effective role)")] = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[DeviceOut]:
    sroles = session_roles(services.db.conn())
    rows = device_store.list_devices(services.db.conn(), kind=kind, role=role, limit=limit, offset=offset)
    conflicts = open_conflicts(services) if rows else {}
    return [_out(r, conflicts, sroles.get(r["id"])) for r in rows]


class DeviceIn(BaseModel):
    id: str = Field(pattern=DEVICE_ID_RE.pattern)
    kind: Literal["logger", "reference", "gateway"] = "logger"
    name: str | None = Field(None, max_length=200)
    profile_id: str | None = None
    monitored: bool = True
    role: Literal[ROLES] | None = Field(  # type: ignore[valid-type]
        None, description="shipment_logger | calibration_reference | device_under_calibration; omitted: the"
        " role stays as it is (a new device's follows its kind and any running calibration session)")


class RoleIn(BaseModel):
    role: Literal[ROLES] | None = Field(  # type: ignore[valid-type]
        description="shipment_logger | calibration_reference | device_under_calibration; null: follow the"
        " device's kind and any running calibration session")
    reason: str | None = Field(None, max_length=500)


@router.post("", response_model=DeviceOut, status_code=201, summary="Register a device")
def register_device(body: DeviceIn, services: ServicesDep, principal: Admin) -> DeviceOut:
    db = services.db
    if body.profile_id and device_store.profile_body(db.conn(), body.profile_id) is None:
        raise ApiError(400, "unknown_profile", f"no profile {body.profile_id!r}")
    now = services.clock.now_ms()
    with db.write() as c:
        device_store.register_device(c, body.id, body.kind, body.name, body.profile_id, body.monitored, now)
        record_audit(c, actor=principal.name, action="device.register", entity="device", entity_id=body.id,
                     new=body.model_dump(), ts=now)
        if body.role is not None:
            set_role(c, body.id, body.role, actor=principal.name, now=now)
    services.pipeline.invalidate_profile()
    return get_device(body.id, services, principal)


@router.get("/{device_id}", response_model=DeviceOut)
def get_device(device_id: str, services: ServicesDep, _: Viewer) -> DeviceOut:
    """``conflicting_data``: a reading of this device conflicts with a stored one and QA has not resolved it
    yet; its excursion evaluation uses the stored (first) values and is flagged until then (RULES.md)."""
    return _out(_device_row(services, device_id), open_conflicts(services, [device_id]),
                session_roles(services.db.conn()).get(device_id))


@router.put("/{device_id}/role", response_model=DeviceOut,
            summary="Set what a device is for: shipment logger, calibration reference or device under calibration")
def put_role(device_id: str, body: RoleIn, services: ServicesDep, principal: Admin) -> DeviceOut:
    """Devices on a calibration bench (calibration reference, device under calibration) are judged by the
    calibration rules only: no excursion and no rate-of-change alert from their ramps. A device that leaves
    the bench is judged by its profile from its next reading on (its bench readings never are)."""
    _device_row(services, device_id)
    now = services.clock.now_ms()
    with services.db.write() as c:
        set_role(c, device_id, body.role, actor=principal.name, now=now, reason=body.reason)
    services.pipeline.invalidate_profile()
    return get_device(device_id, services, principal)


@router.get("/{device_id}/readings", response_model=ReadingPage,
            summary="Readings in [from, to), oldest first; page with next_from")
def readings(device_id: str, services: ServicesDep, _: Viewer, rng: RangeDep, limit: LimitDep) -> ReadingPage:
    _device_row(services, device_id)
    rows = services.readings.query(device_id, rng.start, rng.end, limit=limit + 1)
    nxt = None
    if len(rows) > limit:
        nxt = to_iso(rows[limit].ts)
        rows = rows[:limit]
    return ReadingPage(device_id=device_id, next_from=nxt,
                       items=[ReadingOut(ts=to_iso(r.ts) or "", ts_ms=r.ts, temp_c=r.temp_c, seq=r.seq) for r in rows])


@router.get("/{device_id}/chart", response_model=ChartOut,
            summary="Min/max/mean per interval, at most `points` buckets (for charts)")
def chart(device_id: str, services: ServicesDep, _: Viewer, rng: RangeDep,
          points: Annotated[int, Query(ge=10, le=5000)] = 1000) -> ChartOut:
    _device_row(services, device_id)
    start, interval = chart_grid(rng.start, rng.end, points)  # long ranges: 10-minute aligned (fast rollup)
    buckets = services.readings.downsample(device_id, start, rng.end, interval)
    return ChartOut(device_id=device_id, interval_ms=interval, buckets=[
        BucketOut(ts=to_iso(b.ts) or "", ts_ms=b.ts, min_c=b.min_c, max_c=b.max_c, mean_c=b.mean_c, count=b.count)
        for b in buckets])

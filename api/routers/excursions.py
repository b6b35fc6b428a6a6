"""Excursions with their numbers: start, end, duration, peak, degree-minutes, alarm time, limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coldtrace.store import excursions as excursion_store

from ..deps import RangeDep, ServicesDep, Viewer
from ..errors import ApiError
from ..schemas import ExcursionOut

router = APIRouter(prefix="/api/v1/excursions", tags=["excursions"])


@router.get("", response_model=list[ExcursionOut], summary="Excursions overlapping [from, to)")
def list_excursions(services: ServicesDep, _: Viewer, rng: RangeDep, device_id: str | None = None,
                    shipment_id: str | None = None, limit_id: str | None = None,
                    open: Annotated[bool | None, Query(description="only open (true) or closed (false)")] = None,
                    alarmed: bool | None = None,
                    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
                    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[ExcursionOut]:
    rows = excursion_store.list_excursions(
        services.db.conn(), start=rng.start, end=rng.end, device_id=device_id or None,
        shipment_id=shipment_id or None, limit_id=limit_id or None, open=open, alarmed=alarmed, limit=limit,
        offset=offset)
    return [ExcursionOut.from_row(r) for r in rows]


@router.get("/{excursion_id}", response_model=ExcursionOut)
def get_excursion(excursion_id: str, services: ServicesDep, _: Viewer) -> ExcursionOut:
    row = excursion_store.get_excursion(services.db.conn(), excursion_id)
    if row is None:
        raise ApiError(404, "unknown_excursion", f"no excursion {excursion_id!r}")
    return ExcursionOut.from_row(row)

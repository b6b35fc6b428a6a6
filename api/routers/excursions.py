"""Excursions with their numbers: start, end, duration, peak, degree-minutes, alarm time, limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coldtrace.store.db import add_equal_filters

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
    where = ["superseded = 0", "start_ts < ?", "(end_ts IS NULL OR end_ts >= ?)"]
    params: list = [rng.end, rng.start]
    add_equal_filters(where, params, ((col, val or None) for col, val in (
        ("device_id", device_id), ("shipment_id", shipment_id), ("limit_id", limit_id))))
    if open is not None:
        where.append("end_ts IS NULL" if open else "end_ts IS NOT NULL")
    if alarmed is not None:
        where.append("alarm_ts IS NOT NULL" if alarmed else "alarm_ts IS NULL")
    sql = f"SELECT * FROM excursions WHERE {' AND '.join(where)} ORDER BY start_ts DESC, limit_id LIMIT ? OFFSET ?"
    params += [limit, offset]
    return [ExcursionOut.from_row(r) for r in services.db.query(sql, tuple(params))]


@router.get("/{excursion_id}", response_model=ExcursionOut)
def get_excursion(excursion_id: str, services: ServicesDep, _: Viewer) -> ExcursionOut:
    row = services.db.query_one("SELECT * FROM excursions WHERE id = ?", (excursion_id,))
    if row is None:
        raise ApiError(404, "unknown_excursion", f"no excursion {excursion_id!r}")
    return ExcursionOut.from_row(row)

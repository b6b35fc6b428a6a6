"""Per-device summary over any time range: min/max/mean/MKT, covered time, time in range, gaps."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from coldtrace.core.clock import to_iso
from coldtrace.core.stats import summarise
from coldtrace.store import devices as device_store

from ..deps import RangeDep, ServicesDep, Viewer
from ..errors import ApiError

router = APIRouter(tags=["devices"])


class GapOut(BaseModel):
    start: str
    end: str
    duration_min: float


class SummaryOut(BaseModel):
    device_id: str
    profile_id: str
    start: str
    end: str
    count: int
    min_c: float | None
    max_c: float | None
    mean_c: float | None
    mkt_c: float | None
    covered_min: float
    in_range_min: float
    in_range_pct: float | None
    beyond_min: dict[str, float]
    gaps: list[GapOut]
    gap_min: float


def _min(ms: int) -> float:
    return round(ms / 60_000, 3)


@router.get("/api/v1/devices/{device_id}/summary", response_model=SummaryOut,
            summary="min/max/mean/MKT, time in range and data gaps of a device over [from, to)")
def device_summary(device_id: str, services: ServicesDep, _: Viewer, rng: RangeDep) -> SummaryOut:
    known, profile_id = device_store.device_profile_id(services.db.conn(), device_id)
    if not known:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    profile = services.pipeline.profile(profile_id)
    end = min(rng.end, services.clock.now_ms())  # the future is not a gap
    start = min(rng.start, end)
    ts, temps = services.readings.arrays(device_id, start, end)
    before = services.readings.query(device_id, None, start, limit=1, descending=True)
    prev = (before[0].ts, before[0].temp_c) if before else None
    s = summarise(ts, temps, profile, start=start, end=end, prev=prev)
    return SummaryOut(
        device_id=device_id, profile_id=profile.id, start=to_iso(start) or "", end=to_iso(end) or "",
        count=s.count, min_c=s.min_c, max_c=s.max_c, mean_c=s.mean_c, mkt_c=s.mkt_c,
        covered_min=_min(s.covered_ms), in_range_min=_min(s.in_range_ms), in_range_pct=s.in_range_pct,
        beyond_min={k: _min(v) for k, v in s.beyond_ms.items()},
        gaps=[GapOut(start=to_iso(a) or "", end=to_iso(b) or "", duration_min=_min(b - a)) for a, b in s.gaps],
        gap_min=_min(s.gap_ms),
    )

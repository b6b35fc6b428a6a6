"""Alarm system health (ISA-18.2 / IEC 62682 performance monitoring): alarm rate per 10 min, floods, standing
and chattering alarms, the most frequent alarms. Read-only, viewer role; the rules are
coldtrace/services/alarm_health.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from coldtrace.core.clock import to_iso
from coldtrace.services import alarm_health

from ..deps import RangeDep, ServicesDep, Viewer

router = APIRouter(prefix="/api/v1/alarm-health", tags=["alarm health"])


@router.get("", summary="Alarm rate per 10 min, floods, standing, chattering and most frequent alarms")
def alarm_system_health(services: ServicesDep, _: Viewer, rng: RangeDep) -> dict[str, Any]:
    """Over [from, to) (default: the last 7 days). An alarm is an alert of severity warning, alarm or critical,
    counted when ColdTrace raised it. Floods: more than 10 alarms within 10 minutes. Standing: an alarm whose
    condition has been active for more than 24 h (as of now). Chattering: 3 or more activations of one source
    (device, alert type, limit or kind) within one minute. Every time is epoch ms; ``from``/``to`` also as
    RFC 3339."""
    now = services.clock.now_ms()
    out = alarm_health.report(services.db, rng.start, rng.end, now)
    return {"from": to_iso(rng.start), "to": to_iso(rng.end), **out}

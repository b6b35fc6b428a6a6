"""Response models (distinct from storage rows). Timestamps are RFC 3339 UTC strings plus epoch ms."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pydantic import BaseModel, Field

from coldtrace.core.clock import to_iso
from coldtrace.services.device_roles import effective_role


class ReadingOut(BaseModel):
    ts: str
    ts_ms: int
    temp_c: float
    seq: int | None = None


class ReadingPage(BaseModel):
    device_id: str
    items: list[ReadingOut]
    next_from: str | None = None  # pass as ?from= to read the next page


class BucketOut(BaseModel):
    ts: str
    ts_ms: int
    min_c: float
    max_c: float
    mean_c: float
    count: int


class ChartOut(BaseModel):
    device_id: str
    interval_ms: int
    buckets: list[BucketOut]


class DeviceOut(BaseModel):
    id: str
    kind: str
    name: str | None
    profile_id: str | None
    monitored: bool
    registered_at: str | None
    last_seen_at: str | None
    last_ts: str | None
    last_temp_c: float | None
    battery_pct: float | None
    seq_gaps: int
    online: bool | None
    role: str | None = Field(None, description="shipment_logger | calibration_reference | device_under_calibration"
                             " (devices on a calibration bench are judged by calibration rules, not by a profile)")
    role_source: str | None = Field(None, description="set (by a person) | session (a running calibration"
                                    " session) | kind (what the device's kind implies)")
    # open conflicting duplicates (quarantine, resolved_at NULL): its evaluation is flagged "conflicting data"
    open_conflicts: int = 0
    conflicting_data: bool = False

    @classmethod
    def from_row(cls, r: sqlite3.Row, session_role: str | None = None) -> DeviceOut:
        role, source = effective_role(r["role"], r["kind"], session_role)
        return cls(id=r["id"], kind=r["kind"], name=r["name"], profile_id=r["profile_id"], role=role,
                   role_source=source,
                   monitored=bool(r["monitored"]), registered_at=to_iso(r["registered_at"]),
                   last_seen_at=to_iso(r["last_seen_at"]), last_ts=to_iso(r["last_ts"]),
                   last_temp_c=r["last_temp_c"], battery_pct=r["battery_pct"], seq_gaps=r["seq_gaps"],
                   online=None if r["online"] is None else bool(r["online"]))


class AlertOut(BaseModel):
    id: str
    type: str
    severity: str
    state: str
    device_id: str | None
    shipment_id: str | None
    excursion_id: str | None
    ts: str
    created_at: str
    data: dict[str, Any]
    assignee: str | None = None  # from the alert's handling (alert_lifecycle), when the query joins it
    # ISA-18.2 (docs/RULES.md "Alert handling"): ``state`` is the workflow, ``condition`` what it reports
    condition: str = "active"  # active | cleared
    cleared_at: str | None = None
    shelved_until: str | None = None
    isa_state: str | None = None  # normal | shelved | unack_active | ack_active | unack_cleared
    episode: dict[str, Any] | None = None  # with group=episode: the staged severities of its episode

    @classmethod
    def from_row(cls, r: sqlite3.Row, now: int | None = None) -> AlertOut:
        from coldtrace.services.alerts import isa_state

        keys = r.keys()
        condition = r["condition"] if "condition" in keys else "active"
        shelved = r["shelved_until"] if "shelved_until" in keys else None
        return cls(id=r["id"], type=r["type"], severity=r["severity"], state=r["state"], device_id=r["device_id"],
                   shipment_id=r["shipment_id"], excursion_id=r["excursion_id"], ts=to_iso(r["ts"]) or "",
                   created_at=to_iso(r["created_at"]) or "", data=json.loads(r["data"]),
                   assignee=r["assignee"] if "assignee" in keys else None, condition=condition,
                   cleared_at=to_iso(r["cleared_at"]) if "cleared_at" in keys else None,
                   shelved_until=to_iso(shelved),
                   isa_state=None if now is None else isa_state(r["state"], condition, shelved, now))


class ExcursionOut(BaseModel):
    id: str
    series_id: str
    device_id: str
    shipment_id: str | None
    limit_id: str
    direction: str
    threshold_c: float
    severity: str
    start: str
    end: str | None
    open: bool
    duration_min: float
    peak_c: float
    degree_minutes: float
    alarm_at: str | None
    alarm_kind: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> ExcursionOut:
        return cls(id=r["id"], series_id=r["series_id"], device_id=r["device_id"], shipment_id=r["shipment_id"],
                   limit_id=r["limit_id"], direction=r["direction"], threshold_c=r["threshold_c"],
                   severity=r["severity"], start=to_iso(r["start_ts"]) or "", end=to_iso(r["end_ts"]),
                   open=r["end_ts"] is None, duration_min=round(r["duration_ms"] / 60_000, 3), peak_c=r["peak_c"],
                   degree_minutes=r["degree_minutes"], alarm_at=to_iso(r["alarm_ts"]), alarm_kind=r["alarm_kind"])


class QuarantineOut(BaseModel):
    id: int
    received_at: str
    source: str
    topic: str | None
    device_id: str | None
    reason: str
    detail: str
    reading_index: int | None
    raw_preview: str | None
    # conflicting_duplicate: the reading's time, both values (the stored one is kept), and QA's resolution
    reading_ts: str | None = None
    stored_temp_c: float | None = None
    stored_seq: int | None = None
    # where the stored value came from: "mqtt", or "http or mqtt" when the device's readings came from several
    stored_source: str | None = None
    received_temp_c: float | None = None
    received_seq: int | None = None
    resolved_at: str | None = None
    resolved_by: str | None = None
    resolution: str | None = None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> QuarantineOut:
        raw = r["raw"]
        preview = None if raw is None else bytes(raw[:512]).decode("utf-8", "replace")
        return cls(id=r["id"], received_at=to_iso(r["received_at"]) or "", source=r["source"], topic=r["topic"],
                   device_id=r["device_id"], reason=r["reason"], detail=r["detail"],
                   reading_index=r["reading_index"], raw_preview=preview, reading_ts=to_iso(r["reading_ts"]),
                   stored_temp_c=r["stored_temp_c"], stored_seq=r["stored_seq"], stored_source=r["stored_source"],
                   received_temp_c=r["received_temp_c"], received_seq=r["received_seq"],
                   resolved_at=to_iso(r["resolved_at"]), resolved_by=r["resolved_by"], resolution=r["resolution"])

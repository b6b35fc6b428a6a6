"""Shipments: legs of a product lot's journey, judged on their loggers' series, released or rejected by QA.

States: planned -> in_transit -> delivered -> under_review -> released | quarantined | rejected. The last
three are set only by a signed decision (``coldtrace.services.signature``); a later decision may supersede one.

A shipment's series (RULES.md) is each logger's readings inside [window start, window end), where a logger's
window is its own attachment window or else the shipment's. Its series id is ``f"{shipment_id}:{device_id}"``.

Why shipment evaluation raises no excursion alerts of its own: the loggers' device series already raise
them in real time (the same readings, the same limits); a second alert per episode would notify twice.
The shipment keeps its own excursions (stored with ``shipment_id``) because QA judges the shipment window,
and the lot's stability budget alerts (``lot.stability_low``, ``lot.stability_exhausted``) are its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coldtrace.core import excursions as exc_engine
from coldtrace.core.errors import Conflict, NotFound
from coldtrace.core.model import BUILTIN_PROFILES, Alert, Excursion, Profile, stable_id
from coldtrace.core.shipment_stats import combine_mkt, coverage, series_stats
from coldtrace.ports import ReadingStore
from coldtrace.services.audit import record_audit
from coldtrace.store import devices as device_store
from coldtrace.store import excursions as excursion_store
from coldtrace.store import shipments as store
from coldtrace.store.db import Database, conn_of
from coldtrace.store.excursions import upsert_excursion

log = logging.getLogger(__name__)

STATES = ("planned", "in_transit", "delivered", "under_review", "released", "quarantined", "rejected")
DECIDED = ("released", "quarantined", "rejected")
TRANSITIONS = {"planned": ("in_transit",), "in_transit": ("delivered",), "delivered": ("under_review",)}
LOW_BUDGET_FRACTION = 0.10
Conn = Any  # a connection inside ``db.write()`` (SQLite's or the PostgreSQL adapter's)
Emit = Callable[[Conn, Sequence[Alert], int], int]


class UncalibratedLogger(Conflict):
    """A logger without any calibration record, refused by the policy ``refuse``."""

    code = "logger_uncalibrated"


def load_profile(db: Database | Conn, profile_id: str) -> Profile:
    body = device_store.profile_body(conn_of(db), profile_id)
    if body is not None:
        return Profile.from_dict(json.loads(body))
    if profile_id in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[profile_id]
    raise NotFound(f"no profile {profile_id!r}")


def calibration_status(db: Database, device_id: str, now_ms: int) -> dict[str, Any]:
    """The logger's calibration status (``calibration_service.calibration_status``); 'unknown' when it cannot
    be read, so that a report never fails for want of it."""
    from coldtrace.services.calibration_service import calibration_status as status

    try:
        return status(db, device_id, now_ms)
    except Exception:  # noqa: BLE001 - a report must not fail because a status is unavailable
        log.exception("calibration status of %s unavailable", device_id)
        return {"status": "unknown"}


# ---------------------------------------------------------------- lifecycle

def create_shipment(db: Database, *, reference: str, origin: str, destination: str, product: str, lot: str,
                    profile_id: str, actor: str, now_ms: int) -> dict[str, Any]:
    load_profile(db, profile_id)
    sid = stable_id("shp", reference)
    row = {"id": sid, "reference": reference, "origin": origin, "destination": destination, "product": product,
           "lot": lot, "profile_id": profile_id, "state": "planned", "created_at": now_ms, "created_by": actor,
           "updated_at": now_ms}
    with db.write() as c:
        if not store.insert_shipment(c, row):
            raise Conflict(f"a shipment with reference {reference!r} exists")
        record_audit(c, actor=actor, action="shipment.create", entity="shipment", entity_id=sid,
                     new=row, ts=now_ms)
    return store.get_shipment(db, sid)


UNCALIBRATED_POLICIES = ("refuse", "warn")


EDITABLE = ("origin", "destination", "product", "lot", "profile_id")


def update_shipment(db: Database, shipment_id: str, *, actor: str, now_ms: int, reason: str | None = None,
                    **fields: Any) -> dict[str, Any]:
    """Correct a planned shipment's facts (route, product, lot, profile). Once it has departed, what it is
    judged against is fixed: a changed profile or lot would change the evaluation QA signs."""
    bad = set(fields) - set(EDITABLE)
    if bad:
        raise ValueError(f"these fields cannot be edited: {sorted(bad)}")
    if "profile_id" in fields:
        load_profile(db, fields["profile_id"])
    with db.write() as c:
        sh = store.get_shipment(c, shipment_id)
        if sh["state"] != "planned":
            raise Conflict(f"a shipment is edited only while planned (it is {sh['state']})")
        changed = {k: v for k, v in fields.items() if sh[k] != v}
        if changed:
            store.update_shipment(c, shipment_id, **changed, updated_at=now_ms)
            record_audit(c, actor=actor, action="shipment.update", entity="shipment", entity_id=shipment_id,
                         old={k: sh[k] for k in changed}, new=changed, reason=reason, ts=now_ms)
    return store.get_shipment(db, shipment_id)


def attach_logger(db: Database, shipment_id: str, device_id: str, *, actor: str, now_ms: int,
                  start_ts: int | None = None, end_ts: int | None = None,
                  uncalibrated: str = "refuse") -> dict[str, Any]:
    """Attach a logger for [start_ts, end_ts) (None: the shipment's own window). Refused when the
    shipment is past transit or the logger's calibration has expired or failed (RULES.md); a logger with no
    calibration record is refused too, unless the ``uncalibrated`` policy is "warn" (setting
    ``shipments.uncalibrated_loggers``): then it is attached, the audit record says so and the release
    checklist shows it."""
    if uncalibrated not in UNCALIBRATED_POLICIES:
        raise ValueError(f"uncalibrated policy must be one of {UNCALIBRATED_POLICIES}")
    if start_ts is not None and end_ts is not None and end_ts <= start_ts:
        raise ValueError("logger window end must be after its start")
    cal = calibration_status(db, device_id, now_ms)
    if cal.get("usable") is False or cal["status"] in ("expired", "failed"):
        raise Conflict(f"logger {device_id} cannot be attached: calibration {cal['status']}"
                       + (f" ({cal['reason']})" if cal.get("reason") else ""))
    if cal["status"] == "unknown" and uncalibrated == "refuse":
        raise UncalibratedLogger(
            f"logger {device_id} cannot be attached: it has no calibration record (record its calibration"
            " certificate first; the setting shipments.uncalibrated_loggers=warn attaches it with a warning)")
    with db.write() as c:
        sh = store.get_shipment(c, shipment_id)
        if sh["state"] not in ("planned", "in_transit"):
            raise Conflict(f"loggers can be attached only before delivery (shipment is {sh['state']})")
        row = {"shipment_id": shipment_id, "device_id": device_id, "start_ts": start_ts, "end_ts": end_ts,
               "attached_at": now_ms, "attached_by": actor}
        if not store.attach_logger(c, row):
            raise Conflict(f"logger {device_id} is already attached to {shipment_id}")
        record_audit(c, actor=actor, action="shipment.attach_logger", entity="shipment", entity_id=shipment_id,
                     new={**row, "calibration": cal["status"]},
                     reason=("no calibration record: attached under policy 'warn'" if cal["status"] == "unknown"
                             else None), ts=now_ms)
    return row


def detach_logger(db: Database, shipment_id: str, device_id: str, *, actor: str, reason: str,
                  now_ms: int) -> None:
    with db.write() as c:
        sh = store.get_shipment(c, shipment_id)
        if sh["state"] != "planned":
            raise Conflict("a logger can be detached only while the shipment is planned; once data counts"
                           " toward the judgement, set its window end instead")
        old = [r for r in store.loggers(c, shipment_id) if r["device_id"] == device_id]
        if not old:
            raise NotFound(f"logger {device_id} is not attached to {shipment_id}")
        store.detach_logger(c, shipment_id, device_id)
        record_audit(c, actor=actor, action="shipment.detach_logger", entity="shipment",
                     entity_id=shipment_id, old=old[0], reason=reason, ts=now_ms)


def transition(db: Database, readings: ReadingStore, shipment_id: str, to_state: str, *, actor: str,
               now_ms: int, at_ts: int | None = None, reason: str | None = None,
               emit: Emit | None = None) -> dict[str, Any]:
    """Move along planned -> in_transit (departure) -> delivered (arrival) -> under_review."""
    at = now_ms if at_ts is None else at_ts
    with db.write() as c:
        sh = store.get_shipment(c, shipment_id)
        if to_state not in TRANSITIONS.get(sh["state"], ()):
            raise Conflict(f"shipment {shipment_id} is {sh['state']}: it cannot become {to_state}"
                           + (" (decisions are signed, see /decisions)" if to_state in DECIDED else ""))
        fields: dict[str, Any] = {"state": to_state, "updated_at": now_ms}
        if to_state == "in_transit":
            fields["start_ts"] = at
        elif to_state == "delivered":
            if at <= (sh["start_ts"] or 0):
                raise ValueError("delivery time must be after departure")
            fields["end_ts"] = at
        elif to_state == "under_review" and not store.loggers(c, shipment_id):
            raise Conflict("a shipment without loggers cannot be reviewed")
        store.update_shipment(c, shipment_id, **fields)
        record_audit(c, actor=actor, action=f"shipment.{to_state}", entity="shipment", entity_id=shipment_id,
                     old={k: sh[k] for k in fields if k != "updated_at"},
                     new={k: v for k, v in fields.items() if k != "updated_at"}, reason=reason, ts=now_ms)
        if to_state in ("delivered", "under_review"):
            ev = evaluate(c, readings, shipment_id)
            persist_excursions(c, ev, now_ms)
            if emit is not None:
                check_lot_budget(c, readings, sh["product"], sh["lot"], now_ms, emit, shipment_id=shipment_id)
    return store.get_shipment(db, shipment_id)


# ---------------------------------------------------------------- evaluation

@dataclass
class LoggerEvaluation:
    device_id: str
    series_id: str
    start: int | None
    end: int | None
    stats: dict[str, Any]
    excursions: list[Excursion]


@dataclass
class ShipmentEvaluation:
    shipment: dict[str, Any]
    profile: Profile
    loggers: list[LoggerEvaluation]
    mkt_c: float | None
    mkt_exceeded: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "shipment_id": self.shipment["id"], "profile": self.profile.to_dict(), "mkt_c": self.mkt_c,
            "mkt_exceeded": self.mkt_exceeded,
            "loggers": [{"device_id": lg.device_id, "series_id": lg.series_id, "start": lg.start,
                         "end": lg.end, "stats": lg.stats, "excursions": [e.to_dict() for e in lg.excursions]}
                        for lg in self.loggers],
        }

    def record_hash(self) -> str:
        """What a signature is bound to: the shipment and its evaluated numbers, canonically."""
        body = {"shipment": {k: self.shipment[k] for k in ("id", "reference", "product", "lot", "profile_id",
                                                            "start_ts", "end_ts")},
                "evaluation": self.to_dict()}
        raw = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(raw.encode()).hexdigest()


def windows(shipment: dict[str, Any], loggers: list[dict[str, Any]]) -> list[tuple[str, int | None, int | None]]:
    """(device_id, start, end) per logger: the logger's own window clipped to the shipment's."""
    out = []
    for lg in loggers:
        start = lg["start_ts"] if lg["start_ts"] is not None else shipment["start_ts"]
        end = lg["end_ts"] if lg["end_ts"] is not None else shipment["end_ts"]
        if shipment["start_ts"] is not None and start is not None:
            start = max(start, shipment["start_ts"])
        if shipment["end_ts"] is not None:
            end = shipment["end_ts"] if end is None else min(end, shipment["end_ts"])
        out.append((lg["device_id"], start, end))
    return out


def evaluate(db: Database | Conn, readings: ReadingStore, shipment_id: str) -> ShipmentEvaluation:
    """Excursions, statistics and MKT of every logger of the shipment over its window (pure over the store)."""
    sh = store.get_shipment(db, shipment_id)
    profile = load_profile(db, sh["profile_id"])
    results, parts = [], []
    for dev, start, end in windows(sh, store.loggers(db, shipment_id)):
        series_id = f"{shipment_id}:{dev}"
        if start is None:  # not departed: nothing counts yet
            ts, v = np.empty(0, np.int64), np.empty(0, np.float64)
        else:
            ts, v = readings.arrays(dev, start, end)
        excs = exc_engine.evaluate(series_id, profile, ts, v, end_ts=end)
        st = series_stats(ts, v, profile, start, end)
        parts.append((v, coverage(ts, start, end, profile.max_gap_ms)))
        results.append(LoggerEvaluation(dev, series_id, start, end, st.to_dict(), excs))
    mkt = combine_mkt(parts, profile.activation_energy_kj)
    exceeded = bool(profile.mkt_max_c is not None and mkt is not None and mkt > profile.mkt_max_c)
    return ShipmentEvaluation(sh, profile, results, mkt, exceeded)


def persist_excursions(c: Conn, ev: ShipmentEvaluation, now_ms: int) -> None:
    """Store the shipment series' excursions (shipment_id set); ones late data removed are kept, superseded."""
    sid = ev.shipment["id"]
    keep = set()
    for lg in ev.loggers:
        for e in lg.excursions:
            keep.add(e.id)
            upsert_excursion(c, e, lg.device_id, sid, now_ms)
    excursion_store.supersede_shipment_excursions(c, sid, keep, now_ms)


# ---------------------------------------------------------------- lot stability budget

def lot_budget(db: Database | Conn, readings: ReadingStore, product: str, lot: str
               ) -> list[dict[str, Any]]:
    """Remaining stability budget of a product lot, per band (a limit with a cumulative budget).

    Time beyond a band's threshold is summed over the lot's shipments (legs); within one shipment the
    worst logger counts (loggers travel with the same goods, so adding them would count the time twice).
    The budget of a band is the smallest one among the profiles of the lot's shipments."""
    bands: dict[tuple[str, float], dict[str, Any]] = {}
    for sh in store.lot_shipments(db, product, lot):
        if sh["start_ts"] is None:
            if sh["state"] != "planned":
                continue
            # not departed yet: its profile's budgets already apply to the lot, nothing is used by this leg
            profile, loggers_ = load_profile(db, sh["profile_id"]), []
        else:
            ev = evaluate(db, readings, sh["id"])
            profile, loggers_ = ev.profile, ev.loggers
        for lim in profile.limits:
            if lim.cumulative_ms is None:
                continue
            key = (lim.direction, lim.threshold_c)
            b = bands.setdefault(key, {"band": lim.id, "direction": lim.direction, "threshold_c": lim.threshold_c,
                                       "budget_ms": lim.cumulative_ms, "used_ms": 0, "by_shipment": {}})
            b["budget_ms"] = min(b["budget_ms"], lim.cumulative_ms)
            used = max((lg.stats["beyond_ms"].get(lim.id, 0) for lg in loggers_), default=0)
            b["by_shipment"][sh["id"]] = used
            b["used_ms"] += used
    out = []
    for b in bands.values():
        b["remaining_ms"] = max(0, b["budget_ms"] - b["used_ms"])
        b["remaining_pct"] = round(100.0 * b["remaining_ms"] / b["budget_ms"], 2) if b["budget_ms"] else 0.0
        b["status"] = ("exhausted" if b["remaining_ms"] <= 0
                       else "low" if b["remaining_ms"] < LOW_BUDGET_FRACTION * b["budget_ms"] else "ok")
        out.append(b)
    return sorted(out, key=lambda b: (b["direction"], b["threshold_c"]))


def check_lot_budget(c: Conn, readings: ReadingStore, product: str, lot: str, now_ms: int,
                     emit: Emit, *, shipment_id: str | None = None) -> list[Alert]:
    """Raise ``lot.stability_low`` (< 10 % left) and ``lot.stability_exhausted`` once per lot and band."""
    alerts = []
    for b in lot_budget(c, readings, product, lot):
        types = {"low": ["lot.stability_low"],
                 "exhausted": ["lot.stability_low", "lot.stability_exhausted"]}.get(b["status"], [])
        for t in types:
            alerts.append(Alert(
                id=stable_id("alert", "lot", product, lot, b["direction"], b["threshold_c"], t), type=t,
                severity="critical" if t.endswith("exhausted") else "warning", device_id=None, ts=now_ms,
                shipment_id=shipment_id,
                data={"product": product, "lot": lot, "band": b["band"], "direction": b["direction"],
                      "threshold_c": b["threshold_c"], "budget_ms": b["budget_ms"], "used_ms": b["used_ms"],
                      "remaining_ms": b["remaining_ms"], "remaining_pct": b["remaining_pct"]}))
    if alerts:
        emit(c, alerts, now_ms)
    return alerts


def tick(db: Database, readings: ReadingStore, now_ms: int, emit: Emit) -> int:
    """Clock-driven upkeep for the pipeline's tick: re-evaluate shipments in transit or delivered, store
    their excursions, and check their lots' budgets. Returns the number of shipments evaluated."""
    rows = store.shipments_to_tick(db)
    for r in rows:
        with db.write() as c:
            persist_excursions(c, evaluate(c, readings, r["id"]), now_ms)
            check_lot_budget(c, readings, r["product"], r["lot"], now_ms, emit, shipment_id=r["id"])
    return len(rows)

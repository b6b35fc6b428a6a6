"""Alert lifecycle: acknowledge, assign, comment, resolve, escalate, self-resolve; every change recorded.

An alert (a fact, never deleted) starts ``open``. People acknowledge it (who, when, comment), assign it,
discuss it and resolve it; ColdTrace escalates an alarm nobody acknowledged (``alert.escalated`` to the
escalation subscriptions, repeated on a schedule) and resolves an excursion's alerts itself once the
excursion has ended and stayed away for a set time, saying so. Each change is a row of ``alert_events``
(append-only) written in the same transaction as the change, plus an audit-trail record for the actions
of people and of the system alike. ``tick(db, now_ms)`` is the clock-driven part.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import audit
from .clock import to_iso
from .errors import Conflict, NotFound
from .model import MINUTE, stable_id
from .store import webhooks as wh_store
from .store.db import Database
from .webhooks import encode_body

log = logging.getLogger(__name__)

SYSTEM = "system"
# Informational alerts that tell of an end or a correction: nothing to escalate about them.
NOT_ESCALATED = frozenset({"excursion.closed", "excursion.revised", "device.online", "alert.acknowledged",
                           "alert.escalated", "alert.resolved", "shipment.decided"})


@dataclass(frozen=True)
class AlertPolicy:
    """When to escalate, how often to repeat, when an ended excursion's alerts resolve themselves.

    Defaults follow common GDP practice for monitored storage: a critical excursion (frozen vaccine, a
    cell-therapy dewar warming) must reach a second person within 15 minutes, an alarm within 30; warnings
    and information are not escalated.
    """

    escalate_after_ms: Mapping[str, int] = field(
        default_factory=lambda: {"critical": 15 * MINUTE, "alarm": 30 * MINUTE})
    repeat_every_ms: Mapping[str, int] = field(
        default_factory=lambda: {"critical": 30 * MINUTE, "alarm": 60 * MINUTE})
    max_escalations: int = 12  # alert.escalated events at most; then it stays listed, the pagers stop
    auto_resolve_after_ms: int | None = 60 * MINUTE  # None: never resolve by itself


def policy_from_settings(ws: Any) -> AlertPolicy:
    """The policy of a ``WebhookSettings`` section (minutes there, ms here; None disables a step)."""

    def ms(v: float | None) -> int | None:
        return None if v is None else int(v * MINUTE)

    after = {"critical": ms(ws.escalate_critical_min), "alarm": ms(ws.escalate_alarm_min)}
    repeat = {"critical": ms(ws.repeat_critical_min), "alarm": ms(ws.repeat_alarm_min)}
    return AlertPolicy(escalate_after_ms={k: v for k, v in after.items() if v is not None},
                       repeat_every_ms={k: v for k, v in repeat.items() if v is not None},
                       max_escalations=ws.max_escalations, auto_resolve_after_ms=ms(ws.auto_resolve_after_min))


# ---------------------------------------------------------------- reads


def get(db: Database, alert_id: str) -> dict[str, Any]:
    """An alert with its lifecycle fields."""
    r = db.query_one("SELECT a.*, l.assignee, l.acknowledged_at, l.acknowledged_by, l.ack_comment,"
                     " l.resolved_at, l.resolved_by, l.resolution, l.escalations, l.last_escalated_at,"
                     " l.next_escalation_at FROM alerts a LEFT JOIN alert_lifecycle l ON l.alert_id = a.id"
                     " WHERE a.id = ?", (alert_id,))
    if r is None:
        raise NotFound(f"no alert {alert_id!r}")
    d = dict(r)
    d["data"] = json.loads(d["data"])
    d["escalations"] = d["escalations"] or 0
    return d


def history(db: Database, alert_id: str) -> list[dict[str, Any]]:
    """Every change of an alert, oldest first (raised, acknowledged, comments, escalations, resolution)."""
    a = get(db, alert_id)
    out = [{"id": 0, "alert_id": alert_id, "at": a["created_at"], "actor": SYSTEM, "action": "raised",
            "comment": None, "data": {"type": a["type"], "severity": a["severity"]}}]
    for r in db.query("SELECT * FROM alert_events WHERE alert_id = ? ORDER BY id", (alert_id,)):
        d = dict(r)
        d["data"] = json.loads(d["data"]) if d["data"] else None
        out.append(d)
    return out


# ---------------------------------------------------------------- actions of people


def _load(c: sqlite3.Connection, alert_id: str) -> sqlite3.Row:
    r = c.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if r is None:
        raise NotFound(f"no alert {alert_id!r}")
    c.execute("INSERT OR IGNORE INTO alert_lifecycle (alert_id) VALUES (?)", (alert_id,))
    return r


def _event(c: sqlite3.Connection, alert_id: str, at: int, actor: str, action: str, comment: str | None = None,
           data: dict[str, Any] | None = None, old: Any = None, new: Any = None) -> None:
    c.execute("INSERT INTO alert_events (alert_id, at, actor, action, comment, data) VALUES (?,?,?,?,?,?)",
              (alert_id, at, actor, action, comment, None if data is None else json.dumps(data)))
    audit.record_audit(c, actor=actor, action=f"alert.{action}", entity="alert", entity_id=alert_id,
                       old=old, new=new, reason=comment, ts=at)


def _webhook(c: sqlite3.Connection, alert: sqlite3.Row, event_type: str, key: object, now: int,
             extra: dict[str, Any]) -> None:
    """An alert.* event into the outbox (same transaction), carrying the original alert's facts."""
    data = json.loads(alert["data"])
    data.update({"alert_id": alert["id"], "alert_type": alert["type"], "severity": alert["severity"],
                 "device_id": alert["device_id"], "shipment_id": alert["shipment_id"],
                 "excursion_id": alert["excursion_id"], "raised_at": to_iso(alert["created_at"]), **extra})
    body = encode_body({"type": event_type, "timestamp": to_iso(now), "data": data})
    wh_store.insert_event(c, stable_id("msg", alert["id"], event_type, key), event_type, body, now,
                          alert_id=alert["id"])


def _comment_text(comment: str | None) -> str | None:
    text = (comment or "").strip()
    return text or None


def acknowledge(db: Database, alert_id: str, *, actor: str, now: int, comment: str | None = None
                ) -> dict[str, Any]:
    """Someone has seen the alert and takes responsibility: escalation stops."""
    comment = _comment_text(comment)
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] != "open":
            raise Conflict(f"alert {alert_id} is already {a['state']}")
        c.execute("UPDATE alerts SET state = 'acknowledged' WHERE id = ?", (alert_id,))
        c.execute("UPDATE alert_lifecycle SET acknowledged_at = ?, acknowledged_by = ?, ack_comment = ?,"
                  " next_escalation_at = NULL WHERE alert_id = ?", (now, actor, comment, alert_id))
        _event(c, alert_id, now, actor, "acknowledged", comment, old={"state": "open"},
               new={"state": "acknowledged"})
        _webhook(c, a, "alert.acknowledged", "ack", now, {"acknowledged_by": actor, "comment": comment})
    return get(db, alert_id)


def assign(db: Database, alert_id: str, *, actor: str, assignee: str | None, now: int,
           comment: str | None = None) -> dict[str, Any]:
    """Give the alert to a person (None: unassign). Does not acknowledge it."""
    comment = _comment_text(comment)
    assignee = (assignee or "").strip() or None
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] == "resolved":
            raise Conflict(f"alert {alert_id} is resolved")
        old = c.execute("SELECT assignee FROM alert_lifecycle WHERE alert_id = ?", (alert_id,)).fetchone()[0]
        c.execute("UPDATE alert_lifecycle SET assignee = ? WHERE alert_id = ?", (assignee, alert_id))
        _event(c, alert_id, now, actor, "assigned", comment, {"assignee": assignee, "previous": old},
               old={"assignee": old}, new={"assignee": assignee})
    return get(db, alert_id)


def add_comment(db: Database, alert_id: str, *, actor: str, text: str, now: int) -> dict[str, Any]:
    """One message of the alert's thread (allowed in any state: QA notes after resolution too)."""
    body = _comment_text(text)
    if body is None:
        raise ValueError("a comment needs text")
    with db.write() as c:
        _load(c, alert_id)
        _event(c, alert_id, now, actor, "commented", body)
    return history(db, alert_id)[-1]


def resolve(db: Database, alert_id: str, *, actor: str, now: int, comment: str) -> dict[str, Any]:
    """Close the alert; a person must say why (the resolution is part of the GxP record)."""
    comment = _comment_text(comment)
    if comment is None:
        raise ValueError("resolving an alert needs a comment saying why")
    with db.write() as c:
        a = _load(c, alert_id)
        _resolve(c, a, actor, now, comment)
    return get(db, alert_id)


def _resolve(c: sqlite3.Connection, a: sqlite3.Row, actor: str, now: int, text: str,
             action: str = "resolved") -> None:
    if a["state"] == "resolved":
        raise Conflict(f"alert {a['id']} is already resolved")
    c.execute("UPDATE alerts SET state = 'resolved' WHERE id = ?", (a["id"],))
    c.execute("UPDATE alert_lifecycle SET resolved_at = ?, resolved_by = ?, resolution = ?,"
              " next_escalation_at = NULL WHERE alert_id = ?", (now, actor, text, a["id"]))
    _event(c, a["id"], now, actor, action, text, old={"state": a["state"]}, new={"state": "resolved"})
    _webhook(c, a, "alert.resolved", "resolved", now, {"resolved_by": actor, "resolution": text,
                                                       "automatic": action == "auto_resolved"})


# ---------------------------------------------------------------- the clock


@dataclass(slots=True)
class TickResult:
    escalated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)


def tick(db: Database, now_ms: int, policy: AlertPolicy | None = None) -> TickResult:
    """Escalate what is overdue and resolve what has ended; each alert in its own small transaction."""
    policy = policy or AlertPolicy()
    result = TickResult()
    for alert_id in _due_escalations(db, now_ms, policy):
        if _escalate(db, alert_id, now_ms, policy):
            result.escalated.append(alert_id)
    if policy.auto_resolve_after_ms is not None:
        for alert_id, exc_end in _self_resolvable(db, now_ms, policy.auto_resolve_after_ms):
            if _auto_resolve(db, alert_id, exc_end, now_ms, policy.auto_resolve_after_ms):
                result.resolved.append(alert_id)
    if result.escalated or result.resolved:
        log.info("alert tick: %d escalated, %d resolved themselves", len(result.escalated), len(result.resolved))
    return result


def _due_escalations(db: Database, now: int, policy: AlertPolicy) -> list[str]:
    sevs = [s for s in policy.escalate_after_ms if policy.escalate_after_ms[s] is not None]
    if not sevs:
        return []
    case = " ".join("WHEN ? THEN ?" for _ in sevs)
    params: list[Any] = [x for s in sevs for x in (s, policy.escalate_after_ms[s])]
    excluded = sorted(NOT_ESCALATED)
    sql = ("SELECT a.id FROM alerts a LEFT JOIN alert_lifecycle l ON l.alert_id = a.id"
           f" WHERE a.state = 'open' AND a.severity IN ({','.join('?' * len(sevs))})"
           f" AND a.type NOT IN ({','.join('?' * len(excluded))})"
           " AND COALESCE(l.escalations, 0) < ?"
           f" AND COALESCE(l.next_escalation_at, CASE WHEN l.escalations > 0 THEN NULL"
           f" ELSE a.created_at + (CASE a.severity {case} END) END) <= ?"
           " ORDER BY a.created_at, a.id")
    rows = db.query(sql, (*sevs, *excluded, policy.max_escalations, *params, now))
    return [r[0] for r in rows]


def _escalate(db: Database, alert_id: str, now: int, policy: AlertPolicy) -> bool:
    with db.write() as c:
        a = _load(c, alert_id)
        life = c.execute("SELECT escalations, next_escalation_at FROM alert_lifecycle WHERE alert_id = ?",
                         (alert_id,)).fetchone()
        if a["state"] != "open" or life["escalations"] >= policy.max_escalations:
            return False  # acknowledged or resolved since the query
        level = life["escalations"] + 1
        repeat = policy.repeat_every_ms.get(a["severity"])
        nxt = now + repeat if repeat and level < policy.max_escalations else None
        c.execute("UPDATE alert_lifecycle SET escalations = ?, last_escalated_at = ?, next_escalation_at = ?"
                  " WHERE alert_id = ?", (level, now, nxt, alert_id))
        unacked = now - a["created_at"]
        text = (f"Escalated (level {level}): {a['severity']} {a['type']} unacknowledged for "
                f"{unacked // MINUTE} min")
        _event(c, alert_id, now, SYSTEM, "escalated", text, {"level": level, "unacknowledged_ms": unacked,
                                                             "next_escalation_at": nxt},
               new={"escalations": level})
        _webhook(c, a, "alert.escalated", level, now, {"level": level, "unacknowledged_ms": unacked,
                                                       "next_escalation_at": to_iso(nxt)})
    return True


def _self_resolvable(db: Database, now: int, quiet_ms: int) -> list[tuple[str, int]]:
    """Unresolved alerts of excursions that ended >= quiet_ms ago and whose limit has not been exceeded
    again on that series since (an episode that began after this one, still open or ended too recently)."""
    rows = db.query(
        "SELECT a.id, e.end_ts FROM alerts a JOIN excursions e ON e.id = a.excursion_id"
        " WHERE a.state != 'resolved' AND e.superseded = 0 AND e.end_ts IS NOT NULL AND e.end_ts <= ?"
        " AND NOT EXISTS (SELECT 1 FROM excursions x WHERE x.series_id = e.series_id"
        "   AND x.limit_id = e.limit_id AND x.superseded = 0 AND x.start_ts > e.start_ts"
        "   AND (x.end_ts IS NULL OR x.end_ts > ?))"
        " ORDER BY a.created_at, a.id", (now - quiet_ms, now - quiet_ms))
    return [(r[0], r[1]) for r in rows]


def _auto_resolve(db: Database, alert_id: str, exc_end: int, now: int, quiet_ms: int) -> bool:
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] == "resolved":
            return False
        text = (f"Resolved automatically: the excursion ended at {to_iso(exc_end)} and has not recurred for"
                f" {quiet_ms // MINUTE} min.")
        _resolve(c, a, SYSTEM, now, text, action="auto_resolved")
    return True

"""SQL of the alerts family: ``alerts``, ``alert_lifecycle`` and ``alert_events`` (migrations 0001, 0210, 1151),
and the reads of the ISA-18.2 lifecycle (coldtrace/services/alerts.py) and of the alarm-system health report
(coldtrace/services/alarm_health.py), and what a shipment's trip report and release checklist read about its
alerts. The port is ``AlertStore`` in coldtrace/ports.py.

Rows in, typed dicts out; the rules (who may do what, when an alert escalates or resolves) live in the services.
Every statement is one text for SQLite and PostgreSQL (docs/CONVENTIONS.md, portable SQL): ``?`` placeholders,
``ON CONFLICT ... DO NOTHING``, no SQLite-only functions: what used ``json_extract`` on ``alerts.data`` reads the
JSON in Python (an alert's data is small and the rows are already narrowed by indexed columns).

Reads take a ``Database`` (either dialect) or the connection of an open ``db.write()`` transaction; writes take
that connection. The outbox rows the lifecycle writes (alert.acknowledged, alert.escalated, alert.resolved) go
through ``coldtrace.store.webhooks.insert_event``, the outbox's one writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from coldtrace.core.model import Alert
from coldtrace.ports import (
    AlarmRow,
    AlertEventRow,
    AlertHandlingRow,
    AlertLifecycleRow,
    AlertListed,
    AlertQuery,
    AlertRow,
    EpisodeStageRow,
    SelfResolvableRow,
    TxConnection,
)
from coldtrace.store.db import marks as _marks
from coldtrace.store.db import read_one as _one
from coldtrace.store.db import read_rows as _rows

__all__ = [
    "ALERT_SEVERITIES", "AlertQuery", "acknowledged_and_cleared", "alarm_detail", "alarms_raised",
    "clear_shelving", "due_escalations", "ensure_lifecycle", "episode_stages", "events",
    "events_with_actions", "expired_shelvings", "get_alert", "get_handling", "get_lifecycle", "inbox_sql",
    "insert_alert", "insert_outbox", "open_alerts_of_type", "alerts_by_type", "outbox_pending",
    "alert_kinds", "insert_event", "list_alerts", "mark_acknowledged", "mark_resolved", "mark_shelved",
    "open_episode_alerts", "record_escalation", "self_resolvable", "set_assignee", "shipment_alarms",
    "shipment_alerts", "standing_alarms",
]

ALERT_SEVERITIES = ("critical", "alarm", "warning", "info")  # most severe first
# the keys of an alert's data that say what in the device an alarm is about (its ISA-18.2 "tag"), in order
DETAIL_KEYS = ("limit_id", "kind", "set_point_c", "stage")


# ---------------------------------------------------------------- alerts and their handling


_ALERT_ROW = ("INTO alerts (id, type, severity, device_id, shipment_id, excursion_id, ts, created_at, data)"
              " VALUES (?,?,?,?,?,?,?,?,?)")
# One text per dialect, on purpose: ``alerts`` has AFTER INSERT triggers (migration 1151), and SQLite runs an
# INSERT that may abort (a plain INSERT, or any ON CONFLICT upsert) into such a table with a statement journal:
# 20-23 us per row against 7 us for INSERT OR IGNORE (SQLite 3.40; the ingest hot path raises thousands of
# alerts per second in a burst of excursions). The two texts do the same: skip an id stored already.
_INSERT_ALERT = {"sqlite": "INSERT OR IGNORE " + _ALERT_ROW,
                 "postgresql": "INSERT " + _ALERT_ROW + " ON CONFLICT (id) DO NOTHING"}


def insert_alert(c: TxConnection, alert: Alert, created_at: int, data: str | None = None) -> bool:
    """Store a raised alert, idempotent by its (derived) id: True if it is new, False if it was there already
    (the stored one is kept). The triggers of migration 1151 set its condition in the same statement.
    ``data``: the alert's data as JSON text when the caller has it already."""
    cur = c.execute(_INSERT_ALERT[getattr(c, "dialect", "sqlite")],
                    (alert.id, alert.type, alert.severity, alert.device_id, alert.shipment_id, alert.excursion_id,
                     alert.ts, created_at, json.dumps(alert.data) if data is None else data))
    return cur.rowcount == 1


def insert_outbox(c: TxConnection, row: tuple) -> None:
    """A webhook outbox row (event_id, type, alert_id, payload, created_at), unless its event id is stored."""
    c.execute("INSERT INTO outbox (event_id, type, alert_id, payload, created_at) VALUES (?,?,?,?,?)"
              " ON CONFLICT DO NOTHING", row)


def open_alerts_of_type(c: Any, alert_type: str) -> list[tuple[str, str]]:
    """(id, data JSON) of the open alerts of a type, oldest first."""
    return [(r[0], r[1]) for r in c.execute(
        "SELECT id, data FROM alerts WHERE type = ? AND state = 'open' ORDER BY created_at, id", (alert_type,))]


def alerts_by_type(c: Any) -> dict[str, int]:
    return {r[0]: r[1] for r in c.execute("SELECT type, COUNT(*) FROM alerts GROUP BY type")}


def outbox_pending(c: Any) -> int:
    return c.execute("SELECT COUNT(*) FROM outbox WHERE dispatched = 0").fetchone()[0]


def alert_kinds(c: Any) -> list[tuple[str | None, str, str]]:
    """(device_id, type, severity) of every alert."""
    return [(r[0], r[1], r[2]) for r in c.execute("SELECT device_id, type, severity FROM alerts")]


def get_alert(db: Any, alert_id: str) -> AlertRow | None:
    r = _one(db, "SELECT * FROM alerts WHERE id = ?", (alert_id,))
    return None if r is None else cast(AlertRow, dict(r))


_HANDLING_SQL = (
    "SELECT a.*, l.assignee, l.acknowledged_at, l.acknowledged_by, l.ack_comment, l.resolved_at, l.resolved_by,"
    " l.resolution, l.escalations, l.last_escalated_at, l.next_escalation_at, l.shelved_at, l.shelved_by,"
    " l.shelve_reason FROM alerts a LEFT JOIN alert_lifecycle l ON l.alert_id = a.id WHERE a.id = ?")


def get_handling(db: Any, alert_id: str) -> AlertHandlingRow | None:
    """The alert with its lifecycle columns (NULL while nobody and nothing has handled it)."""
    r = _one(db, _HANDLING_SQL, (alert_id,))
    return None if r is None else cast(AlertHandlingRow, dict(r))


def get_lifecycle(db: Any, alert_id: str) -> AlertLifecycleRow | None:
    r = _one(db, "SELECT * FROM alert_lifecycle WHERE alert_id = ?", (alert_id,))
    return None if r is None else cast(AlertLifecycleRow, dict(r))


def ensure_lifecycle(c: TxConnection, alert_id: str) -> None:
    """The alert's lifecycle row, created empty on first handling (idempotent)."""
    c.execute("INSERT INTO alert_lifecycle (alert_id) VALUES (?) ON CONFLICT (alert_id) DO NOTHING", (alert_id,))


def insert_event(c: TxConnection, alert_id: str, at: int, actor: str, action: str, comment: str | None,
                 data: str | None) -> int:
    """Append one change to ``alert_events``; returns its id (the history's order)."""
    rows = c.execute("INSERT INTO alert_events (alert_id, at, actor, action, comment, data) VALUES (?,?,?,?,?,?)"
                     " RETURNING id", (alert_id, at, actor, action, comment, data)).fetchall()
    return int(rows[0][0])


def events(db: Any, alert_id: str) -> list[AlertEventRow]:
    """Every recorded change of an alert, oldest first."""
    return [cast(AlertEventRow, dict(r)) for r in _rows(
        db, "SELECT id, alert_id, at, actor, action, comment, data FROM alert_events WHERE alert_id = ?"
            " ORDER BY id", (alert_id,))]


def mark_acknowledged(c: TxConnection, alert_id: str, at: int, actor: str, comment: str | None) -> None:
    """Workflow state ``acknowledged``; escalation stops (the lifecycle row must exist: ensure_lifecycle)."""
    c.execute("UPDATE alerts SET state = 'acknowledged' WHERE id = ?", (alert_id,))
    c.execute("UPDATE alert_lifecycle SET acknowledged_at = ?, acknowledged_by = ?, ack_comment = ?,"
              " next_escalation_at = NULL WHERE alert_id = ?", (at, actor, comment, alert_id))


def mark_resolved(c: TxConnection, alert_id: str, at: int, actor: str, resolution: str) -> None:
    """Workflow state ``resolved`` (a shelving ends with it); escalation stops."""
    c.execute("UPDATE alerts SET state = 'resolved', shelved_until = NULL WHERE id = ?", (alert_id,))
    c.execute("UPDATE alert_lifecycle SET resolved_at = ?, resolved_by = ?, resolution = ?,"
              " next_escalation_at = NULL WHERE alert_id = ?", (at, actor, resolution, alert_id))


def set_assignee(c: TxConnection, alert_id: str, assignee: str | None) -> None:
    c.execute("UPDATE alert_lifecycle SET assignee = ? WHERE alert_id = ?", (assignee, alert_id))


def mark_shelved(c: TxConnection, alert_id: str, until: int, at: int, actor: str, reason: str) -> None:
    c.execute("UPDATE alerts SET shelved_until = ? WHERE id = ?", (until, alert_id))
    c.execute("UPDATE alert_lifecycle SET shelved_at = ?, shelved_by = ?, shelve_reason = ? WHERE alert_id = ?",
              (at, actor, reason, alert_id))


def clear_shelving(c: TxConnection, alert_id: str) -> None:
    c.execute("UPDATE alerts SET shelved_until = NULL WHERE id = ?", (alert_id,))


def record_escalation(c: TxConnection, alert_id: str, level: int, at: int, next_at: int | None) -> None:
    c.execute("UPDATE alert_lifecycle SET escalations = ?, last_escalated_at = ?, next_escalation_at = ?"
              " WHERE alert_id = ?", (level, at, next_at, alert_id))


# ---------------------------------------------------------------- listings


def inbox_sql(now_param: str = "?") -> tuple[str, str]:
    """(WHERE condition, ORDER BY expression) of the inbox over table ``alerts``: not resolved, not
    acknowledged-and-cleared, not shelved; unacknowledged-active first, then acknowledged-active, then
    unacknowledged-cleared, then by severity. ``now_param`` appears once in the WHERE part."""
    where = ("alerts.state != 'resolved' AND NOT (alerts.state = 'acknowledged' AND alerts.condition = 'cleared')"
             f" AND (alerts.shelved_until IS NULL OR alerts.shelved_until <= {now_param})")
    order = ("CASE WHEN alerts.state = 'open' AND alerts.condition = 'active' THEN 0"
             " WHEN alerts.state = 'acknowledged' THEN 1 ELSE 2 END,"
             " CASE alerts.severity WHEN 'critical' THEN 0 WHEN 'alarm' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END,"
             " alerts.created_at DESC, alerts.ts DESC, alerts.id")
    return where, order


# the columns an AlertQuery filters on by equality: whitelisted names, never user text
_EQUAL_FILTERS = ("type", "severity", "device_id", "shipment_id", "state", "condition")


def list_alerts(db: Any, query: AlertQuery, now: int, limit: int, offset: int = 0) -> list[AlertListed]:
    """Alerts matching ``query`` with their assignee: newest first, or in the inbox's order with
    ``view="inbox"`` (what needs a person); ``view="shelved"``: the shelved ones."""
    where: list[str] = []
    params: list[Any] = []
    for col in _EQUAL_FILTERS:
        val = getattr(query, col)
        if val:
            where.append(f"alerts.{col} = ?")
            params.append(val)
    if query.severities is not None:
        sevs = [s for s in ALERT_SEVERITIES if s in query.severities]
        if not sevs:
            return []
        where.append(f"alerts.severity IN ({_marks(len(sevs))})")
        params.extend(sevs)
    if query.since is not None:
        where.append("alerts.created_at >= ?")
        params.append(query.since)
    order = "alerts.created_at DESC, alerts.ts DESC, alerts.id"
    if query.view == "inbox":
        inbox_where, order = inbox_sql()
        where.append(inbox_where)
        params.append(now)
    elif query.view == "shelved":
        where.append("alerts.state != 'resolved' AND alerts.shelved_until > ?")
        params.append(now)
    elif query.view is not None:
        raise ValueError(f"unknown alert view {query.view!r}")
    sql = ("SELECT alerts.*, l.assignee FROM alerts LEFT JOIN alert_lifecycle l ON l.alert_id = alerts.id"
           + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {order} LIMIT ? OFFSET ?")
    return [cast(AlertListed, dict(r)) for r in _rows(db, sql, (*params, limit, offset))]


# ---------------------------------------------------------------- what a shipment's report and checklist read


def shipment_alerts(db: Any, shipment_id: str, device_windows: Sequence[tuple[str, int, int]],
                    limit: int = 1000) -> list[dict[str, Any]]:
    """Alerts of a shipment (the trip report): those raised for it, and its loggers' alerts inside their
    [start, end) windows, by time then id."""
    clauses, params = ["shipment_id = ?"], [shipment_id]
    for dev, start, end in device_windows:
        clauses.append("(device_id = ? AND ts >= ? AND ts < ?)")
        params.extend([dev, start, end])
    params.append(limit)
    return [dict(r) for r in _rows(
        db, f"SELECT * FROM alerts WHERE {' OR '.join(clauses)} ORDER BY ts, id LIMIT ?", params)]


def shipment_alarms(db: Any, shipment_id: str, shipment_types: Sequence[str],
                    device_windows: Sequence[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """The shipment's own alerts of ``shipment_types`` and its loggers' ``excursion.alarm`` alerts inside their
    [start, end) windows, with their acknowledgement (alert_lifecycle), by time (the release checklist)."""
    clauses = [f"(a.shipment_id = ? AND a.type IN ({_marks(len(shipment_types))}))"]
    params: list[Any] = [shipment_id, *shipment_types]
    for dev, start, end in device_windows:
        clauses.append("(a.device_id = ? AND a.type = 'excursion.alarm' AND a.ts >= ? AND a.ts < ?)")
        params += [dev, start, end]
    return [dict(r) for r in _rows(
        db, "SELECT a.id, a.type, a.severity, a.device_id, a.ts, a.state, a.data, a.excursion_id,"
        " l.acknowledged_at, l.acknowledged_by, l.ack_comment FROM alerts a"
        " LEFT JOIN alert_lifecycle l ON l.alert_id = a.id"
        f" WHERE ({' OR '.join(clauses)}) ORDER BY a.ts, a.id", params)]


def events_with_actions(db: Any, alert_id: str, actions: Sequence[str], limit: int | None = None
                        ) -> list[dict[str, Any]]:
    """(at, actor, action, comment) of an alert's events with one of ``actions``, oldest first (who handled
    it, for the trip report and the release checklist)."""
    sql = (f"SELECT at, actor, action, comment FROM alert_events WHERE alert_id = ?"
           f" AND action IN ({_marks(len(actions))}) ORDER BY id")
    params: list[Any] = [alert_id, *actions]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return [dict(r) for r in _rows(db, sql, params)]


# ---------------------------------------------------------------- excursion episodes


def episode_stages(db: Any, excursion_id: str, direction: str, threshold_c: float, start_ts: int
                   ) -> tuple[int | None, list[EpisodeStageRow]] | None:
    """The episode of an excursion alert: (end of that excursion, every non-superseded excursion of its series
    with the same direction, threshold and start, each with its newest ``excursion.alarm`` alert); None if
    the excursion is not stored. (A read of ``excursions`` for the alerts' view of an episode.)"""
    exc = _one(db, "SELECT series_id, end_ts FROM excursions WHERE id = ?", (excursion_id,))
    if exc is None:
        return None
    stages: list[EpisodeStageRow] = []
    for x in _rows(db, "SELECT id, limit_id, severity, alarm_ts, alarm_kind FROM excursions WHERE series_id = ?"
                       " AND direction = ? AND threshold_c = ? AND start_ts = ? AND superseded = 0 ORDER BY id",
                   (exc["series_id"], direction, threshold_c, start_ts)):
        alarm = _one(db, "SELECT id, state FROM alerts WHERE excursion_id = ? AND type = 'excursion.alarm'"
                         " ORDER BY created_at DESC, id LIMIT 1", (x["id"],))
        stages.append({"excursion_id": x["id"], "limit_id": x["limit_id"], "severity": x["severity"],
                       "alarm_ts": x["alarm_ts"], "alarm_kind": x["alarm_kind"],
                       "alert_id": None if alarm is None else alarm["id"],
                       "alert_state": None if alarm is None else alarm["state"]})
    return exc["end_ts"], stages


def _data_field(data: str | None, key: str) -> Any:
    try:
        d = json.loads(data) if data else None
    except ValueError:
        return None
    return d.get(key) if isinstance(d, dict) else None


def open_episode_alerts(c: TxConnection, episode_id: str, device_id: str | None, exclude_id: str) -> list[str]:
    """Ids of the open excursion alerts of one device (or of no device) in episode ``episode_id``, other than
    ``exclude_id``, oldest first."""
    dev = "device_id IS NULL" if device_id is None else "device_id = ?"
    rows = _rows(c, "SELECT id, data FROM alerts WHERE state = 'open' AND id != ? AND excursion_id IS NOT NULL"
                    f" AND {dev} ORDER BY created_at, id",
                 (exclude_id,) if device_id is None else (exclude_id, device_id))
    return [r["id"] for r in rows if _data_field(r["data"], "episode_id") == episode_id]


# ---------------------------------------------------------------- the clock's queries


def expired_shelvings(db: Any, now: int) -> list[str]:
    """Alerts whose shelving has run out at ``now``, the earliest expiry first."""
    return [r[0] for r in _rows(db, "SELECT id FROM alerts WHERE shelved_until IS NOT NULL AND shelved_until <= ?"
                                    " ORDER BY shelved_until, id", (now,))]


def acknowledged_and_cleared(db: Any) -> list[str]:
    """Alerts acknowledged whose condition has cleared (ISA-18.2: ready to return to normal), oldest first."""
    return [r[0] for r in _rows(db, "SELECT id FROM alerts WHERE state = 'acknowledged' AND condition = 'cleared'"
                                    " ORDER BY created_at, id")]


def due_escalations(db: Any, now: int, escalate_after_ms: Mapping[str, int], excluded_types: Sequence[str],
                    cap: int | None) -> list[str]:
    """Unacknowledged alerts (active or already cleared), not shelved, of a severity in ``escalate_after_ms``
    and a type not excluded, escalated fewer than ``cap`` times, whose next escalation is due at ``now`` (the
    first one ``escalate_after_ms[severity]`` after the alert was raised); oldest first."""
    sevs = [s for s, ms in escalate_after_ms.items() if ms is not None]
    if not sevs:
        return []
    case = " ".join("WHEN ? THEN ?" for _ in sevs)
    case_params: list[Any] = [x for s in sevs for x in (s, int(escalate_after_ms[s]))]
    excluded = list(excluded_types)
    not_excluded = f" AND a.type NOT IN ({_marks(len(excluded))})" if excluded else ""
    sql = ("SELECT a.id FROM alerts a LEFT JOIN alert_lifecycle l ON l.alert_id = a.id"
           f" WHERE a.state = 'open' AND a.severity IN ({_marks(len(sevs))}){not_excluded}"
           " AND (a.shelved_until IS NULL OR a.shelved_until <= ?)"
           " AND COALESCE(l.escalations, 0) < ?"
           " AND COALESCE(l.next_escalation_at, CASE WHEN l.escalations > 0 THEN NULL"
           f" ELSE a.created_at + (CASE a.severity {case} END) END) <= ?"
           " ORDER BY a.created_at, a.id")
    return [r[0] for r in _rows(db, sql, (*sevs, *excluded, now, 2**62 if cap is None else cap, *case_params,
                                          now))]


def self_resolvable(db: Any, quiet_since: int) -> list[SelfResolvableRow]:
    """Unresolved info and warning alerts whose condition has cleared at or before ``quiet_since``: an
    excursion's alerts once it ended then and its limit has not been exceeded again on that series since (an
    episode that began after it, still open or ended after ``quiet_since``); other alerts once cleared then.
    An *information* event of an excursion needs only its own excursion quiet and no later episode still
    open: a fridge opened every 20 min never has 60 quiet minutes, and its door openings' events would
    otherwise stay open for ever (issue 13). A superseded excursion's alerts are never listed. By alert id."""
    rows = _rows(
        db,
        "SELECT a.id, a.severity, a.device_id, e.end_ts FROM alerts a JOIN excursions e ON e.id = a.excursion_id"
        " WHERE a.state != 'resolved' AND a.condition = 'cleared' AND a.severity IN ('info', 'warning')"
        " AND e.superseded = 0 AND e.end_ts IS NOT NULL AND e.end_ts <= ?"
        " AND NOT EXISTS (SELECT 1 FROM excursions x WHERE x.series_id = e.series_id"
        "   AND x.limit_id = e.limit_id AND x.superseded = 0 AND x.start_ts > e.start_ts"
        "   AND (x.end_ts IS NULL OR (x.end_ts > ? AND a.severity <> 'info')))"
        " UNION ALL SELECT a.id, a.severity, a.device_id, NULL FROM alerts a"
        " WHERE a.excursion_id IS NULL AND a.state != 'resolved' AND a.condition = 'cleared'"
        " AND a.severity IN ('info', 'warning') AND a.cleared_at <= ?"
        " ORDER BY 1", (quiet_since, quiet_since, quiet_since))
    return [{"alert_id": r[0], "severity": r[1], "device_id": r[2], "excursion_end_ts": r[3]} for r in rows]


# ---------------------------------------------------------------- alarm-system health


def alarm_detail(data: str | None) -> Any:
    """What in the device an alarm is about: the first of ``DETAIL_KEYS`` present (not null) in the alert's
    data; an object or array as compact JSON text (as SQLite's json_extract gave it), a boolean as 0/1."""
    try:
        d = json.loads(data) if data else None
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    for key in DETAIL_KEYS:
        v = d.get(key)
        if v is None:
            continue
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, dict | list):
            return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
        return v
    return None


def _alarm(r: Any) -> AlarmRow:
    return {"id": r["id"], "created_at": r["created_at"], "ts": r["ts"], "type": r["type"],
            "severity": r["severity"], "device_id": r["device_id"], "state": r["state"],
            "detail": alarm_detail(r["data"])}


def alarms_raised(db: Any, start: int, end: int, severities: Sequence[str]) -> list[AlarmRow]:
    """Alerts of ``severities`` raised (``created_at``) in [start, end), in the order they were raised."""
    sevs = list(severities)
    if not sevs:
        return []
    return [_alarm(r) for r in _rows(
        db, "SELECT id, created_at, ts, type, severity, device_id, state, data FROM alerts"
            f" WHERE created_at >= ? AND created_at < ? AND severity IN ({_marks(len(sevs))})"
            " ORDER BY created_at, id", (start, end, *sevs))]


def standing_alarms(db: Any, active_since_before: int, severities: Sequence[str],
                    not_a_condition: Sequence[str]) -> list[AlarmRow]:
    """Unresolved alerts of ``severities`` whose condition is still active and began (``ts``) at or before
    ``active_since_before``, except the types in ``not_a_condition``; the oldest condition first."""
    sevs, ends = list(severities), list(not_a_condition)
    if not sevs:
        return []
    not_ends = f" AND a.type NOT IN ({_marks(len(ends))})" if ends else ""
    return [_alarm(r) for r in _rows(
        db, "SELECT a.id, a.created_at, a.ts, a.type, a.severity, a.device_id, a.state, a.data FROM alerts a"
            f" WHERE a.state != 'resolved' AND a.severity IN ({_marks(len(sevs))}){not_ends}"
            " AND a.ts <= ? AND a.condition = 'active' ORDER BY a.ts, a.id",
        (*sevs, *ends, active_since_before))]

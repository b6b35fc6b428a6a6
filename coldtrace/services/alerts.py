"""Alert lifecycle per ISA-18.2 / IEC 62682: acknowledge, assign, comment, shelve, resolve, escalate, return to
normal; every change recorded.

An alert (a fact, never deleted) has two independent parts (docs/RULES.md, "Alert handling"):

- its workflow ``state``: ``open`` (nobody acknowledged it) -> ``acknowledged`` (who, when, comment) ->
  ``resolved`` (it has left the inbox: returned to normal, resolved itself, or closed by a person);
- its ``condition``: ``active`` while what it reports lasts (an excursion still open, a device still
  offline), ``cleared`` once that has returned to normal (kept current by triggers of migration 1151).

Together they give the ISA-18.2 states (``isa_state``): normal, unacknowledged-active, acknowledged-active,
unacknowledged-cleared, and shelved (suppressed by a person, with a reason, until an expiry). An alarm
(alarm/critical) leaves the inbox only when a person has acknowledged it *and* its condition has cleared
("returned to normal"); only the severities a profile marks as self-clearing (info and warning by default)
resolve themselves. ColdTrace escalates an alarm nobody acknowledged (``alert.escalated`` to the escalation
subscriptions, repeated on a schedule) until someone does. Each change is a row of ``alert_events``
(append-only) written in the same transaction as the change, plus an audit-trail record for the actions of
people and of the system alike. ``tick(db, now_ms)`` is the clock-driven part.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coldtrace.core.clock import to_iso
from coldtrace.core.errors import ColdTraceError, Conflict, NotFound
from coldtrace.core.model import HOUR, MINUTE, Profile, stable_id
from coldtrace.ports import AlertListed, AlertQuery, AlertRow, TxConnection
from coldtrace.services import audit
from coldtrace.services.webhooks import encode_body
from coldtrace.store import alerts as store
from coldtrace.store import auth as auth_store
from coldtrace.store import devices as device_store
from coldtrace.store import webhooks as wh_store
from coldtrace.store.alerts import inbox_sql  # noqa: F401  (the inbox's order, for callers of this module)
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

SYSTEM = "system"
# Informational alerts that tell of an end or a correction: nothing to escalate about them.
NOT_ESCALATED = frozenset({"excursion.closed", "excursion.revised", "device.online", "alert.acknowledged",
                           "alert.escalated", "alert.resolved", "shipment.decided"})
DEFAULT_SELF_CLEARING = ("info", "warning")
MAX_SHELVE_MS = 24 * HOUR  # ISA-18.2: shelving is always time-limited
SEVERITY_RANK = {"critical": 0, "alarm": 1, "warning": 2, "info": 3}
# ISA-18.2 states of an alert still in the inbox, in the order the inbox shows them
INBOX_ORDER = ("unack_active", "ack_active", "unack_cleared")


class ConditionActive(Conflict):
    """A person tried to close an alarm whose condition still lasts (acknowledge or shelve it instead)."""

    code = "condition_active"


class UnknownUser(ColdTraceError):
    """An alert was to be assigned to someone who is not an active user."""

    code = "unknown_user"


def isa_state(state: str, condition: str | None, shelved_until: int | None, now: int) -> str:
    """The ISA-18.2 state of an alert: normal | shelved | unack_active | ack_active | unack_cleared."""
    if state == "resolved":
        return "normal"
    if shelved_until is not None and shelved_until > now:
        return "shelved"
    cleared = condition == "cleared"
    if state == "acknowledged":
        return "normal" if cleared else "ack_active"
    return "unack_cleared" if cleared else "unack_active"


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
    max_escalations: int | None = None  # None: repeat until acknowledged (ISA-18.2); a number caps the pages
    auto_resolve_after_ms: int | None = 60 * MINUTE  # quiet time before a self-clearing alert resolves; None: never
    default_self_clearing: tuple[str, ...] = DEFAULT_SELF_CLEARING  # for alerts of devices without a profile


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


def get(db: Database, alert_id: str, now: int | None = None) -> dict[str, Any]:
    """An alert with its lifecycle fields (``isa_state`` as of ``now``, default: the last change)."""
    r = store.get_handling(db, alert_id)
    if r is None:
        raise NotFound(f"no alert {alert_id!r}")
    d: dict[str, Any] = dict(r)
    d["data"] = json.loads(d["data"])
    d["escalations"] = d["escalations"] or 0
    if d["shelved_until"] is None:
        d["shelved_at"] = d["shelved_by"] = d["shelve_reason"] = None
    d["episode"] = _episode(db, d)
    # without ``now``: shelved until the tick has lifted an expired shelving
    d["isa_state"] = isa_state(d["state"], d["condition"], d["shelved_until"],
                               d["shelved_until"] - 1 if now is None and d["shelved_until"] else (now or 0))
    return d


def history(db: Database, alert_id: str) -> list[dict[str, Any]]:
    """Every change of an alert, oldest first (raised, acknowledged, comments, escalations, resolution)."""
    a = get(db, alert_id)
    out = [{"id": 0, "alert_id": alert_id, "at": a["created_at"], "actor": SYSTEM, "action": "raised",
            "comment": None, "data": {"type": a["type"], "severity": a["severity"]}}]
    for r in store.events(db, alert_id):
        d: dict[str, Any] = dict(r)
        d["data"] = json.loads(d["data"]) if d["data"] else None
        out.append(d)
    return out


def _episode_of(row: Mapping[str, Any]) -> str | None:
    data = row["data"]
    if isinstance(data, str):
        data = json.loads(data)
    return data.get("episode_id") if isinstance(data, dict) else None


def group_by_episode(db: Database, rows: list[AlertListed], offset: int = 0, limit: int | None = None
                     ) -> list[tuple[AlertListed, dict[str, Any] | None]]:
    """Limits sharing direction and threshold (high-warn and high at 8 °C) are one episode with staged
    severities: keep, per episode, the first of ``rows`` (in the caller's order: the inbox's puts the alert
    needing a person most first), page through the entries, and describe each episode's stages - every limit
    of that threshold, its severity and whether and when its alarm was reached. Alerts without an episode
    stay as they are."""
    kept: list[AlertListed] = []
    seen: set[str] = set()
    for r in rows:
        ep = _episode_of(r)
        if ep is not None:
            if ep in seen:
                continue
            seen.add(ep)
        kept.append(r)
    kept = kept[offset:] if limit is None else kept[offset:offset + limit]
    return [(r, _episode(db, r)) for r in kept]


GROUP_WINDOW_MAX = 20_000  # alerts read at most to group a page of episodes


def list_alerts(db: Database, query: AlertQuery, now: int, *, limit: int, offset: int = 0,
                group: str | None = None) -> list[tuple[AlertListed, dict[str, Any] | None]]:
    """A page of alerts matching ``query`` (newest first; ``view="inbox"``: in the inbox's order), each with
    its episode when ``group="episode"`` (one entry per episode, see ``group_by_episode``), else None."""
    if group is None:
        return [(r, None) for r in store.list_alerts(db, query, now, limit, offset)]
    if group != "episode":
        raise ValueError(f"unknown grouping {group!r}")
    # grouping folds several rows into one: group a bounded window, then page through the entries
    rows = store.list_alerts(db, query, now, min(4 * (limit + offset), GROUP_WINDOW_MAX))
    return group_by_episode(db, rows, offset, limit)


def get_alert(db: Database, alert_id: str) -> AlertRow:
    """The alert as stored (``NotFound`` if there is none)."""
    r = store.get_alert(db, alert_id)
    if r is None:
        raise NotFound(f"no alert {alert_id!r}")
    return r


def _episode(db: Database, r: Mapping[str, Any]) -> dict[str, Any] | None:
    ep = _episode_of(r)
    if ep is None or r["excursion_id"] is None:
        return None
    data = r["data"] if isinstance(r["data"], dict) else json.loads(r["data"])
    found = store.episode_stages(db, r["excursion_id"], data["direction"], data["threshold_c"], data["start_ts"])
    if found is None:
        return None
    end_ts, rows = found
    stages = [{"limit_id": x["limit_id"], "severity": x["severity"], "alarm_ts": x["alarm_ts"],
               "alarm_kind": x["alarm_kind"], "alert_id": x["alert_id"], "state": x["alert_state"]} for x in rows]
    stages.sort(key=lambda s: -SEVERITY_RANK.get(s["severity"], 9))  # lowest stage first
    reached = [s for s in stages if s["alarm_ts"] is not None]
    return {"id": ep, "start_ts": data["start_ts"], "end_ts": end_ts, "direction": data["direction"],
            "threshold_c": data["threshold_c"], "stages": stages,
            "current_stage": reached[-1]["severity"] if reached else None,
            "top_stage": stages[-1]["severity"] if stages else None}


# ---------------------------------------------------------------- actions of people


def _load(c: TxConnection, alert_id: str) -> AlertRow:
    r = store.get_alert(c, alert_id)
    if r is None:
        raise NotFound(f"no alert {alert_id!r}")
    store.ensure_lifecycle(c, alert_id)
    return r


def _event(c: TxConnection, alert_id: str, at: int, actor: str, action: str, comment: str | None = None,
           data: dict[str, Any] | None = None, old: Any = None, new: Any = None, audited: bool = True) -> None:
    store.insert_event(c, alert_id, at, actor, action, comment, None if data is None else json.dumps(data))
    if audited:
        audit.record_audit(c, actor=actor, action=f"alert.{action}", entity="alert", entity_id=alert_id,
                           old=old, new=new, reason=comment, ts=at)


def _webhook(c: TxConnection, alert: AlertRow, event_type: str, key: object, now: int,
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
    """Someone has seen the alert and takes responsibility: escalation stops. An alert whose condition has
    already cleared returns to normal at once (it leaves the inbox); one still active stays listed as
    "acknowledged, still active" until it clears."""
    comment = _comment_text(comment)
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] != "open":
            raise Conflict(f"alert {alert_id} is already {a['state']}")
        _ack(c, a, actor, now, comment)
        if a["condition"] == "cleared":
            _return_to_normal(c, _load(c, alert_id), now)
        _ack_lower_stages(c, a, actor, now, comment)
    return get(db, alert_id, now)


def _ack_lower_stages(c: TxConnection, a: AlertRow, actor: str, now: int, comment: str | None) -> None:
    """Staged severities of one episode (high-warn and high at 8 °C) are one inbox entry: acknowledging a
    stage acknowledges the unacknowledged alerts of the same or a lower stage of that episode. A higher stage
    reached later is a new alarm and needs its own acknowledgement."""
    ep = _episode_of(a)
    if ep is None:
        return
    rank = SEVERITY_RANK.get(a["severity"], 9)
    for other_id in store.open_episode_alerts(c, ep, a["device_id"], a["id"]):
        other = _load(c, other_id)
        if SEVERITY_RANK.get(other["severity"], 9) < rank:
            continue
        _ack(c, other, actor, now, comment, with_alert=a["id"])
        if other["condition"] == "cleared":
            _return_to_normal(c, _load(c, other["id"]), now)


def _ack(c: TxConnection, a: AlertRow, actor: str, now: int, comment: str | None,
         with_alert: str | None = None) -> None:
    """``with_alert``: acknowledged as a lower stage of that alert's episode (the same person and comment)."""
    store.mark_acknowledged(c, a["id"], now, actor, comment)
    data: dict[str, Any] = {"condition": a["condition"]}
    if with_alert is not None:
        data["with_alert"] = with_alert
    _event(c, a["id"], now, actor, "acknowledged", comment, data, old={"state": "open"},
           new={"state": "acknowledged"})
    _webhook(c, a, "alert.acknowledged", "ack", now, {"acknowledged_by": actor, "comment": comment, **data})


def _return_to_normal(c: TxConnection, a: AlertRow, now: int) -> None:
    """Acknowledged and cleared: the ISA-18.2 'normal' state; recorded as a resolution by the system that
    names the person who acknowledged."""
    life = store.get_lifecycle(c, a["id"])
    assert life is not None  # _load made it
    text = (f"Returned to normal: acknowledged by {life['acknowledged_by']} at {to_iso(life['acknowledged_at'])},"
            f" condition cleared at {to_iso(a['cleared_at'])}.")
    _resolve(c, a, SYSTEM, now, text, action="returned_to_normal")


def assign(db: Database, alert_id: str, *, actor: str, assignee: str | None, now: int,
           comment: str | None = None) -> dict[str, Any]:
    """Give the alert to a person (None: unassign). Does not acknowledge it. The assignee must be an active
    user (``UnknownUser`` otherwise); the stored name is the user's own spelling."""
    comment = _comment_text(comment)
    assignee = (assignee or "").strip() or None
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] == "resolved":
            raise Conflict(f"alert {alert_id} is resolved")
        if assignee is not None:
            user = auth_store.find_user(c, assignee)  # usernames compare without regard to case
            if user is None or not user["active"]:
                raise UnknownUser(f"no active user {assignee!r}: an alert can only be assigned to a user of ColdTrace")
            assignee = user["username"]  # the user's own spelling
        life = store.get_lifecycle(c, alert_id)
        old = None if life is None else life["assignee"]
        store.set_assignee(c, alert_id, assignee)
        _event(c, alert_id, now, actor, "assigned", comment, {"assignee": assignee, "previous": old},
               old={"assignee": old}, new={"assignee": assignee})
    return get(db, alert_id, now)


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
    """Close the alert; a person must say why (the resolution is part of the GxP record). An alert whose
    excursion is still open cannot be closed (``ConditionActive``: acknowledge or shelve it); closing an
    unacknowledged alert records the acknowledgement by the same person first."""
    comment = _comment_text(comment)
    if comment is None:
        raise ValueError("resolving an alert needs a comment saying why")
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] == "resolved":
            raise Conflict(f"alert {alert_id} is already resolved")
        if a["condition"] == "active" and a["excursion_id"] is not None:
            raise ConditionActive(f"alert {alert_id}: its excursion is still going on; acknowledge it (it stays"
                                  " listed until the excursion ends) or shelve it with a reason")
        if a["state"] == "open":
            _ack(c, a, actor, now, comment)
        _resolve(c, _load(c, alert_id), actor, now, comment)
    return get(db, alert_id, now)


def _resolve(c: TxConnection, a: AlertRow, actor: str, now: int, text: str,
             action: str = "resolved", quiet: bool = False) -> None:
    """``quiet``: an information event that cleared itself. It never needed a person, so its resolution is
    kept in the alert's own history (alert_events) but is neither an audit-trail record nor a webhook: the
    audit trail and the staff's channels stay for what people did and must know (issue 13)."""
    if a["state"] == "resolved":
        raise Conflict(f"alert {a['id']} is already resolved")
    store.mark_resolved(c, a["id"], now, actor, text)
    _event(c, a["id"], now, actor, action, text, old={"state": a["state"]}, new={"state": "resolved"},
           audited=not quiet)
    if quiet:
        return
    _webhook(c, a, "alert.resolved", "resolved", now, {"resolved_by": actor, "resolution": text,
                                                       "automatic": actor == SYSTEM,
                                                       "returned_to_normal": action == "returned_to_normal"})


def shelve(db: Database, alert_id: str, *, actor: str, role: str, reason: str, until: int, now: int
           ) -> dict[str, Any]:
    """Suppress an alert until ``until`` (at most ``MAX_SHELVE_MS`` ahead) with a reason: it leaves the inbox
    and is not escalated; the expiry (``tick``) or ``unshelve`` brings it back. Audited with the role."""
    reason = _comment_text(reason)
    if reason is None:
        raise ValueError("shelving an alert needs a reason")
    if until <= now:
        raise ValueError("a shelving must end in the future")
    if until - now > MAX_SHELVE_MS:
        raise ValueError(f"an alert can be shelved for at most {MAX_SHELVE_MS // HOUR} h")
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] == "resolved":
            raise Conflict(f"alert {alert_id} is resolved")
        store.mark_shelved(c, alert_id, until, now, actor, reason)
        _event(c, alert_id, now, actor, "shelved", reason, {"until": until, "role": role},
               old={"shelved_until": a["shelved_until"]}, new={"shelved_until": until, "role": role})
    return get(db, alert_id, now)


def unshelve(db: Database, alert_id: str, *, actor: str, now: int, reason: str | None = None) -> dict[str, Any]:
    """End a shelving now (a person, or ``tick`` at its expiry): the alert is back in the inbox."""
    with db.write() as c:
        a = _load(c, alert_id)
        if a["shelved_until"] is None:
            raise Conflict(f"alert {alert_id} is not shelved")
        _unshelve(c, a, actor, now, _comment_text(reason))
    return get(db, alert_id, now)


def _unshelve(c: TxConnection, a: AlertRow, actor: str, now: int, reason: str | None) -> None:
    store.clear_shelving(c, a["id"])
    _event(c, a["id"], now, actor, "unshelved", reason, {"was_until": a["shelved_until"]},
           old={"shelved_until": a["shelved_until"]}, new={"shelved_until": None})


# ---------------------------------------------------------------- the clock


@dataclass(slots=True)
class TickResult:
    escalated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)  # returned to normal or resolved themselves
    unshelved: list[str] = field(default_factory=list)
    quiet: int = 0  # of ``resolved``: information events that cleared themselves (no audit record, no webhook)


def tick(db: Database, now_ms: int, policy: AlertPolicy | None = None) -> TickResult:
    """Lift expired shelvings, escalate what is unacknowledged and due, return acknowledged-and-cleared
    alerts to normal, resolve cleared self-clearing ones after their quiet time; each alert in its own small
    transaction."""
    policy = policy or AlertPolicy()
    result = TickResult()
    for alert_id in store.expired_shelvings(db, now_ms):
        with db.write() as c:
            a = _load(c, alert_id)
            if a["shelved_until"] is not None and a["shelved_until"] <= now_ms:
                _unshelve(c, a, SYSTEM, now_ms, "shelving expired")
                result.unshelved.append(alert_id)
    for alert_id in _due_escalations(db, now_ms, policy):
        if _escalate(db, alert_id, now_ms, policy):
            result.escalated.append(alert_id)
    for alert_id in store.acknowledged_and_cleared(db):
        with db.write() as c:
            a = _load(c, alert_id)
            if a["state"] == "acknowledged" and a["condition"] == "cleared":
                _return_to_normal(c, a, now_ms)
                result.resolved.append(alert_id)
    if policy.auto_resolve_after_ms is not None:
        for alert_id, exc_end in _self_resolvable(db, now_ms, policy):
            done = _auto_resolve(db, alert_id, exc_end, now_ms, policy.auto_resolve_after_ms)
            if done is not None:
                result.resolved.append(alert_id)
                result.quiet += done == "quiet"
    # INFO for what people must know of (escalations, shelvings lifted, audited resolutions); information
    # events clearing themselves (every door opening) only at DEBUG, so they never bury the rest (issue 13)
    if result.escalated or result.unshelved or len(result.resolved) > result.quiet:
        log.info("alert tick: %d escalated, %d returned to normal or resolved themselves, %d unshelved",
                 len(result.escalated), len(result.resolved) - result.quiet, len(result.unshelved))
    if result.quiet:
        log.debug("alert tick: %d information alerts resolved themselves", result.quiet)
    return result


def _due_escalations(db: Database, now: int, policy: AlertPolicy) -> list[str]:
    """Unacknowledged alerts (active or already cleared: either needs a person), not shelved, due."""
    return store.due_escalations(db, now, policy.escalate_after_ms, sorted(NOT_ESCALATED),
                                 policy.max_escalations)


def _escalate(db: Database, alert_id: str, now: int, policy: AlertPolicy) -> bool:
    cap = policy.max_escalations
    row = store.get_alert(db, alert_id)
    episode = None if row is None else _episode(db, row)  # the page says which stage of its episode this is
    with db.write() as c:
        a = _load(c, alert_id)
        life = store.get_lifecycle(c, alert_id)
        assert life is not None  # _load made it
        if a["state"] != "open" or (cap is not None and life["escalations"] >= cap) \
                or (a["shelved_until"] is not None and a["shelved_until"] > now):
            return False  # acknowledged, resolved or shelved since the query
        level = life["escalations"] + 1
        repeat = policy.repeat_every_ms.get(a["severity"])
        nxt = now + repeat if repeat and (cap is None or level < cap) else None
        store.record_escalation(c, alert_id, level, now, nxt)
        unacked = now - a["created_at"]
        state = "active" if a["condition"] == "active" else "cleared, still unacknowledged"
        text = (f"Escalated (level {level}): {a['severity']} {a['type']} unacknowledged for "
                f"{unacked // MINUTE} min ({state})")
        _event(c, alert_id, now, SYSTEM, "escalated", text, {"level": level, "unacknowledged_ms": unacked,
                                                             "next_escalation_at": nxt,
                                                             "condition": a["condition"]},
               new={"escalations": level})
        extra: dict[str, Any] = {"level": level, "unacknowledged_ms": unacked, "next_escalation_at": to_iso(nxt),
                                 "condition": a["condition"]}
        if episode is not None:
            extra["episode"] = {"id": episode["id"], "current_stage": episode["current_stage"],
                                "top_stage": episode["top_stage"],
                                "stages": [{"severity": x["severity"], "limit_id": x["limit_id"],
                                            "reached_at": to_iso(x["alarm_ts"])} for x in episode["stages"]]}
        _webhook(c, a, "alert.escalated", level, now, extra)
    return True


def _self_clearing(db: Database, policy: AlertPolicy, device_ids: set[str]) -> dict[str | None, tuple[str, ...]]:
    """device id -> the severities its profile marks self-clearing (None: devices without a profile)."""
    out: dict[str | None, tuple[str, ...]] = {None: policy.default_self_clearing}
    profiles: dict[str, tuple[str, ...]] = {}
    for device_id, profile_id, body in device_store.device_profile_bodies(db, sorted(device_ids)):
        if profile_id not in profiles:
            profiles[profile_id] = Profile.from_dict(json.loads(body)).self_clearing
        out[device_id] = profiles[profile_id]
    return out


def _self_resolvable(db: Database, now: int, policy: AlertPolicy) -> list[tuple[str, int | None]]:
    """Unresolved alerts of a self-clearing severity whose condition has cleared, quiet for long enough:
    an excursion's alerts once it ended >= quiet ago and its limit has not been exceeded again on that
    series since (an episode that began after this one, still open or ended too recently); other alerts
    once cleared >= quiet ago. A superseded excursion's alerts never resolve themselves: a person should
    look at what the data later took back."""
    quiet = policy.auto_resolve_after_ms
    assert quiet is not None
    rows = store.self_resolvable(db, now - quiet)
    if not rows:
        return []
    sc = _self_clearing(db, policy, {r["device_id"] for r in rows if r["device_id"] is not None})
    return [(r["alert_id"], r["excursion_end_ts"]) for r in rows if r["severity"] in sc.get(r["device_id"], sc[None])]


def _auto_resolve(db: Database, alert_id: str, exc_end: int | None, now: int, quiet_ms: int) -> str | None:
    """Resolve a self-clearing alert; "quiet" (an information event: history only), "audited", or None."""
    with db.write() as c:
        a = _load(c, alert_id)
        if a["state"] == "resolved":
            return None
        if exc_end is not None and a["severity"] == "info":  # an information event: its own excursion is quiet
            text = (f"Resolved automatically: the excursion ended at {to_iso(exc_end)}, at least"
                    f" {quiet_ms // MINUTE} min ago (an information event).")
        elif exc_end is not None:
            text = (f"Resolved automatically: the excursion ended at {to_iso(exc_end)} and has not recurred for"
                    f" {quiet_ms // MINUTE} min.")
        else:
            text = (f"Resolved automatically: the condition cleared at {to_iso(a['cleared_at'])} and a"
                    f" {a['severity']} alert clears itself.")
        quiet = a["severity"] == "info"
        _resolve(c, a, SYSTEM, now, text, action="auto_resolved", quiet=quiet)
    return "quiet" if quiet else "audited"

"""The excursion alert stream: a faithful, replayable log of the stored excursions (docs/RULES.md, "Alert
stream").

Every excursion alert carries the revision number of its excursion (1, 2, 3... per excursion) and the state
of the excursion it announces (``data.excursion``: start, end, peak, duration, degree-minutes, alarm time and
kind, superseded). Keeping, per excursion, the state of the alert with the highest revision gives the stored
excursion at every moment ("replay"), whatever late data, redelivery or restarts happened.

The type of each alert names the transition from the state the stream last announced to the stored one:

- ``excursion.opened``: the first word about an excursion (revision 1);
- ``excursion.alarm``: an alarm stands where the stream had none (the first alarm, an alarm restored by late
  data, or a withdrawn excursion revived with its alarm) - the alert that pages and needs acknowledgement;
- ``excursion.closed``: an open excursion ended (its alarm, if any, unchanged);
- ``excursion.revised``: anything else - an alarm moved or withdrawn, an end moved, a closed excursion's
  numbers changed, an excursion superseded (withdrawn) or revived without an alarm.

Ids derive from (excursion id, revision), and the revision reached is stored with the excursion in the same
transaction, so a redelivered message or a restarted process never raises an alert twice, and a sequence of
states A -> B -> A -> B is four alerts, never collapsed. The peak, duration and degree-minutes of an excursion
still open grow with every reading and are not announced on their own (the stream's values are "as of the last
alert", never above the stored ones); once an excursion is closed they are part of what must agree.
Pure: the caller reads and writes the announced states (``store`` in live_evaluation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from coldtrace.core.model import Alert, Excursion, stable_id

OPENED, ALARM, CLOSED, REVISED = "excursion.opened", "excursion.alarm", "excursion.closed", "excursion.revised"
STREAM_TYPES = (OPENED, ALARM, CLOSED, REVISED)
ALWAYS_COMPARED = ("start_ts", "end_ts", "alarm_ts", "alarm_kind", "superseded")
COMPARED_WHEN_CLOSED = ("peak_c", "duration_ms", "degree_minutes")

State = dict[str, Any]


def state_of(e: Excursion, superseded: bool = False) -> State:
    """The announced facts of an excursion (what replay must give back)."""
    return {"start_ts": e.start_ts, "end_ts": e.end_ts, "peak_c": e.peak_c, "duration_ms": e.duration_ms,
            "degree_minutes": e.degree_minutes, "alarm_ts": e.alarm_ts, "alarm_kind": e.alarm_kind,
            "superseded": bool(superseded)}


def agrees(announced: Mapping[str, Any] | None, stored: Mapping[str, Any]) -> bool:
    """Whether the stream's state says what the store says (peak/duration/dm only once closed)."""
    if announced is None:
        return False
    keys = ALWAYS_COMPARED + (COMPARED_WHEN_CLOSED if stored["end_ts"] is not None else ())
    return all(announced[k] == stored[k] for k in keys)


def _alarm_stands(s: Mapping[str, Any] | None) -> bool:
    return s is not None and s["alarm_ts"] is not None and not s["superseded"]


def transitions(announced: State | None, stored: State) -> list[tuple[str, State]]:
    """The alerts (type, state announced) that bring the stream from ``announced`` to ``stored``."""
    if stored["superseded"]:
        if announced is None or announced["superseded"]:
            return []  # never announced (cannot happen for a stored excursion) or already withdrawn
        return [(REVISED, dict(stored))]
    out: list[tuple[str, State]] = []
    cur = announced
    if cur is None:
        cur = {**stored, "end_ts": None, "alarm_ts": None, "alarm_kind": None}
        out.append((OPENED, cur))
    if stored["alarm_ts"] is not None and not _alarm_stands(cur):
        # the alarm stands now: first, restored, or revived. An excursion the stream had as open announces
        # the alarm while open (its end follows as excursion.closed); otherwise the alarm carries everything.
        cur = dict(stored) if cur["end_ts"] is not None or cur["superseded"] else {**stored, "end_ts": None}
        out.append((ALARM, cur))
    if stored["end_ts"] is not None and cur["end_ts"] is None and not cur["superseded"] \
            and cur["alarm_ts"] == stored["alarm_ts"] and cur["alarm_kind"] == stored["alarm_kind"]:
        cur = dict(stored)
        out.append((CLOSED, cur))
    if not agrees(cur, stored):
        out.append((REVISED, dict(stored)))
    return out


def episode_id(e: Excursion) -> str:
    """Limits sharing direction and threshold share their episodes (high-warn and high at 8 °C): this id is
    the same for the excursions of every such limit, so an inbox can show one entry per episode."""
    return stable_id("episode", e.series_id, e.direction, e.threshold_c, e.start_ts)


def stream_alert_id(excursion_id: str, revision: int) -> str:
    return stable_id("alert", excursion_id, "rev", revision)


def alerts_for_change(e: Excursion, announced: State | None, revision: int, stored: State, *, device_id: str,
                      shipment_id: str | None, now_ms: int) -> tuple[list[Alert], int, State | None]:
    """The alerts announcing ``stored`` (the excursion ``e`` as now stored, superseded or not) after the
    stream's ``announced`` state at ``revision``. Returns (alerts, new revision, new announced state)."""
    steps = transitions(announced, stored)
    if not steps:
        return [], revision, announced
    base = {"excursion_id": e.id, "episode_id": episode_id(e), "limit_id": e.limit_id, "direction": e.direction,
            "threshold_c": e.threshold_c, "start_ts": e.start_ts}
    out: list[Alert] = []
    prev = announced
    alarmed_before = bool(announced and announced.get("alarm_announced"))  # kept with the announced state
    for type_, s in steps:
        revision += 1
        data: dict[str, Any] = {**base, "revision": revision, "excursion": s}
        if type_ == OPENED:
            sev, ts = "info", e.start_ts
            data["peak_c"] = s["peak_c"]
        elif type_ == ALARM:
            sev, ts = e.severity, s["alarm_ts"]
            data.update(alarm_kind=s["alarm_kind"], peak_c=s["peak_c"], duration_ms=s["duration_ms"],
                        restored=alarmed_before, revived=prev is not None and bool(prev["superseded"]))
            alarmed_before = True
        elif type_ == CLOSED:
            sev, ts = "info", s["end_ts"]
            data.update(end_ts=s["end_ts"], duration_ms=s["duration_ms"], peak_c=s["peak_c"],
                        degree_minutes=s["degree_minutes"], alarmed=s["alarm_ts"] is not None)
        else:
            subject = prev if s["superseded"] and prev is not None else s
            sev = e.severity if subject["alarm_ts"] is not None else "info"
            ts = now_ms
            data.update(before=None if prev is None else {**e.to_dict(), **prev},
                        after=None if s["superseded"] else {**e.to_dict(), **s},
                        superseded=s["superseded"], revived=prev is not None and bool(prev["superseded"])
                        and not s["superseded"])
        out.append(Alert(id=stream_alert_id(e.id, revision), type=type_, severity=sev, device_id=device_id, ts=ts,
                         data=data, shipment_id=shipment_id, excursion_id=e.id))
        prev = s
    return out, revision, {**prev, "alarm_announced": alarmed_before}


def replay(alerts: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, State]:
    """(type, data) of excursion alerts, in any order -> per excursion id the state the stream says now."""
    best: dict[str, tuple[int, State]] = {}
    for type_, data in alerts:
        if type_ not in STREAM_TYPES or "revision" not in data:
            continue
        xid, rev = data["excursion_id"], int(data["revision"])
        if xid not in best or rev > best[xid][0]:
            best[xid] = (rev, dict(data["excursion"]))
    return {k: v[1] for k, v in best.items()}

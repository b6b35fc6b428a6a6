"""Alarm system health (ISA-18.2 / IEC 62682 §16, EEMUA 191): is the alarm system one people can work with?

An alarm here is an alert a person must act on: severity warning, alarm or critical (information alerts are
context, not alarms). Times are annunciation times (``created_at``: when ColdTrace raised the alert, which is
when a person could first know), so a buffered upload that raises five alarms at once counts as five alarms
in that minute, as the person on call experienced it. An alarm's *source* (ISA-18.2's "tag") is its device,
its type and what in the device it is about (the limit of an excursion, the kind of a sensor fault, the set
point of a drift): the unit that chatters, stands or tops the list.

- Rate: alarms per 10 minutes on the epoch-aligned 10-minute grid. ISA-18.2 calls ~1 per 10 min per operator
  "very likely acceptable" and ~2 "maximum manageable".
- Floods: more than 10 alarms within 10 minutes. Each alarm that has more than 10 alarms (itself included) in
  the 10 minutes up to it marks [first of those alarms, it] as flood time; overlapping marks are one flood.
- Standing: alarms whose condition is still active more than 24 h after it began (unresolved; an excursion
  still open, a device still offline; with the ISA-18.2 lifecycle's ``condition`` column, that column).
- Chattering: a source with 3 or more activations within one minute.
- Most frequent: the 10 sources with the most alarms, with their share of all alarms.

Pure functions over arrays and rows, plus ``report(db, start, end, now)`` that reads the alerts through
coldtrace/store/alerts.py (``alarms_raised``, ``standing_alarms``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from coldtrace.core.model import HOUR, MINUTE
from coldtrace.ports import AlarmRow
from coldtrace.store import alerts as store

ALARM_SEVERITIES = ("warning", "alarm", "critical")
BUCKET_MS = 10 * MINUTE
ACCEPTABLE_PER_10_MIN = 1.0  # ISA-18.2: "very likely acceptable"
MANAGEABLE_PER_10_MIN = 2.0  # ISA-18.2: "maximum manageable"
FLOOD_WINDOW_MS = 10 * MINUTE
FLOOD_MORE_THAN = 10
STANDING_AFTER_MS = 24 * HOUR
CHATTER_WINDOW_MS = MINUTE
CHATTER_ACTIVATIONS = 3
TOP_N = 10
# alerts that report an end or a correction: never "active"
NOT_A_CONDITION = ("excursion.closed", "excursion.revised", "device.online", "shipment.decided")


def rate_buckets(times: np.ndarray, start: int, end: int, bucket_ms: int = BUCKET_MS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(bucket starts, alarm counts) over [start, end) on the epoch-aligned grid (the first bucket may begin
    before ``start``; only alarms inside [start, end) are counted)."""
    first = start - start % bucket_ms
    n = max(1, -(-(end - first) // bucket_ms))
    edges = first + np.arange(n, dtype=np.int64) * bucket_ms
    t = np.asarray(times, np.int64)
    t = t[(t >= start) & (t < end)]
    counts = np.bincount(((t - first) // bucket_ms).astype(np.int64), minlength=n)[:n]
    return edges, counts


def floods(times: np.ndarray, window_ms: int = FLOOD_WINDOW_MS, more_than: int = FLOOD_MORE_THAN
           ) -> list[dict[str, int]]:
    """Periods with more than ``more_than`` alarms within ``window_ms``: [{start, end, alarms, peak}], where
    ``peak`` is the most alarms seen in one window of the flood."""
    t = np.sort(np.asarray(times, np.int64))
    if t.size <= more_than:
        return []
    left = np.searchsorted(t, t - window_ms, side="left")  # alarms in [t_i - window, t_i]
    count = np.arange(t.size) - left + 1
    out: list[dict[str, int]] = []
    for i in np.flatnonzero(count > more_than):
        s, e = int(t[left[i]]), int(t[i])
        if out and s <= out[-1]["end"]:
            out[-1]["end"] = e
            out[-1]["peak"] = max(out[-1]["peak"], int(count[i]))
        else:
            out.append({"start": s, "end": e, "peak": int(count[i])})
    for f in out:
        f["alarms"] = int(np.searchsorted(t, f["end"], side="right") - np.searchsorted(t, f["start"], side="left"))
        f["duration_ms"] = f["end"] - f["start"]
    return out


def chattering(times: np.ndarray, window_ms: int = CHATTER_WINDOW_MS, activations: int = CHATTER_ACTIVATIONS
               ) -> tuple[int, int, int | None]:
    """One source's activation times -> (most activations within one window, chattering episodes, first
    time it chattered). An episode is a run of activations each within ``window_ms`` of the one
    ``activations - 1`` before it."""
    t = np.sort(np.asarray(times, np.int64))
    if t.size == 0:
        return 0, 0, None
    left = np.searchsorted(t, t - window_ms, side="left")
    most = int((np.arange(t.size) - left + 1).max())
    if t.size < activations:
        return most, 0, None
    hit = np.zeros(t.size, dtype=bool)
    hit[activations - 1:] = t[activations - 1:] - t[:t.size - activations + 1] <= window_ms
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return most, 0, None
    episodes = 1 + int(np.count_nonzero(np.diff(idx) > 1))
    return most, episodes, int(t[idx[0] - activations + 1])


def source_key(device_id: str | None, type_: str, detail: Any) -> str:
    return " · ".join(str(x) for x in (device_id or "-", type_, detail) if x not in (None, ""))


# ---------------------------------------------------------------- reading the store


def standing(db: Any, now: int, after_ms: int = STANDING_AFTER_MS) -> list[dict[str, Any]]:
    """Alarms whose condition has been active for more than ``after_ms`` (counted from the alert's ``ts``,
    when the condition began), oldest first. ``db``: a Database or a transaction's connection."""
    rows = store.standing_alarms(db, now - after_ms, ALARM_SEVERITIES, NOT_A_CONDITION)
    return [{"alert_id": r["id"], "source": source_key(r["device_id"], r["type"], r["detail"]),
             "device_id": r["device_id"], "type": r["type"], "detail": _detail(r["detail"]),
             "severity": r["severity"], "state": r["state"],
             "active_since": r["ts"], "raised_at": r["created_at"], "active_ms": now - r["ts"]} for r in rows]


def report(db: Any, start: int, end: int, now: int) -> dict[str, Any]:
    """The alarm-system health of [start, end) (standing alarms: as of ``now``). ``db``: a Database (either
    dialect) or a transaction's connection."""
    rows = store.alarms_raised(db, start, end, ALARM_SEVERITIES)
    times = np.fromiter((r["created_at"] for r in rows), np.int64, len(rows))
    edges, counts = rate_buckets(times, start, end)
    span_10min = (end - start) / BUCKET_MS
    fl = floods(times)
    by_source: dict[str, list[AlarmRow]] = defaultdict(list)
    for r in rows:
        by_source[source_key(r["device_id"], r["type"], r["detail"])].append(r)
    chatter = []
    for src, rs in by_source.items():
        most, episodes, first = chattering(np.fromiter((r["created_at"] for r in rs), np.int64, len(rs)))
        if episodes:
            chatter.append({"source": src, "device_id": rs[0]["device_id"], "type": rs[0]["type"],
                            "detail": _detail(rs[0]["detail"]), "activations": len(rs),
                            "most_in_1_min": most, "episodes": episodes, "first_chattered_at": first,
                            "last_at": rs[-1]["created_at"]})
    chatter.sort(key=lambda x: (-x["most_in_1_min"], -x["activations"], x["source"]))
    top = sorted(by_source.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:TOP_N]
    total = len(rows)
    severities = {s: sum(1 for r in rows if r["severity"] == s) for s in ALARM_SEVERITIES}
    flood_ms = sum(f["duration_ms"] for f in fl)
    return {
        "from_ms": start, "to_ms": end, "now_ms": now, "alarms": total, "by_severity": severities,
        "rate": {
            "bucket_ms": BUCKET_MS, "mean_per_10_min": round(total / span_10min, 4) if span_10min else 0.0,
            "max_per_10_min": int(counts.max()) if counts.size else 0,
            "acceptable_per_10_min": ACCEPTABLE_PER_10_MIN, "manageable_per_10_min": MANAGEABLE_PER_10_MIN,
            "buckets_over_acceptable": int(np.count_nonzero(counts > ACCEPTABLE_PER_10_MIN)),
            "buckets": [{"ts_ms": int(t), "alarms": int(n)} for t, n in zip(edges, counts, strict=True)],
        },
        "floods": {"more_than": FLOOD_MORE_THAN, "window_ms": FLOOD_WINDOW_MS, "count": len(fl),
                   "alarms_in_floods": sum(f["alarms"] for f in fl),
                   "time_in_flood_pct": round(100.0 * flood_ms / (end - start), 3) if end > start else 0.0,
                   "items": fl},
        "standing": {"after_ms": STANDING_AFTER_MS, "items": standing(db, now)},
        "chattering": {"activations": CHATTER_ACTIVATIONS, "window_ms": CHATTER_WINDOW_MS, "items": chatter},
        "top": [{"source": src, "device_id": rs[0]["device_id"], "type": rs[0]["type"],
                 "detail": _detail(rs[0]["detail"]), "alarms": len(rs),
                 "share_pct": round(100.0 * len(rs) / total, 2), "last_at": rs[-1]["created_at"],
                 "severity": max((r["severity"] for r in rs), key=ALARM_SEVERITIES.index)} for src, rs in top],
    }


def _detail(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v

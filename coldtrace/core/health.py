"""Device health (docs/RULES.md "Device health"): offline (deadman), online again, battery low, sensor fault.

Pure: a ``DeviceHealth`` value per device plus functions that take observations and the time as arguments and
return the alerts they cause (ids from ``stable_id``, so repeating an observation never duplicates an alert).
The state is small and JSON-able (``to_dict``/``from_dict``) so the pipeline can persist it with the device.

Decisions (also in docs/RULES.md):
- Offline is decided by a clock tick: more than ``offline_after`` since the last message that carried valid
  readings (receive time, not reading time: a logger replaying its buffer is talking to us). Devices never
  heard from are not declared offline. One ``device.offline`` per outage; ``device.online`` when data returns.
- Battery: below 20 % raises once; the alarm re-arms only after a reading above 25 % (hysteresis).
- Sensor fault, once per fault episode and kind:
  ``out_of_range`` N (default 3) out-of-range rejections in a row (a valid reading resets the run);
  ``stuck`` the exact same value for at least 6 h and 36 readings (re-arms when the value changes);
  ``jump`` a rate of change faster than 5 °C/min judged over at least one minute of data: each reading is
  compared with the newest reading at least ``rate_window_ms`` (60 s) older, so a door opening seen by a
  logger that samples every 5 s (2-3 °C in one sample, then back) is not a fault, while a sensor that
  really jumps (a broken probe reading -40 or 85 °C) still is, at its first wrong reading. Changes under
  1 °C are ignored (resolution and quantisation); re-arms after an hour without a jump.
  Stuck and jump look only at readings newer than the newest seen: late, buffered data is not a live signal.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from coldtrace.core.model import HOUR, MINUTE, Alert, stable_id

OFFLINE, ONLINE, BATTERY_LOW, SENSOR_FAULT = ("device.offline", "device.online", "device.battery_low",
                                              "device.sensor_fault")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    offline_after_ms: int = 30 * MINUTE
    battery_low_pct: float = 20.0
    battery_clear_pct: float = 25.0
    out_of_range_run: int = 3
    stuck_after_ms: int = 6 * HOUR
    stuck_min_readings: int = 36
    max_rate_c_per_min: float = 5.0
    rate_window_ms: int = MINUTE  # the rate of change is judged over at least this much data
    jump_min_delta_c: float = 1.0
    jump_rearm_ms: int = HOUR


DEFAULT_CONFIG = HealthConfig()


@dataclass(slots=True)
class DeviceHealth:
    device_id: str
    last_seen_ms: int | None = None  # receive time of the last message with valid readings
    offline: bool = False
    outage_seen_ms: int | None = None  # last_seen_ms when the current/last outage began (its identity)
    battery_pct: float | None = None
    battery_low: bool = False
    reject_run: int = 0
    reject_alerted: bool = False
    last_ts: int | None = None  # newest reading seen (for stuck / jump)
    last_temp_c: float | None = None
    stuck_value: float | None = None
    stuck_since: int | None = None
    stuck_count: int = 0
    stuck_alerted: bool = False
    last_jump_ts: int | None = None
    # readings of the last rate window ([ts, temp], oldest first): every reading newer than the newest one's
    # ts - rate_window_ms, plus the newest reading at or before it (the reference of the next reading)
    recent: list[list] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: it deep-copies, and this runs for every device of every ingest flush
        return {name: getattr(self, name) for name in _HEALTH_FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceHealth:
        return cls(**{k: v for k, v in d.items() if k in _HEALTH_FIELDS})


_HEALTH_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DeviceHealth))


def _alert(h: DeviceHealth, type_: str, severity: str, ts: int, key: object, **data: Any) -> Alert:
    return Alert(id=stable_id("alert", h.device_id, type_, key), type=type_, severity=severity,  # type: ignore
                 device_id=h.device_id, ts=ts, data={"device_id": h.device_id, **data})


def tick(h: DeviceHealth, now_ms: int, *, offline_after_ms: int, monitored: bool = True) -> list[Alert]:
    """Clock-driven deadman check. ``offline_after_ms`` is the device's (profile's) setting."""
    if not monitored or h.offline or h.last_seen_ms is None:
        return []
    if now_ms - h.last_seen_ms <= offline_after_ms:
        return []
    h.offline, h.outage_seen_ms = True, h.last_seen_ms
    return [_alert(h, OFFLINE, "alarm", h.last_seen_ms + offline_after_ms, h.last_seen_ms,
                   last_seen_ms=h.last_seen_ms, offline_after_ms=offline_after_ms, detected_ms=now_ms)]


def observe_readings(h: DeviceHealth, ts: Sequence[int], temps: Sequence[float], *, now_ms: int,
                     battery_pct: float | None = None, config: HealthConfig = DEFAULT_CONFIG) -> list[Alert]:
    """A message with valid readings (any order) arrived at ``now_ms``."""
    out: list[Alert] = []
    if not len(ts):
        return _battery(h, battery_pct, now_ms, config)
    if h.offline:
        h.offline = False
        out.append(_alert(h, ONLINE, "info", now_ms, h.outage_seen_ms, offline_since_ms=h.outage_seen_ms,
                          back_ms=now_ms))
    h.last_seen_ms = now_ms if h.last_seen_ms is None else max(h.last_seen_ms, now_ms)
    h.reject_run, h.reject_alerted = 0, False
    out.extend(_battery(h, battery_pct, now_ms, config))
    if len(ts) >= VECTOR_MIN:
        t_arr = np.asarray(ts, dtype=np.int64)
        v_arr = np.asarray(temps, dtype=np.float64)
        order = np.argsort(t_arr, kind="stable")
        t_arr, v_arr = t_arr[order], v_arr[order]
        if h.last_ts is not None:  # late data: not a live signal
            keep = t_arr > h.last_ts
            t_arr, v_arr = t_arr[keep], v_arr[keep]
        if len(t_arr):
            out.extend(_observe_series(h, t_arr, v_arr, config))
        return out
    for t, v in sorted(zip((int(x) for x in ts), (float(y) for y in temps), strict=True)):
        if h.last_ts is not None and t <= h.last_ts:
            continue  # late data: not a live signal
        out.extend(_jump(h, t, v, config))
        out.extend(_stuck(h, t, v, config))
        h.last_ts, h.last_temp_c = t, v
    return out


VECTOR_MIN = 32  # below this many readings the reading-by-reading loop is as fast


def _observe_series(h: DeviceHealth, t: np.ndarray, v: np.ndarray, config: HealthConfig) -> list[Alert]:
    """``_jump`` and ``_stuck`` over sorted new readings at once (a logger's buffer, a dock-station dump).

    Same state and alerts as feeding them one by one: only the few candidate readings (a fast change, a run
    of equal values long enough) are looked at individually."""
    out: list[Alert] = []
    n = len(t)
    # jumps: each reading against the newest reading at least one rate window older (the window's readings
    # seen before this message come first)
    buf = _rate_buffer(h)
    k = len(buf)
    if k:
        t_all = np.concatenate((np.fromiter((r[0] for r in buf), np.int64, k), t))
        v_all = np.concatenate((np.fromiter((r[1] for r in buf), np.float64, k), v))
    else:
        t_all, v_all = t, v
    ref = np.searchsorted(t_all, t - config.rate_window_ms, side="right") - 1
    has_ref = ref >= 0
    ref_c = np.where(has_ref, ref, 0)
    dv = np.where(has_ref, np.abs(v - v_all[ref_c]), 0.0)
    dt = np.where(has_ref, t - t_all[ref_c], 1)
    cand = has_ref & (dv >= config.jump_min_delta_c) & (dv > config.max_rate_c_per_min * (dt / MINUTE))
    for i in np.flatnonzero(cand):
        ti = int(t[i])
        rearmed = h.last_jump_ts is None or ti - h.last_jump_ts >= config.jump_rearm_ms
        h.last_jump_ts = ti
        if rearmed:
            r = int(ref[i])
            out.append(_jump_alert(h, ti, float(v[i]), int(t_all[r]), float(v_all[r])))
    keep = max(int(np.searchsorted(t_all, t_all[-1] - config.rate_window_ms, side="right")) - 1, 0)
    h.recent = [[int(a), float(b)] for a, b in zip(t_all[keep:], v_all[keep:], strict=True)]
    # stuck: runs of exactly equal values; the first run may continue the one in progress
    change = np.empty(n, dtype=bool)
    change[1:] = v[1:] != v[:-1]
    change[0] = h.stuck_value is None or float(v[0]) != h.stuck_value
    starts = np.flatnonzero(change)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate(([0], starts))
    ends = np.append(starts[1:], n)
    continued = not change[0]
    base = np.zeros(len(starts), dtype=np.int64)
    if continued:
        base[0] = h.stuck_count
    long_enough = np.flatnonzero(base + (ends - starts) >= config.stuck_min_readings)
    alerted_last = False
    for r in long_enough:
        s, e = int(starts[r]), int(ends[r])
        cont = continued and r == 0
        if cont and h.stuck_alerted:
            continue
        since = h.stuck_since if cont else int(t[s])
        j_count = s + config.stuck_min_readings - int(base[r]) - 1
        j_time = s + int(np.searchsorted(t[s:e], since + config.stuck_after_ms, side="left"))
        j = max(j_count, j_time, s)
        if j < e:
            out.append(_alert(h, SENSOR_FAULT, "alarm", int(t[j]), ("stuck", since), kind="stuck",
                              value_c=float(v[j]), since_ms=since, readings=int(base[r]) + j - s + 1))
            if r == len(starts) - 1:
                alerted_last = True
    last = len(starts) - 1
    s_last = int(starts[last])
    if continued and last == 0:
        h.stuck_count += n
        h.stuck_alerted = h.stuck_alerted or alerted_last
    else:
        h.stuck_value, h.stuck_since = float(v[s_last]), int(t[s_last])
        h.stuck_count, h.stuck_alerted = n - s_last, alerted_last
    h.last_ts, h.last_temp_c = int(t[-1]), float(v[-1])
    return out


def observe_rejections(h: DeviceHealth, out_of_range: int, *, now_ms: int,
                       config: HealthConfig = DEFAULT_CONFIG) -> list[Alert]:
    """``out_of_range`` readings of one message were rejected as out of range (after its valid ones)."""
    if out_of_range <= 0:
        return []
    h.reject_run += out_of_range
    if h.reject_alerted or h.reject_run < config.out_of_range_run:
        return []
    h.reject_alerted = True
    return [_alert(h, SENSOR_FAULT, "alarm", now_ms, ("out_of_range", now_ms), kind="out_of_range",
                   rejected_in_a_row=h.reject_run)]


def _battery(h: DeviceHealth, pct: float | None, now_ms: int, config: HealthConfig) -> list[Alert]:
    if pct is None:
        return []
    h.battery_pct = float(pct)
    if h.battery_low:
        if pct > config.battery_clear_pct:
            h.battery_low = False
        return []
    if pct < config.battery_low_pct:
        h.battery_low = True
        return [_alert(h, BATTERY_LOW, "warning", now_ms, now_ms, battery_pct=float(pct))]
    return []


def _rate_buffer(h: DeviceHealth) -> list[list]:
    """The readings of the last rate window (a state saved before the window existed: its last reading)."""
    if h.recent:
        return h.recent
    return [[h.last_ts, h.last_temp_c]] if h.last_ts is not None and h.last_temp_c is not None else []


def _ts(entry: list) -> int:
    return entry[0]


def _jump(h: DeviceHealth, t: int, v: float, config: HealthConfig) -> list[Alert]:
    """Rate of change over at least one window: ``t`` against the newest reading at or before t - window."""
    buf = h.recent if h.recent else _rate_buffer(h)  # updated in place: this runs for every reading
    # the newest reading at or before the cutoff: binary search (the buffer is in time order, since only
    # readings newer than the last one reach here), not a scan of the whole window for every reading
    i = bisect_right(buf, t - config.rate_window_ms, key=_ts) - 1
    ref = buf[i] if i >= 0 else None
    buf.append([t, v])
    if i > 0:
        del buf[:i]  # keep the reference (the newest reading at least a window old) and what follows it
    h.recent = buf
    if ref is None:
        return []
    delta = abs(v - ref[1])
    if delta < config.jump_min_delta_c or delta <= config.max_rate_c_per_min * ((t - ref[0]) / MINUTE):
        return []
    rearmed = h.last_jump_ts is None or t - h.last_jump_ts >= config.jump_rearm_ms
    h.last_jump_ts = t
    if not rearmed:
        return []
    return [_jump_alert(h, t, v, int(ref[0]), float(ref[1]))]


def _jump_alert(h: DeviceHealth, t: int, v: float, ref_ts: int, ref_c: float) -> Alert:
    minutes = (t - ref_ts) / MINUTE
    return _alert(h, SENSOR_FAULT, "alarm", t, ("jump", t), kind="jump", from_c=ref_c, to_c=v, from_ts=ref_ts,
                  over_ms=t - ref_ts, rate_c_per_min=round(abs(v - ref_c) / minutes, 3))


def _stuck(h: DeviceHealth, t: int, v: float, config: HealthConfig) -> list[Alert]:
    if h.stuck_value is None or v != h.stuck_value:
        h.stuck_value, h.stuck_since, h.stuck_count, h.stuck_alerted = v, t, 1, False
        return []
    h.stuck_count += 1
    assert h.stuck_since is not None
    if h.stuck_alerted or h.stuck_count < config.stuck_min_readings or t - h.stuck_since < config.stuck_after_ms:
        return []
    h.stuck_alerted = True
    return [_alert(h, SENSOR_FAULT, "alarm", t, ("stuck", h.stuck_since), kind="stuck", value_c=v,
                   since_ms=h.stuck_since, readings=h.stuck_count)]

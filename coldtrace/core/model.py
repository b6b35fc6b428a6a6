"""Value objects shared by the whole project. Times are epoch milliseconds (UTC), durations milliseconds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any, Literal, NamedTuple, overload

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Direction = Literal["above", "below"]
Severity = Literal["info", "warning", "alarm", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "alarm", "critical")

TEMP_MIN_C = -200.0
TEMP_MAX_C = 100.0


class Reading(NamedTuple):
    """One temperature reading. A tuple (device_id, ts, temp_c, seq): cheap to build by the hundred thousand
    and handed to the stores' executemany as it is."""

    device_id: str
    ts: int  # epoch ms, UTC
    temp_c: float
    seq: int | None = None


class ReadingColumns(Sequence[Reading]):
    """Readings held as columns: a read-only sequence of ``Reading`` that builds none until asked.

    Decoding a 500-reading message into 500 ``Reading`` tuples cost about a sixth of the ingest child's time
    (bench/profile_ingest.py, docs/ARCHITECTURE.md); the ingest path reads the columns themselves (the store's
    insert, the rollup, the excursion engine, the health rules), and anything else that iterates, indexes
    or compares gets ``Reading`` tuples, built once on first use. Equal to a tuple or list of the same
    readings. ``device_ids`` and ``seqs`` may be a single value for all (one message) or a list."""

    __slots__ = ("device_ids", "ts", "temps", "seqs", "runs", "_rows")

    def __init__(self, device_ids: str | list[str], ts: list[int], temps: list[float],
                 seqs: int | None | list[int | None] = None,
                 runs: list[tuple[str, int, int]] | None = None) -> None:
        n = len(ts)
        if isinstance(device_ids, str):
            runs = [(device_ids, 0, n)] if runs is None else runs
            device_ids = [device_ids] * n
        if not isinstance(seqs, list):
            seqs = [seqs] * n
        if not len(device_ids) == len(temps) == len(seqs) == n:
            raise ValueError("reading columns of different lengths")
        self.device_ids, self.ts, self.temps, self.seqs = device_ids, ts, temps, seqs
        self.runs = runs  # (device_id, start, end) of consecutive readings of one device, when known
        self._rows: tuple[Reading, ...] | None = None

    @classmethod
    def concat(cls, parts: Sequence[Sequence[Reading]]) -> ReadingColumns:
        """Several sequences of readings (columns or tuples) as one, without building ``Reading`` tuples for
        the columnar ones; ``runs`` kept (a tuple's readings count as one run when of one device)."""
        devs: list[str] = []
        ts: list[int] = []
        temps: list[float] = []
        seqs: list[int | None] = []
        runs: list[tuple[str, int, int]] | None = []
        for p in parts:
            start = len(ts)
            if isinstance(p, ReadingColumns):
                devs += p.device_ids
                ts += p.ts
                temps += p.temps
                seqs += p.seqs
                if runs is not None and p.runs is not None:
                    runs.extend((d, a + start, b + start) for d, a, b in p.runs)
                else:
                    runs = None
            elif len(p) == 1:  # a one-reading message
                r = p[0]
                devs.append(r[0])
                ts.append(r[1])
                temps.append(r[2])
                seqs.append(r[3])
                if runs is not None:
                    if runs and runs[-1][0] == r[0] and runs[-1][2] == start:
                        runs[-1] = (r[0], runs[-1][1], start + 1)
                    else:
                        runs.append((r[0], start, start + 1))
            elif p:
                devs += [r[0] for r in p]
                ts += [r[1] for r in p]
                temps += [r[2] for r in p]
                seqs += [r[3] for r in p]
                if runs is not None and len(set(devs[start:])) == 1:
                    runs.append((devs[start], start, len(ts)))
                else:
                    runs = None
        return cls(devs, ts, temps, seqs, runs)

    def rows(self) -> tuple[Reading, ...]:
        if self._rows is None:
            n = len(self.ts)
            # tuple.__new__(Reading, row) is what Reading(...) does underneath, without a Python call each
            self._rows = tuple(map(tuple.__new__, repeat(Reading, n),
                                   zip(self.device_ids, self.ts, self.temps, self.seqs, strict=True)))
        return self._rows

    def flat(self) -> list[Any]:
        """device_id, ts, temp_c, seq of every reading in one list (the parameters of a multi-row INSERT)."""
        out: list[Any] = [None] * (4 * len(self.ts))
        out[0::4], out[1::4], out[2::4], out[3::4] = self.device_ids, self.ts, self.temps, self.seqs
        return out

    def __len__(self) -> int:
        return len(self.ts)

    def __bool__(self) -> bool:
        return bool(self.ts)

    @overload
    def __getitem__(self, i: int) -> Reading: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Reading, ...]: ...
    def __getitem__(self, i):
        return self.rows()[i]

    def __iter__(self) -> Iterator[Reading]:
        return iter(self.rows())

    def __reversed__(self) -> Iterator[Reading]:
        return reversed(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReadingColumns):
            return (self.ts == other.ts and self.temps == other.temps and self.device_ids == other.device_ids
                    and self.seqs == other.seqs)
        if isinstance(other, tuple | list):
            return self.rows() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.rows())

    def __add__(self, other: Sequence[Reading]) -> tuple[Reading, ...]:
        return self.rows() + tuple(other)

    def __repr__(self) -> str:
        return f"ReadingColumns({len(self.ts)} readings)"


_TS, _TEMP = itemgetter(1), itemgetter(2)  # Reading.ts, Reading.temp_c: C getters, no frame per reading


def reading_ts(readings: Sequence[Reading]) -> list[int]:
    """The timestamps of readings (columns or tuples), as a list."""
    return readings.ts if isinstance(readings, ReadingColumns) else list(map(_TS, readings))


def reading_temps(readings: Sequence[Reading]) -> list[float]:
    """The temperatures of readings (columns or tuples), as a list."""
    return readings.temps if isinstance(readings, ReadingColumns) else list(map(_TEMP, readings))


def ts_temps(parts: Iterable[Sequence[Reading]]) -> tuple[list[int], list[float]]:
    """The timestamps and the temperatures of several sequences of readings (columns or tuples), in order."""
    ts: list[int] = []
    temps: list[float] = []
    for rs in parts:
        if type(rs) is ReadingColumns:
            ts += rs.ts
            temps += rs.temps
        elif len(rs) == 1:  # a one-reading message
            r = rs[0]
            ts.append(r[1])
            temps.append(r[2])
        else:
            ts += map(_TS, rs)
            temps += map(_TEMP, rs)
    return ts, temps


def newest_ts(readings: Sequence[Reading]) -> int:
    """The newest timestamp of a non-empty sequence of readings (columns or tuples)."""
    if type(readings) is ReadingColumns:
        return max(readings.ts)
    return readings[0][1] if len(readings) == 1 else max(map(_TS, readings))


@dataclass(frozen=True, slots=True)
class Batch:
    """One message's worth of valid readings from one device."""

    device_id: str
    readings: tuple[Reading, ...] | ReadingColumns  # columns when decoded in bulk (many readings)
    seq: int | None = None
    sent_at: int | None = None
    battery_pct: float | None = None
    source: str = "mqtt"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message (index None) or one of its readings (index i) was not stored."""

    reason: str
    detail: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class ParseResult:
    batch: Batch | None
    rejections: tuple[Rejection, ...] = ()

    @property
    def whole_message_rejected(self) -> bool:
        return self.batch is None


@dataclass(frozen=True, slots=True)
class Limit:
    id: str
    direction: Direction
    threshold_c: float
    severity: Severity = "alarm"
    delay_ms: int = 0
    cumulative_ms: int | None = None
    hysteresis_c: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "threshold_c": self.threshold_c,
            "severity": self.severity,
            "delay_ms": self.delay_ms,
            "cumulative_ms": self.cumulative_ms,
            "hysteresis_c": self.hysteresis_c,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Limit:
        return cls(
            id=str(d["id"]),
            direction=d["direction"],
            threshold_c=float(d["threshold_c"]),
            severity=d.get("severity", "alarm"),
            delay_ms=int(d.get("delay_ms", 0)),
            cumulative_ms=None if d.get("cumulative_ms") is None else int(d["cumulative_ms"]),
            hysteresis_c=float(d.get("hysteresis_c", 0.2)),
        )


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    name: str
    limits: tuple[Limit, ...]
    mkt_max_c: float | None = None
    max_gap_ms: int = 30 * MINUTE
    offline_after_ms: int = 30 * MINUTE
    activation_energy_kj: float = 83.144
    # severities whose alerts resolve themselves once their condition has cleared (docs/RULES.md, "Alert
    # handling"); alarm and critical alerts need a person's acknowledgement whatever this says
    self_clearing: tuple[Severity, ...] = ("info", "warning")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "limits": [lim.to_dict() for lim in self.limits],
            "mkt_max_c": self.mkt_max_c,
            "max_gap_ms": self.max_gap_ms,
            "offline_after_ms": self.offline_after_ms,
            "activation_energy_kj": self.activation_energy_kj,
            "self_clearing": list(self.self_clearing),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        return cls(
            id=str(d["id"]),
            name=str(d.get("name", d["id"])),
            limits=tuple(Limit.from_dict(x) for x in d.get("limits", [])),
            mkt_max_c=None if d.get("mkt_max_c") is None else float(d["mkt_max_c"]),
            max_gap_ms=int(d.get("max_gap_ms", 30 * MINUTE)),
            offline_after_ms=int(d.get("offline_after_ms", 30 * MINUTE)),
            activation_energy_kj=float(d.get("activation_energy_kj", 83.144)),
            self_clearing=tuple(d.get("self_clearing", ("info", "warning"))),
        )


@dataclass(frozen=True, slots=True)
class Excursion:
    """One episode of one limit on one series (a device, or a shipment's logger)."""

    series_id: str
    limit_id: str
    direction: Direction
    threshold_c: float
    severity: Severity
    start_ts: int
    end_ts: int | None  # None while open
    duration_ms: int
    peak_c: float
    degree_minutes: float
    alarm_ts: int | None = None
    alarm_kind: Literal["consecutive", "cumulative", "mkt"] | None = None

    @property
    def id(self) -> str:
        return stable_id("exc", self.series_id, self.limit_id, self.start_ts)

    @property
    def is_open(self) -> bool:
        return self.end_ts is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "series_id": self.series_id,
            "limit_id": self.limit_id,
            "direction": self.direction,
            "threshold_c": self.threshold_c,
            "severity": self.severity,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "duration_ms": self.duration_ms,
            "peak_c": self.peak_c,
            "degree_minutes": self.degree_minutes,
            "alarm_ts": self.alarm_ts,
            "alarm_kind": self.alarm_kind,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    """A fact: something happened at ``ts``. Alerts are never deleted; their id is deterministic."""

    id: str
    type: str  # event type of PROTOCOLS.md, e.g. "excursion.alarm"
    severity: Severity
    device_id: str | None
    ts: int
    data: dict[str, Any] = field(default_factory=dict)
    shipment_id: str | None = None
    excursion_id: str | None = None


def stable_id(*parts: object) -> str:
    """A deterministic short id from its parts (same parts -> same id, whatever the process)."""
    raw = "\x1f".join("" if p is None else str(p) for p in parts)
    prefix = str(parts[0]) if parts else "id"
    return f"{prefix}_{hashlib.sha256(raw.encode()).hexdigest()[:24]}"


def _lim(id_: str, direction: Direction, t: float, sev: Severity, delay_min: float = 0,
         cum_min: float | None = None) -> Limit:
    return Limit(id_, direction, t, sev, int(delay_min * MINUTE),
                 None if cum_min is None else int(cum_min * MINUTE))


BUILTIN_PROFILES: dict[str, Profile] = {
    p.id: p
    for p in (
        Profile(
            "2-8C", "2-8 °C (refrigerated)",
            (
                _lim("high-warn", "above", 8.0, "warning", 15),
                _lim("high", "above", 8.0, "alarm", 30, 240),
                _lim("high-crit", "above", 25.0, "critical", 0),
                _lim("low", "below", 2.0, "alarm", 10),
                _lim("freeze", "below", 0.0, "critical", 0),
            ),
            mkt_max_c=8.0,
        ),
        Profile(
            "15-25C", "15-25 °C (controlled room temperature)",
            (
                _lim("high-warn", "above", 25.0, "warning", 30),
                _lim("high", "above", 25.0, "alarm", 60, 24 * 60),
                _lim("high-crit", "above", 40.0, "critical", 0),
                _lim("low", "below", 15.0, "alarm", 60),
                _lim("low-crit", "below", 2.0, "critical", 0),
            ),
            mkt_max_c=25.0,
        ),
        Profile(
            "-25-15C", "-25 to -15 °C (frozen)",
            (
                _lim("high", "above", -15.0, "alarm", 15, 120),
                _lim("high-crit", "above", -5.0, "critical", 0),
                _lim("low", "below", -25.0, "alarm", 30),
            ),
        ),
        Profile(
            "le-60C", "≤ -60 °C (ultra-cold)",
            (
                _lim("high-warn", "above", -70.0, "warning", 15),
                _lim("high", "above", -60.0, "alarm", 5, 60),
                _lim("high-crit", "above", -40.0, "critical", 0),
            ),
        ),
        Profile(
            "le-150C", "≤ -150 °C (vapour-phase liquid nitrogen, cell therapies)",
            (
                _lim("high-warn", "above", -160.0, "warning", 10),
                _lim("high", "above", -150.0, "alarm", 0, 30),
                _lim("high-crit", "above", -135.0, "critical", 0),
            ),
        ),
    )
}

DEFAULT_PROFILE_ID = "2-8C"

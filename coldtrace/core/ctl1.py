"""CTL1, the logger serial link of PROTOCOLS.md: a pure line codec (no ports, no clocks, no threads).

A line is ``$BODY*HH\\r\\n`` where HH is the XOR of the bytes of BODY (NMEA style). Everything a port can
send is classified: a good frame, or a typed error saying why the bytes were skipped (bad checksum,
truncated, binary noise, malformed). The serial readers count those errors; they are never fatal.

``LineSplitter`` cuts a byte stream into candidate frames. A frame starts at ``$``: bytes before the first
``$`` of a line are noise, and a ``$`` in the middle of a line starts a new frame (the previous one was cut
short, e.g. the logger reset mid-line). ``DumpAssembler`` follows one ``$DUMP`` answer and says whether the
records match the header's count, so the reader knows when to ask again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coldtrace.core.clock import parse_time
from coldtrace.core.errors import PayloadError

MAX_LINE = 512  # a valid line is < 100 bytes; anything longer is noise (bounds memory on a babbling port)


class Ctl1Error(PayloadError):
    """A line that cannot be used. ``code`` is one of the counters of the serial readers."""


class BadChecksum(Ctl1Error):
    def __init__(self, detail: str) -> None:
        super().__init__("bad_checksum", detail)


class Truncated(Ctl1Error):
    def __init__(self, detail: str) -> None:
        super().__init__("truncated", detail)


class Noise(Ctl1Error):
    def __init__(self, detail: str) -> None:
        super().__init__("noise", detail)


class Malformed(Ctl1Error):
    """Checksum good but the body makes no sense (unknown frame, bad number, bad timestamp)."""

    def __init__(self, detail: str) -> None:
        super().__init__("malformed", detail)


@dataclass(frozen=True, slots=True)
class Header:
    device_id: str
    count: int
    interval_s: int | None = None
    fw: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    index: int  # 1-based position in the logger's memory
    ts: int  # epoch ms UTC
    temp_c: float


@dataclass(frozen=True, slots=True)
class End:
    count: int


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # DUMP | LIVE | STOP


Frame = Header | Record | End | Command
COMMANDS = ("DUMP", "LIVE", "STOP")


def checksum(body: str | bytes) -> str:
    """XOR of the bytes of BODY as two upper-case hex digits."""
    data = body.encode("ascii") if isinstance(body, str) else body
    x = 0
    for b in data:
        x ^= b
    return f"{x:02X}"


def frame_line(body: str) -> bytes:
    """BODY -> ``$BODY*HH\\r\\n``."""
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def format_ts(ts_ms: int) -> str:
    """Seconds precision when the time is whole seconds (as loggers print it), milliseconds otherwise."""
    dt = datetime.fromtimestamp(ts_ms // 1000, tz=UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}Z" if ts_ms % 1000 == 0 else f"{base}.{ts_ms % 1000:03d}Z"


def encode(frame: Frame) -> bytes:
    if isinstance(frame, Record):
        return frame_line(f"R,{frame.index},{format_ts(frame.ts)},{frame.temp_c:.2f}")
    if isinstance(frame, Header):
        parts = [f"HDR,{frame.device_id}"]
        if frame.fw is not None:
            parts.append(f"fw={frame.fw}")
        if frame.interval_s is not None:
            parts.append(f"interval={frame.interval_s}")
        parts.append(f"count={frame.count}")
        parts.extend(f"{k}={v}" for k, v in frame.extra.items())
        return frame_line(",".join(parts))
    if isinstance(frame, End):
        return frame_line(f"END,{frame.count}")
    if isinstance(frame, Command):
        if frame.name not in COMMANDS:
            raise ValueError(f"unknown CTL1 command {frame.name!r}")
        return frame_line(frame.name)
    raise TypeError(f"not a CTL1 frame: {frame!r}")


def _int(text: str, what: str) -> int:
    if not text.isdigit():
        raise Malformed(f"{what} is not a non-negative integer: {text!r}")
    return int(text)


def decode(line: bytes | str) -> Frame:
    """One candidate line (with or without its CR LF) -> a frame, or a Ctl1Error saying why not."""
    if isinstance(line, str):
        line = line.encode("utf-8", "replace")
    raw = line.rstrip(b"\r\n")
    if not raw:
        raise Truncated("empty line")
    if len(raw) > MAX_LINE:
        raise Noise(f"line of {len(raw)} bytes")
    if raw[0:1] != b"$":
        raise Noise(f"line does not start with '$': {raw[:32]!r}")
    if any(b < 0x20 or b > 0x7E for b in raw):
        # a cut line followed by noise on the same line is still best called noise
        raise Noise(f"non-printable bytes in line: {raw[:32]!r}")
    star = raw.rfind(b"*")
    if star < 0 or len(raw) - star != 3:
        raise Truncated(f"no '*HH' checksum at the end: {raw[:40]!r}")
    body, given = raw[1:star], raw[star + 1 :].decode("ascii")
    if given.upper() != checksum(body):
        if all(c in "0123456789ABCDEFabcdef" for c in given):
            raise BadChecksum(f"checksum {given} != {checksum(body)} for {body[:40]!r}")
        raise Truncated(f"checksum field {given!r} is not hex")
    return _decode_body(body.decode("ascii"))


def _decode_body(body: str) -> Frame:
    fields = body.split(",")
    kind = fields[0]
    if kind == "R":
        if len(fields) != 4:
            raise Malformed(f"record needs 3 fields: {body!r}")
        index = _int(fields[1], "record index")
        try:
            ts = parse_time(fields[2])
        except (ValueError, OverflowError) as exc:
            raise Malformed(f"bad record timestamp {fields[2]!r}: {exc}") from exc
        try:
            temp = float(fields[3])
        except ValueError as exc:
            raise Malformed(f"bad temperature {fields[3]!r}") from exc
        if not math.isfinite(temp):
            raise Malformed(f"temperature is not finite: {fields[3]!r}")
        return Record(index, ts, temp)
    if kind == "HDR":
        if len(fields) < 2 or not fields[1]:
            raise Malformed(f"header without a device id: {body!r}")
        kv: dict[str, str] = {}
        for f in fields[2:]:
            k, sep, v = f.partition("=")
            if not sep:
                raise Malformed(f"header field without '=': {f!r}")
            kv[k] = v
        if "count" not in kv:
            raise Malformed(f"header without count: {body!r}")
        count = _int(kv.pop("count"), "header count")
        interval = kv.pop("interval", None)
        return Header(fields[1], count, None if interval is None else _int(interval, "interval"),
                      kv.pop("fw", None), kv)
    if kind == "END":
        if len(fields) != 2:
            raise Malformed(f"END needs a count: {body!r}")
        return End(_int(fields[1], "END count"))
    if kind in COMMANDS and len(fields) == 1:
        return Command(kind)
    raise Malformed(f"unknown frame {kind!r}")


class LineSplitter:
    """Bytes in, candidate lines out. Pure and incremental: feed it whatever ``read()`` returned.

    Yields ``bytes`` candidates (each starting with ``$``, or a noise fragment) for ``decode``. Bytes before
    the first ``$`` of a line are yielded as one fragment that ``decode`` classifies as noise.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self.max_line = max_line

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            yield from self._split(line.rstrip(b"\r"))
        if len(self._buf) > self.max_line:  # no line end in sight: flush as noise, keep a trailing frame
            cut = self._buf.rfind(b"$")
            cut = cut if cut > 0 and len(self._buf) - cut <= self.max_line else len(self._buf)
            yield bytes(self._buf[:cut])
            del self._buf[:cut]

    @staticmethod
    def _split(line: bytes) -> Iterator[bytes]:
        if not line:
            return
        start = line.find(b"$")
        if start < 0:
            yield line  # all noise
            return
        if start > 0:
            yield line[:start]
        while True:
            nxt = line.find(b"$", start + 1)
            if nxt < 0:
                yield line[start:]
                return
            yield line[start:nxt]  # cut short by the next frame
            start = nxt

    def pending(self) -> int:
        return len(self._buf)


@dataclass
class DumpAssembler:
    """Follows the answer to one or more ``$DUMP``s of the same logger; records are merged by index.

    Merging across re-asks means a record lost to noise in one attempt is taken from the next one.
    """

    header: Header | None = None
    records: dict[int, Record] = field(default_factory=dict)
    end: End | None = None

    def start_attempt(self) -> None:
        self.end = None

    def feed(self, frame: Frame) -> bool:
        """Take one frame; True when the frame belongs to the dump (records before any header do not)."""
        if isinstance(frame, Header):
            if self.header is not None and self.header.device_id != frame.device_id:
                self.records.clear()  # another logger was docked: start over
            self.header = frame
            self.end = None
            return True
        if self.header is None:
            return False
        if isinstance(frame, Record):
            if 1 <= frame.index <= self.header.count:
                self.records[frame.index] = frame
                return True
            return False
        if isinstance(frame, End):
            self.end = frame
            return True
        return False

    @property
    def ended(self) -> bool:
        return self.end is not None

    def missing(self) -> int:
        return 0 if self.header is None else self.header.count - len(self.records)

    @property
    def complete(self) -> bool:
        """The END was seen, agrees with the header, and every index 1..count arrived."""
        return (self.header is not None and self.end is not None and self.end.count == self.header.count
                and len(self.records) == self.header.count)

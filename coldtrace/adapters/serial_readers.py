"""Serial readers (pyserial adapter): CTL1 loggers (dump, live) and the SCPI reference thermometer (polling).

Shared by the collector (callback = ``Pipeline.ingest_batches``) and the gateway (callback = its spool), so
it lives in the library, not in either program. Each reader is one thread whose loop owns reconnection: a
port that vanishes (USB cable pulled, symlink removed) or never opened is retried with back-off, forever,
until ``stop()``. Nothing a port sends can crash a reader: bad checksums, truncated lines, binary noise and
malformed answers are counted in ``stats`` and logged, then skipped.

Delivery: the callback receives ``list[Batch]``; if it raises, the same batches are offered again after a
pause (the data is never dropped by the reader while it runs).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import serial

from coldtrace.core import ctl1, scpi
from coldtrace.core.clock import Clock, SystemClock
from coldtrace.core.errors import ConfigError, TransportError
from coldtrace.core.model import Batch, Reading

log = logging.getLogger(__name__)

Deliver = Callable[[list[Batch]], object]
_LOUD = 5  # bad lines logged at WARNING per session; the rest at DEBUG (the counters keep the total)


class SerialPort:
    """Thin pyserial adapter: every pyserial/OS error becomes a TransportError."""

    def __init__(self, path: str, baudrate: int, timeout: float = 0.05) -> None:
        self.path, self.baudrate, self.timeout = path, baudrate, timeout
        self._ser: serial.Serial | None = None

    def open(self) -> None:
        try:
            self._ser = serial.Serial(self.path, self.baudrate, timeout=self.timeout, write_timeout=2)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {self.path}: {exc}") from exc
        try:
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise TransportError(f"{self.path}: {exc}") from exc

    def read(self) -> bytes:
        """What is waiting (at most one timeout's wait); b'' if nothing came."""
        if self._ser is None:
            raise TransportError(f"{self.path} is not open")
        try:
            return self._ser.read(max(1, min(self._ser.in_waiting, 1 << 16)))
        except (serial.SerialException, OSError, TypeError) as exc:
            raise TransportError(f"{self.path} hung up: {exc}") from exc

    def write(self, data: bytes) -> None:
        if self._ser is None:
            raise TransportError(f"{self.path} is not open")
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"cannot write to {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
            self._ser = None


@dataclass
class InstrumentConfig:
    """One instrument of a collector or gateway configuration (a ``[[instruments]]`` table)."""

    kind: str  # "ctl1" | "scpi"
    port: str
    baudrate: int = 0  # 0: the protocol's default (CTL1 115200, SCPI 9600)
    mode: str = "dump"  # ctl1: "dump" (dock station) | "live" (dump to catch up, then stream)
    device_id: str | None = None  # scpi: overrides the id made from *IDN?
    interval_s: float = 1.0  # scpi polling interval
    channel: int = 1
    max_reasks: int = 3
    batch_size: int = 1000
    flush_interval_s: float = 0.2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InstrumentConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown instrument setting(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            cfg = cls(**d)
        except TypeError as exc:
            raise ConfigError(f"instrument needs 'kind' and 'port': {exc}") from exc
        if cfg.kind not in ("ctl1", "scpi"):
            raise ConfigError(f"instrument kind must be 'ctl1' or 'scpi', not {cfg.kind!r}")
        if cfg.kind == "ctl1" and cfg.mode not in ("dump", "live"):
            raise ConfigError(f"ctl1 mode must be 'dump' or 'live', not {cfg.mode!r}")
        if cfg.interval_s <= 0 or cfg.batch_size < 1 or cfg.max_reasks < 0:
            raise ConfigError(f"instrument {cfg.port}: interval_s, batch_size must be > 0, max_reasks >= 0")
        if not cfg.baudrate:
            cfg.baudrate = 115200 if cfg.kind == "ctl1" else 9600
        return cfg


@dataclass
class SerialStats:
    connected: bool = False
    device_id: str | None = None
    opens: int = 0
    open_failures: int = 0
    disconnects: int = 0
    lines: int = 0
    records: int = 0
    delivered: int = 0
    bad_checksum: int = 0
    truncated: int = 0
    noise: int = 0
    malformed: int = 0
    reasks: int = 0
    dumps_complete: int = 0
    dumps_incomplete: int = 0
    live_gaps: int = 0
    polls: int = 0
    timeouts: int = 0
    scpi_errors: int = 0
    deliver_failures: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Hangup(Exception):
    pass


class SerialReader(ABC):
    """Base: a thread owning one port and its reconnection loop."""

    def __init__(self, cfg: InstrumentConfig, deliver: Deliver, *, clock: Clock | None = None,
                 port_factory: Callable[[str, int], SerialPort] = SerialPort,
                 reopen_min_s: float = 0.05, reopen_max_s: float = 2.0) -> None:
        self.cfg = cfg
        self._deliver_cb = deliver
        self.clock = clock or SystemClock()
        self._port_factory = port_factory
        self.reopen_min_s, self.reopen_max_s = reopen_min_s, reopen_max_s
        self.stats = SerialStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loud = 0

    def start(self) -> SerialReader:
        self._thread = threading.Thread(target=self.run, name=f"serial-{self.cfg.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def status(self) -> dict[str, Any]:
        return {"port": self.cfg.port, "kind": self.cfg.kind, **self.stats.as_dict()}

    def run(self) -> None:
        delay = self.reopen_min_s
        while not self._stop.is_set():
            port = self._port_factory(self.cfg.port, self.cfg.baudrate)
            try:
                port.open()
            except TransportError as exc:
                self.stats.open_failures += 1
                if self.stats.open_failures == 1 or self.stats.connected:
                    log.warning("serial %s unavailable (%s); retrying", self.cfg.port, exc)
                self.stats.last_error = str(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self.reopen_max_s)
                continue
            delay = self.reopen_min_s
            self.stats.opens += 1
            self.stats.connected = True
            self._loud = 0
            log.info("serial %s open (%s)", self.cfg.port, self.cfg.kind)
            try:
                self.session(port)
            except (TransportError, _Hangup) as exc:
                self.stats.disconnects += 1
                self.stats.last_error = str(exc)
                log.warning("serial %s lost: %s; will reopen when it returns", self.cfg.port, exc)
            except Exception:  # a reader thread must never die: log and reopen
                self.stats.disconnects += 1
                log.exception("serial %s: unexpected error; reopening", self.cfg.port)
            finally:
                port.close()
                self.stats.connected = False
            self._stop.wait(self.reopen_min_s)

    @abstractmethod
    def session(self, port: SerialPort) -> None:
        """The instrument-specific part (subclasses)."""

    def bad_line(self, code: str, detail: str) -> None:
        counter = code if code in ("bad_checksum", "truncated", "noise", "malformed") else "malformed"
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self._loud += 1
        level = logging.WARNING if self._loud <= _LOUD else logging.DEBUG
        log.log(level, "serial %s: skipped %s line: %s", self.cfg.port, code, detail)

    def deliver(self, batches: list[Batch]) -> None:
        """Hand batches to the callback; retried until it succeeds or the reader stops."""
        batches = [b for b in batches if b.readings]
        if not batches:
            return
        pause = 0.1
        while True:
            try:
                self._deliver_cb(batches)
            except Exception as exc:
                self.stats.deliver_failures += 1
                log.warning("serial %s: delivery failed (%s); retrying", self.cfg.port, exc)
                if self._stop.wait(pause):
                    log.error("serial %s: stopping with %d readings undelivered", self.cfg.port,
                              sum(len(b.readings) for b in batches))
                    return
                pause = min(pause * 2, 5.0)
                continue
            self.stats.delivered += sum(len(b.readings) for b in batches)
            return


class Ctl1Reader(SerialReader):
    """CTL1 logger. Dock mode ("dump"): ``$DUMP`` on every connect, re-asked (bounded) while records are
    missing or the END disagrees with the header; then the port is watched for the logger being unplugged.

    Live mode: ``$STOP``, ``$LIVE``, then ``$DUMP`` while the stream runs, so every record is either in the
    dump (index <= its count) or streamed after it: nothing falls between the two. A gap in live indices
    (a line lost to noise) asks for another dump, from which only the missing records are taken.
    """

    first_timeout_s = 5.0  # wait for the header of a dump (slow devices)
    idle_timeout_s = 2.0  # no dump line for this long: the attempt is over
    early_cap = 100_000  # records seen before any header, kept until the header names the logger
    resync_min_s = 5.0  # live: silence of max(2 intervals, this) after a record asks a reconciling dump

    def session(self, port: SerialPort) -> None:
        self._splitter = ctl1.LineSplitter()
        self._port = port
        self._live = self.cfg.mode == "live"
        self._device: str | None = None
        self._count = 0  # count of the latest header
        self._high = 0  # highest index received
        self._sent: set[int] = set()
        self._missing: set[int] = set()
        self._early: list[ctl1.Record] = []
        self._pending: list[ctl1.Record] = []
        self._asm: ctl1.DumpAssembler | None = None
        self._interval_s = 0
        self._last_record = time.monotonic()
        self._unreconciled = False  # live records came since the last dump: a lost tail would go unseen
        port.write(ctl1.encode(ctl1.Command("STOP")))
        if self._live:
            port.write(ctl1.encode(ctl1.Command("LIVE")))
        self._start_dump()
        flushed = time.monotonic()
        try:
            while not self.stopping:
                for f in self._frames(port):
                    self._on_frame(f)
                now = time.monotonic()
                if self._asm is not None and now - self._dump_last > self._dump_timeout:
                    self._end_attempt()
                elif (self._live and self._asm is None and self._unreconciled
                      and now - self._last_record > max(2 * self._interval_s, self.resync_min_s)):
                    log.info("serial %s: live stream of %s silent; dumping to reconcile", self.cfg.port,
                             self._device)
                    self._start_dump()
                if self._pending and (len(self._pending) >= self.cfg.batch_size
                                      or now - flushed >= self.cfg.flush_interval_s):
                    self._flush()
                    flushed = now
        finally:
            self._flush()

    def _frames(self, port: SerialPort) -> list[ctl1.Frame]:
        data = port.read()
        if not data:
            return []
        out = []
        for cand in self._splitter.feed(data):
            self.stats.lines += 1
            try:
                out.append(ctl1.decode(cand))
            except ctl1.Ctl1Error as exc:
                self.bad_line(exc.code, exc.detail)
        return out

    def _start_dump(self, reask: bool = False) -> None:
        if self._asm is None:
            self._asm = ctl1.DumpAssembler()
            self._attempt = 0
        else:
            self._attempt += 1
            self.stats.reasks += 1
            log.warning("serial %s: dump of %s incomplete (%d missing); asking again (%d/%d)",
                        self.cfg.port, self._device or "?", self._asm.missing(), self._attempt,
                        self.cfg.max_reasks)
        self._asm.start_attempt()
        self._unreconciled = False
        self._port.write(ctl1.encode(ctl1.Command("DUMP")))
        self._dump_last = time.monotonic()
        self._dump_timeout = self.first_timeout_s if self._asm.header is None else self.idle_timeout_s

    def _end_attempt(self) -> None:
        asm = self._asm
        assert asm is not None
        self._flush()
        have_all = (asm.header is not None and asm.end is not None and asm.end.count == asm.header.count
                    and all(i in self._sent for i in range(1, asm.header.count + 1)))
        if have_all:
            self.stats.dumps_complete += 1
            self._asm = None
            log.info("serial %s: dump of %s complete (%d records)", self.cfg.port, self._device, self._count)
            return
        if self._attempt < self.cfg.max_reasks:
            self._start_dump(reask=True)
            return
        self._asm = None
        self.stats.dumps_incomplete += 1
        if asm.header is None:
            raise _Hangup("the logger does not answer $DUMP")
        log.warning("serial %s: dump of %s incomplete after %d re-asks: %d of %d records missing (the rest "
                    "delivered)", self.cfg.port, self._device, self.cfg.max_reasks, asm.missing(), self._count)

    def _on_frame(self, f: ctl1.Frame) -> None:
        asm = self._asm
        if isinstance(f, ctl1.Header):
            if asm is None:
                return  # a stale answer to a dump we no longer wait for
            if self._device is not None and f.device_id != self._device:
                self._flush()  # another logger on the same port: start its bookkeeping afresh
                self._sent.clear()
                self._missing.clear()
                self._high = 0
            asm.feed(f)
            self._device = self.stats.device_id = f.device_id
            self._count = f.count
            self._interval_s = f.interval_s or 0
            self._dump_last, self._dump_timeout = time.monotonic(), self.idle_timeout_s
            early, self._early = self._early, []
            for r in early:
                self._on_record(r)
        elif isinstance(f, ctl1.End):
            if asm is not None and asm.feed(f):
                self._end_attempt()
        elif isinstance(f, ctl1.Record):
            self._on_record(f)

    def _on_record(self, r: ctl1.Record) -> None:
        if self._device is None:
            if len(self._early) < self.early_cap:
                self._early.append(r)
            return
        asm = self._asm
        if asm is not None and asm.header is not None and r.index <= asm.header.count:
            asm.feed(r)
            self._dump_last = time.monotonic()
        elif self._live and r.index > max(self._count, self._high) + 1 and (self._high or self._count):
            first = max(self._count, self._high) + 1
            self.stats.live_gaps += 1
            self._missing.update(range(first, r.index))
            log.warning("serial %s: records %d..%d of %s missed; dumping again", self.cfg.port, first,
                        r.index - 1, self._device)
            if self._asm is None:
                self._start_dump()
        elif self._live:
            self._last_record = time.monotonic()
            self._unreconciled = True
        if r.index not in self._sent:
            self._sent.add(r.index)
            self._missing.discard(r.index)
            self._high = max(self._high, r.index)
            self.stats.records += 1
            self._pending.append(r)
            if len(self._pending) >= self.cfg.batch_size:
                self._flush()

    def _flush(self) -> None:
        if self._pending and self._device is not None:
            recs, self._pending = self._pending, []
            device = self._device
            self.deliver([Batch(device, tuple(Reading(device, r.ts, r.temp_c) for r in recs),
                                source="serial")])


class ScpiPoller(SerialReader):
    """Reference thermometer: ``*IDN?`` once per connect, then ``MEAS:TEMP?`` every ``interval_s``.

    A reading is stamped at the midpoint between question and answer (the instrument measures in between).
    """

    answer_timeout_s = 2.0

    def session(self, port: SerialPort) -> None:
        self._buf = bytearray()
        device_id = self.cfg.device_id
        if device_id is None:
            for _ in range(3):
                answer = self._ask(port, scpi.IDN)
                if answer is None:
                    continue
                try:
                    device_id = scpi.parse_idn(answer).device_id
                    break
                except scpi.ScpiError as exc:
                    self.bad_answer(exc)
            if device_id is None:
                raise _Hangup("the reference does not answer *IDN?")
        self.stats.device_id = device_id
        pending: list[Reading] = []
        flushed_at = time.monotonic()
        next_poll = time.monotonic()
        try:
            while not self.stopping:
                t0 = self.clock.now_ms()
                answer = self._ask(port, scpi.meas_temp(self.cfg.channel))
                t1 = self.clock.now_ms()
                self.stats.polls += 1
                if answer is not None:
                    try:
                        pending.append(Reading(device_id, (t0 + t1) // 2, scpi.parse_temperature(answer)))
                        self.stats.records += 1
                    except scpi.ScpiError as exc:
                        self.bad_answer(exc)
                now = time.monotonic()
                if pending and (len(pending) >= self.cfg.batch_size
                                or now - flushed_at >= self.cfg.flush_interval_s):
                    self.deliver([Batch(device_id, tuple(pending), source="serial")])
                    pending, flushed_at = [], now
                next_poll += self.cfg.interval_s
                if next_poll < now:  # fell behind (slow device): skip, never burst
                    next_poll = now + self.cfg.interval_s
                self._stop.wait(max(0.0, next_poll - time.monotonic()))
        finally:
            if pending:
                self.deliver([Batch(device_id, tuple(pending), source="serial")])

    def bad_answer(self, exc: scpi.ScpiError) -> None:
        self.stats.scpi_errors += 1
        self.bad_line("noise" if exc.code == "scpi_noise" else "malformed", f"{exc.code}: {exc.detail}")

    def _ask(self, port: SerialPort, command: str) -> bytes | None:
        self._buf.clear()  # a late answer to an earlier question must not be taken for this one
        port.write(command.encode("ascii") + b"\n")
        deadline = time.monotonic() + self.answer_timeout_s
        while time.monotonic() < deadline and not self.stopping:
            self._buf += port.read()
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl]).rstrip(b"\r")
                del self._buf[: nl + 1]
                self.stats.lines += 1
                return line
            if len(self._buf) > 4096:
                self.bad_line("noise", f"{len(self._buf)} bytes without a line end")
                self._buf.clear()
        self.stats.timeouts += 1
        return None


def build_reader(cfg: InstrumentConfig, deliver: Deliver, *, clock: Clock | None = None,
                 **kw: Any) -> SerialReader:
    cls = Ctl1Reader if cfg.kind == "ctl1" else ScpiPoller
    return cls(cfg, deliver, clock=clock, **kw)


@dataclass
class ReaderGroup:
    """Several readers started and stopped together."""

    readers: list[SerialReader] = field(default_factory=list)

    def start(self) -> None:
        for r in self.readers:
            r.start()

    def stop(self) -> None:
        for r in self.readers:
            r._stop.set()
        for r in self.readers:
            r.stop()

    def status(self) -> list[dict[str, Any]]:
        return [r.status() for r in self.readers]

"""Simulated serial instruments on real pseudo-terminals (os.openpty): CTL1 loggers, a SCPI reference.

Each instrument owns the master side of a pty and publishes the slave at a stable symlink path (like udev's
/dev/serial/by-id/...). ``unplug()`` removes the link and closes the pty (the host's open port sees a
hang-up), ``replug()`` makes a new pty behind the same path: that is what a USB-serial cable being pulled
and pushed back looks like to a reader. Fault injection: binary noise before lines, bad checksums,
truncated lines (``Faults``), a slow device (answer delay, emulated baud rate).
"""

from __future__ import annotations

import logging
import os
import random
import select
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coldtrace.core import ctl1, scpi
from coldtrace.core.model import DAY, Reading

log = logging.getLogger(__name__)

_NOISE_BYTES = bytes(b for b in range(256) if b not in b"$\r\n")


@dataclass
class Faults:
    """Per-line probabilities of damage, with counters of what was actually injected (for exact tests)."""

    noise: float = 0.0
    bad_checksum: float = 0.0
    truncate: float = 0.0
    seed: int = 1
    injected_noise: int = 0
    injected_bad_checksum: int = 0
    injected_truncated: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def noise_bytes(self) -> bytes:
        n = self._rng.randint(1, 8)
        return bytes([self._rng.randint(0x80, 0xFF)]) + bytes(self._rng.choices(_NOISE_BYTES, k=n - 1))

    def damage(self, line: bytes) -> bytes:
        """A framed CTL1 line -> maybe damaged bytes (noise first, then checksum or truncation)."""
        out = line
        if self.bad_checksum and self._rng.random() < self.bad_checksum:
            star = out.rfind(b"*")
            good = int(out[star + 1 : star + 3], 16)
            out = out[: star + 1] + f"{good ^ self._rng.randint(1, 255):02X}".encode() + b"\r\n"
            self.injected_bad_checksum += 1
        elif self.truncate and self._rng.random() < self.truncate:
            star = out.rfind(b"*")
            out = out[: self._rng.randint(1, star)] + b"\r\n"  # bytes lost in the UART; the line end survives
            self.injected_truncated += 1
        if self.noise and self._rng.random() < self.noise:
            out = self.noise_bytes() + out
            self.injected_noise += 1
        return out


class PtyLink:
    """A pty whose slave is reachable at ``path`` (a symlink when ``link`` is given)."""

    def __init__(self, link: str | Path | None = None) -> None:
        self.link = Path(link) if link else None
        self.master: int | None = None
        self._slave: int | None = None
        self.slave_name: str | None = None

    @property
    def path(self) -> str:
        return str(self.link) if self.link else (self.slave_name or "")

    def open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: bytes go through as sent
        os.set_blocking(master, False)
        self.master, self._slave, self.slave_name = master, slave, os.ttyname(slave)
        if self.link:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.slave_name)
            os.replace(tmp, self.link)

    def close(self) -> None:
        if self.link:
            self.link.unlink(missing_ok=True)
        for fd in (self.master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self._slave = None


class SerialInstrument(ABC):
    """Base: a thread answering commands on the pty master; subclasses implement ``on_line`` and ``tick``."""

    def __init__(self, link: str | Path | None = None, *, baud: int | None = None,
                 response_delay_s: float = 0.0, faults: Faults | None = None) -> None:
        self.link = PtyLink(link)
        self.baud = baud  # emulate the line speed (bytes/s = baud/10); None: as fast as the pty goes
        self.response_delay_s = response_delay_s
        self.faults = faults or Faults()
        self.lock = threading.RLock()
        self._out = bytearray()
        self._in = bytearray()
        self._pending: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tokens = 0.0
        self._last_refill = time.monotonic()
        self.commands_seen: list[str] = []

    @property
    def path(self) -> str:
        return self.link.path

    def start(self) -> SerialInstrument:
        self.link.open()
        self._thread = threading.Thread(target=self._run, name=f"sim-{type(self).__name__}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        with self.lock:
            self.link.close()

    def __enter__(self) -> SerialInstrument:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def unplug(self) -> None:
        """The cable is pulled: the path disappears and the host's open port hangs up."""
        with self.lock:
            self.link.close()
            self._out.clear()
            self._in.clear()
            self._pending.clear()
            self.on_unplug()

    def replug(self) -> None:
        with self.lock:
            self.link.open()

    def send(self, data: bytes) -> None:
        with self.lock:
            self._out += data

    def pending_output(self) -> int:
        with self.lock:
            return len(self._out)

    # --- subclass hooks ---
    terminator = b"\n"

    @abstractmethod
    def on_command(self, line: str) -> None:
        """The instrument-specific part (subclasses)."""

    def tick(self, now: float) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called every loop turn (a few ms) with time.monotonic()."""

    def on_unplug(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Forget transient state (a dump in progress, live mode)."""

    # --- loop ---
    def _run(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                fd = self.link.master
                want_write = bool(self._out) and self._budget() > 0
            if fd is None:
                time.sleep(0.005)
                continue
            try:
                r, w, _ = select.select([fd], [fd] if want_write else [], [], 0.003)
            except (OSError, ValueError):
                continue  # unplugged under our feet
            with self.lock:
                if fd != self.link.master:
                    continue
                if r:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:
                        data = b""
                    self._take_input(data)
                if w:
                    self._write(fd)
                now = time.monotonic()
                due = [c for c in self._pending if c[0] <= now]
                if due:
                    self._pending = [c for c in self._pending if c[0] > now]
                    for _, cmd in due:
                        self.on_command(cmd)
                self.tick(now)

    def _take_input(self, data: bytes) -> None:
        self._in += data
        while True:
            nl = self._in.find(self.terminator)
            if nl < 0:
                break
            line = bytes(self._in[:nl]).strip(b"\r\n \x00").decode("ascii", "replace")
            del self._in[: nl + 1]
            if line:
                self.commands_seen.append(line)
                self._pending.append((time.monotonic() + self.response_delay_s, line))
        if len(self._in) > 4096:
            self._in.clear()

    def _budget(self) -> int:
        if not self.baud:
            return 1 << 16
        now = time.monotonic()
        self._tokens = min(self._tokens + (now - self._last_refill) * self.baud / 10, 256.0)
        self._last_refill = now
        return int(self._tokens)

    def _write(self, fd: int) -> None:
        n = min(len(self._out), self._budget())
        if n <= 0:
            return
        try:
            sent = os.write(fd, bytes(self._out[:n]))
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()
            return
        del self._out[:sent]
        if self.baud:
            self._tokens -= sent


class Ctl1Logger(SerialInstrument):
    """A data logger speaking CTL1, with a memory of readings and a live mode.

    The recorded value is ``true_temp(ts) + offset_c + drift_c_per_day * days since drift_epoch + noise``,
    so the same class is the logger under test of a calibration bench (``logger_under_test``).
    New samples are taken every ``sample_period_s`` of wall time (if set), stamped with the wall clock,
    appended to memory and, in live mode, sent as they are taken.
    """

    terminator = b"\n"

    def __init__(self, link: str | Path | None = None, device_id: str = "LOG-0001", *, records: int = 0,
                 interval_s: int = 300, true_temp: Callable[[int], float] | None = None,
                 offset_c: float = 0.0, drift_c_per_day: float = 0.0, noise_sd: float = 0.0,
                 sample_period_s: float | None = None, fw: str = "1.4.2", end_ts: int | None = None,
                 seed: int = 7, **kw) -> None:
        super().__init__(link, **kw)
        self.device_id = device_id
        self.interval_s = interval_s
        self.fw = fw
        self.true_temp = true_temp or (lambda ts: 5.0 + 0.5 * ((ts // 60_000) % 7) / 7)
        self.offset_c, self.drift_c_per_day, self.noise_sd = offset_c, drift_c_per_day, noise_sd
        self._rng = random.Random(seed)
        end = end_ts if end_ts is not None else time.time_ns() // 1_000_000
        end -= end % 1000
        self.drift_epoch = end - records * interval_s * 1000
        self.memory: list[tuple[int, float]] = []
        for i in range(records):
            self._record(self.drift_epoch + (i + 1) * interval_s * 1000)
        self.sample_period_s = sample_period_s
        self._next_sample = time.monotonic() + (sample_period_s or 0)
        self.sampling = sample_period_s is not None
        self.live = False
        self.dumps = 0

    def _record(self, ts: int) -> None:
        v = self.true_temp(ts) + self.offset_c + self.drift_c_per_day * (ts - self.drift_epoch) / DAY
        if self.noise_sd:
            v += self._rng.gauss(0, self.noise_sd)
        self.memory.append((ts, round(v, 2)))

    def readings(self) -> list[Reading]:
        with self.lock:
            return [Reading(self.device_id, ts, t) for ts, t in self.memory]

    def stop_sampling(self) -> None:
        with self.lock:
            self.sampling = False

    def _line(self, frame: ctl1.Frame) -> bytes:
        return self.faults.damage(ctl1.encode(frame))

    def on_command(self, line: str) -> None:
        try:
            frame = ctl1.decode(line.encode())
        except ctl1.Ctl1Error:
            return  # a real logger ignores what it cannot read
        if not isinstance(frame, ctl1.Command):
            return
        if frame.name == "DUMP":  # live mode, if on, continues: new samples are streamed after the dump
            self.dumps += 1
            n = len(self.memory)
            out = [self._line(ctl1.Header(self.device_id, n, self.interval_s, self.fw))]
            out += [self._line(ctl1.Record(i + 1, ts, t)) for i, (ts, t) in enumerate(self.memory)]
            out.append(self._line(ctl1.End(n)))
            self._out += b"".join(out)
        elif frame.name == "LIVE":
            self.live = True
        elif frame.name == "STOP":
            self.live = False

    def on_unplug(self) -> None:  # noqa: B027 - an optional hook, empty by default
        self.live = False

    def tick(self, now: float) -> None:  # noqa: B027 - an optional hook, empty by default
        if not (self.sampling and self.sample_period_s):
            return
        taken = 0
        while now >= self._next_sample and taken < 1000:
            last = self.memory[-1][0] if self.memory else 0
            self._record(max(time.time_ns() // 1_000_000, last + 1))
            self._next_sample += self.sample_period_s
            taken += 1
            if self.live:
                ts, t = self.memory[-1]
                self._out += self._line(ctl1.Record(len(self.memory), ts, t))


def logger_under_test(link: str | Path | None = None, device_id: str = "DUT-0001", *, offset_c: float = 0.15,
                      drift_c_per_day: float = 0.002, noise_sd: float = 0.02, **kw) -> Ctl1Logger:
    """A CTL1 logger whose error against the truth is an offset plus a linear drift (calibration benches)."""
    return Ctl1Logger(link, device_id, offset_c=offset_c, drift_c_per_day=drift_c_per_day,
                      noise_sd=noise_sd, **kw)


class ScpiThermometer(SerialInstrument):
    """A reference thermometer (PRT + readout) answering the SCPI subset of PROTOCOLS.md, with its noise."""

    def __init__(self, link: str | Path | None = None, *, model: str = "REF-1524", serial: str = "SN0001",
                 true_temp: Callable[[float], float] | None = None, noise_sd: float = 0.002,
                 seed: int = 11, **kw) -> None:
        super().__init__(link, **kw)
        self.model, self.serial = model, serial
        self.true_temp = true_temp or (lambda t: 5.0)
        self.noise_sd = noise_sd
        self._rng = random.Random(seed)
        self.errors: list[tuple[int, str]] = []
        self.measurements = 0
        self.overrange = False  # True: the probe is open (answers +9.9E+37)

    def _answer(self, text: str) -> None:
        line = text.encode() + b"\n"
        if self.faults.noise and self.faults._rng.random() < self.faults.noise:
            line = self.faults.noise_bytes() + line
            self.faults.injected_noise += 1
        self._out += line

    def on_command(self, line: str) -> None:
        cmd = line.strip().upper()
        if cmd == "*IDN?":
            self._answer(f"COLDTRACE-SIM,{self.model},{self.serial},1.0")
        elif cmd.startswith("MEAS:TEMP?"):
            self.measurements += 1
            if self.overrange:
                self._answer("+9.9E+37")
                return
            value = self.true_temp(time.time()) + self._rng.gauss(0, self.noise_sd)
            self._answer(scpi.format_temperature(value))
        elif cmd == "SYST:ERR?":
            code, msg = self.errors.pop(0) if self.errors else (0, "No error")
            self._answer(f'{code},"{msg}"')
        elif cmd in ("*RST", "*CLS"):
            self.errors.clear()
        else:
            self.errors.append((-113, "Undefined header"))


def main(argv: list[str] | None = None) -> int:
    """Run simulated instruments until Ctrl-C: ``python -m firmware_sim.serial_instruments --help``."""
    import argparse

    p = argparse.ArgumentParser(description="Simulated CTL1 loggers and a SCPI reference on ptys")
    p.add_argument("--ctl1", action="append", default=[], help="symlink path of a CTL1 logger (repeatable)")
    p.add_argument("--records", type=int, default=1000, help="readings in each logger's memory")
    p.add_argument("--sample-period", type=float, default=None, help="seconds between new samples")
    p.add_argument("--scpi", default=None, help="symlink path of a SCPI reference thermometer")
    p.add_argument("--baud", type=int, default=None, help="emulate this line speed")
    p.add_argument("--prefix", default="LOG", help="device ids are PREFIX-0001, PREFIX-0002...")
    a = p.parse_args(argv)
    sims: list[SerialInstrument] = [
        Ctl1Logger(path, f"{a.prefix}-{i + 1:04d}", records=a.records, sample_period_s=a.sample_period,
                   baud=a.baud) for i, path in enumerate(a.ctl1)]
    if a.scpi:
        sims.append(ScpiThermometer(a.scpi, baud=a.baud))
    for s in sims:
        s.start()
        print(f"{type(s).__name__} at {s.path} -> {s.link.slave_name}", flush=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for s in sims:
            s.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

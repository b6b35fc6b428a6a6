"""Serial readers against simulated instruments on real pseudo-terminals."""

from __future__ import annotations

import threading
import time

import pytest

from coldtrace.adapters.serial_readers import Ctl1Reader, InstrumentConfig, ScpiPoller
from coldtrace.core.model import Batch
from firmware_sim.serial_instruments import Ctl1Logger, Faults, ScpiThermometer

pytestmark = pytest.mark.integration


class Sink:
    """The reader's callback: collects batches (a stand-in for the pipeline or the gateway spool)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.lock = threading.Lock()

    def __call__(self, batches: list[Batch]) -> None:
        with self.lock:
            self.batches.extend(batches)

    def readings(self):
        with self.lock:
            return [r for b in self.batches for r in b.readings]

    def keys(self):
        return {(r.device_id, r.ts) for r in self.readings()}


def wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def reader_factory():
    readers = []

    def make(cls, cfg, sink, **kw):
        r = cls(cfg, sink, reopen_min_s=0.02, reopen_max_s=0.2, **kw)
        readers.append(r)
        return r.start()

    yield make
    for r in readers:
        r.stop()


def test_dump_of_10000_records_arrives_complete(tmp_path, reader_factory):
    link = tmp_path / "ttyCT0"
    with Ctl1Logger(link, "LOG-0001", records=10_000) as sim:
        sink = Sink()
        reader = reader_factory(Ctl1Reader, InstrumentConfig("ctl1", str(link)), sink)
        wait_for(lambda: reader.stats.dumps_complete == 1, what="complete dump")
        got = sink.readings()
        expected = sim.readings()
        assert len(got) == 10_000
        assert sorted(got, key=lambda r: r.ts) == expected  # every value, every timestamp, once
        assert all(b.source == "serial" and b.device_id == "LOG-0001" for b in sink.batches)
        assert reader.stats.reasks == 0 and reader.stats.bad_checksum == 0
        assert sim.dumps == 1


def test_noise_bad_checksums_and_truncation_are_counted_and_skipped(tmp_path, reader_factory):
    link = tmp_path / "ttyCT1"
    faults = Faults(noise=0.02, bad_checksum=0.01, truncate=0.01, seed=3)
    with Ctl1Logger(link, "LOG-0002", records=3000, faults=faults) as sim:
        sink = Sink()
        reader = reader_factory(Ctl1Reader, InstrumentConfig("ctl1", str(link), max_reasks=5), sink)
        wait_for(lambda: reader.stats.dumps_complete == 1, what="dump completed through re-asks")
        st = reader.stats
        assert faults.injected_bad_checksum > 0 and faults.injected_noise > 0 and faults.injected_truncated > 0
        assert st.bad_checksum == faults.injected_bad_checksum
        assert st.noise == faults.injected_noise
        assert st.truncated == faults.injected_truncated
        assert st.reasks >= 1 and sim.dumps == st.reasks + 1
        assert sink.keys() == {(r.device_id, r.ts) for r in sim.readings()}
        assert len(sink.readings()) == 3000  # re-asks add nothing twice
        assert sorted(sink.readings(), key=lambda r: r.ts) == sim.readings()


def test_unplugged_and_replugged_port_resumes(tmp_path, reader_factory):
    link = tmp_path / "ttyCT2"
    sim = Ctl1Logger(link, "LOG-0003", records=50, sample_period_s=0.01).start()
    try:
        sink = Sink()
        reader = reader_factory(Ctl1Reader, InstrumentConfig("ctl1", str(link), mode="live"), sink)
        wait_for(lambda: reader.stats.dumps_complete == 1 and len(sink.readings()) > 80, what="live data")
        sim.unplug()
        assert not link.exists()
        wait_for(lambda: reader.stats.disconnects == 1 and not reader.stats.connected, what="hang-up seen")
        # the port stays away until the reader has tried to reopen it at least twice (it keeps retrying)
        wait_for(lambda: reader.stats.open_failures >= 2, what="reopen attempts while the port is away")
        sim.replug()
        wait_for(lambda: reader.stats.opens == 2 and reader.stats.dumps_complete == 2, what="reopen + dump")
        time.sleep(0.2)
        sim.stop_sampling()
        expected = {(r.device_id, r.ts) for r in sim.readings()}
        wait_for(lambda: sink.keys() == expected, what="every reading after the replug")
        # a new session dumps the whole memory again: duplicates are harmless (the store is idempotent)
        assert len(sink.readings()) >= len(expected)
    finally:
        sim.stop()


def test_live_stream_has_no_gap_between_dump_and_live(tmp_path, reader_factory):
    link = tmp_path / "ttyCT3"
    with Ctl1Logger(link, "LOG-0004", records=2000, sample_period_s=0.002, baud=2_000_000) as sim:
        sink = Sink()
        reader = reader_factory(Ctl1Reader, InstrumentConfig("ctl1", str(link), mode="live"), sink)
        wait_for(lambda: reader.stats.dumps_complete == 1, what="dump")
        time.sleep(0.3)
        sim.stop_sampling()
        expected = {(r.device_id, r.ts) for r in sim.readings()}
        assert len(expected) > 2000
        wait_for(lambda: sink.keys() == expected, what="dump + live stream complete")
        assert reader.stats.live_gaps == 0


def test_live_line_lost_to_noise_is_recovered_by_a_new_dump(tmp_path, reader_factory):
    link = tmp_path / "ttyCT4"
    faults = Faults(bad_checksum=0.05, seed=5)
    with Ctl1Logger(link, "LOG-0005", records=200, interval_s=0, sample_period_s=0.005, faults=faults) as sim:
        sink = Sink()
        reader = reader_factory(Ctl1Reader, InstrumentConfig("ctl1", str(link), mode="live", max_reasks=8),
                                sink)
        reader.resync_min_s = 0.5  # a lost last line is found by the reconciling dump after a silence
        wait_for(lambda: reader.stats.live_gaps >= 1, what="a live gap")
        time.sleep(0.2)
        sim.stop_sampling()
        expected = {(r.device_id, r.ts) for r in sim.readings()}
        wait_for(lambda: sink.keys() == expected, timeout=30, what="gaps repaired")
        assert reader.stats.bad_checksum == faults.injected_bad_checksum
        assert reader.stats.dumps_complete >= 2  # the first dump, then the repair


def test_slow_device_still_dumps(tmp_path, reader_factory):
    link = tmp_path / "ttyCT5"
    with Ctl1Logger(link, "LOG-0006", records=300, baud=115200, response_delay_s=0.5) as sim:
        sink = Sink()
        reader = reader_factory(Ctl1Reader, InstrumentConfig("ctl1", str(link)), sink)
        wait_for(lambda: reader.stats.dumps_complete == 1, what="slow dump")
        assert sorted(sink.readings(), key=lambda r: r.ts) == sim.readings()


def test_scpi_reference_polling_with_noise_and_vanishing(tmp_path, reader_factory):
    link = tmp_path / "ttyREF0"
    faults = Faults(noise=0.1, seed=9)
    sim = ScpiThermometer(link, true_temp=lambda t: -20.0, faults=faults).start()
    try:
        sink = Sink()
        cfg = InstrumentConfig("scpi", str(link), interval_s=0.01, flush_interval_s=0.05)
        reader = reader_factory(ScpiPoller, cfg, sink)
        wait_for(lambda: len(sink.readings()) >= 30, what="reference readings")
        assert reader.stats.device_id == "REF-1524-SN0001"
        got = sink.readings()
        assert all(r.device_id == "REF-1524-SN0001" for r in got)
        assert all(abs(r.temp_c + 20.0) < 0.02 for r in got)  # the reference's noise is small
        ts = [r.ts for r in got]
        assert ts == sorted(ts)
        wait_for(lambda: reader.stats.noise >= 1, what="a noisy answer counted")
        sim.unplug()
        wait_for(lambda: reader.stats.disconnects >= 1, what="hang-up")
        n = len(sink.readings())
        sim.replug()
        wait_for(lambda: len(sink.readings()) > n + 10 and reader.stats.opens >= 2, what="polling resumes")
        sim.overrange = True
        errs = reader.stats.scpi_errors
        wait_for(lambda: reader.stats.scpi_errors > errs + 3, what="overrange answers counted")
    finally:
        sim.stop()


def test_reader_survives_arbitrary_bytes_and_a_failing_callback(tmp_path, reader_factory):
    link = tmp_path / "ttyCT6"
    calls = {"n": 0}
    sink = Sink()

    def flaky(batches):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("store is down")
        sink(batches)

    with Ctl1Logger(link, "LOG-0007", records=100) as sim:
        reader = reader_factory(Ctl1Reader, InstrumentConfig("ctl1", str(link)), flaky)
        wait_for(lambda: reader.stats.dumps_complete == 1 and len(sink.readings()) == 100, what="dump")
        assert reader.stats.deliver_failures == 2
        sim.send(bytes(range(256)) * 20 + b"\n$$$$***\r\n" + b"\x00" * 5000 + b"$R,1,2026-11-26T10:00:00Z,4*")
        wait_for(lambda: reader.stats.noise + reader.stats.truncated + reader.stats.malformed >= 3,
                 what="garbage counted")
        assert reader.stats.connected and reader.stats.disconnects == 0
        assert len(sink.readings()) == 100

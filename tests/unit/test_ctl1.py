"""CTL1 line codec and SCPI answer parsing: pure, no ports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldtrace.core import ctl1, scpi
from coldtrace.core.clock import parse_time
from coldtrace.core.ctl1 import Command, DumpAssembler, End, Header, LineSplitter, Record


def test_checksum_matches_nmea_xor():
    body = "HDR,LOG-0001,fw=1.4.2,interval=300,count=3"
    x = 0
    for ch in body.encode():
        x ^= ch
    assert ctl1.checksum(body) == f"{x:02X}"
    assert ctl1.frame_line("DUMP") == f"$DUMP*{ctl1.checksum('DUMP')}\r\n".encode()


def test_protocol_example_lines_decode():
    hdr = ctl1.decode(ctl1.frame_line("HDR,LOG-0001,fw=1.4.2,interval=300,count=3"))
    assert hdr == Header("LOG-0001", 3, 300, "1.4.2", {})
    rec = ctl1.decode(ctl1.frame_line("R,1,2026-11-26T10:00:00Z,4.52"))
    assert rec == Record(1, parse_time("2026-11-26T10:00:00Z"), 4.52)
    assert ctl1.decode(ctl1.frame_line("END,3")) == End(3)
    for name in ("DUMP", "LIVE", "STOP"):
        assert ctl1.decode(ctl1.frame_line(name)) == Command(name)


def test_checksum_is_case_insensitive_on_input():
    body = "R,7,2026-11-26T10:00:00Z,-20.10"
    line = f"${body}*{ctl1.checksum(body).lower()}\r\n"
    assert ctl1.decode(line) == Record(7, parse_time("2026-11-26T10:00:00Z"), -20.10)


@given(st.integers(1, 10**6), st.integers(0, 4_102_444_800_000),
       st.floats(-200, 100, allow_nan=False).map(lambda v: round(v, 2)))
def test_record_round_trip(index, ts, temp):
    out = ctl1.decode(ctl1.encode(Record(index, ts, temp)))
    assert out == Record(index, ts, temp)


def test_header_round_trip_keeps_extra_fields():
    h = Header("LOG-9", 10_000, 60, "2.0", {"model": "CT-5"})
    assert ctl1.decode(ctl1.encode(h)) == h


@pytest.mark.parametrize(("line", "code"), [
    (b"$R,1,2026-11-26T10:00:00Z,4.52*00\r\n", "bad_checksum"),
    (b"$R,1,2026-11-26T10:0", "truncated"),
    (b"$R,1,2026-11-26T10:00:00Z,4.52*5", "truncated"),
    (b"\x00\xff\x13garbage", "noise"),
    (b"$R,1,2026\xff-11*00", "noise"),
    (b"", "truncated"),
    (b"$" + b"A" * 600, "noise"),
    (ctl1.frame_line("R,1,yesterday,4.5"), "malformed"),
    (ctl1.frame_line("R,1,2026-11-26T10:00:00Z,nan"), "malformed"),
    (ctl1.frame_line("R,-1,2026-11-26T10:00:00Z,4.5"), "malformed"),
    (ctl1.frame_line("R,1,2026-11-26T10:00:00,4.5"), "malformed"),  # no UTC offset
    (ctl1.frame_line("HDR,LOG-1,fw=1"), "malformed"),
    (ctl1.frame_line("XYZ,1"), "malformed"),
])
def test_bad_lines_raise_typed_errors(line, code):
    with pytest.raises(ctl1.Ctl1Error) as info:
        ctl1.decode(line)
    assert info.value.code == code


@given(st.binary(max_size=200))
def test_decode_never_raises_anything_but_ctl1_errors(data):
    splitter = LineSplitter()
    for cand in splitter.feed(data):
        try:
            ctl1.decode(cand)
        except ctl1.Ctl1Error:
            pass


def test_splitter_separates_noise_truncation_and_frames_across_chunks():
    good = ctl1.frame_line("R,2,2026-11-26T10:05:00Z,4.61")
    stream = b"\x07\xfe\x81" + b"$R,1,2026-11-26T1" + good + b"\r\n" + good
    s = LineSplitter()
    out = []
    for i in range(0, len(stream), 5):  # arbitrary chunking
        out.extend(s.feed(stream[i:i + 5]))
    codes = []
    for cand in out:
        try:
            ctl1.decode(cand)
            codes.append("ok")
        except ctl1.Ctl1Error as exc:
            codes.append(exc.code)
    assert codes == ["noise", "truncated", "ok", "ok"]
    assert s.pending() == 0


def test_splitter_bounds_memory_on_endless_noise():
    s = LineSplitter(max_line=64)
    out = list(s.feed(b"\xaa" * 1000))
    assert out and s.pending() <= 64


def test_dump_assembler_merges_reasks_and_checks_count():
    a = DumpAssembler()
    assert not a.feed(Record(1, 0, 1.0))  # before any header: not part of a dump
    a.feed(Header("LOG-1", 3))
    a.feed(Record(1, 0, 1.0))
    a.feed(Record(3, 2, 1.0))
    a.feed(End(3))
    assert a.ended and not a.complete and a.missing() == 1
    a.start_attempt()
    a.feed(Header("LOG-1", 3))
    a.feed(Record(2, 1, 1.0))
    assert not a.complete  # no END yet
    a.feed(End(3))
    assert a.complete and sorted(a.records) == [1, 2, 3]


def test_dump_assembler_end_count_must_agree():
    a = DumpAssembler()
    a.feed(Header("LOG-1", 1))
    a.feed(Record(1, 0, 1.0))
    a.feed(End(2))
    assert not a.complete


def test_dump_assembler_restarts_for_another_logger():
    a = DumpAssembler()
    a.feed(Header("LOG-1", 2))
    a.feed(Record(1, 0, 1.0))
    a.feed(Header("LOG-2", 1))
    assert a.records == {} and a.header.device_id == "LOG-2"
    assert not a.feed(Record(5, 0, 1.0))  # index beyond the count


# --- SCPI -------------------------------------------------------------------------------------------

def test_scpi_answers():
    ident = scpi.parse_idn("COLDTRACE-SIM,REF-1524,SN0001,1.0\n")
    assert ident.device_id == "REF-1524-SN0001"
    assert scpi.parse_temperature("+4.5231E+00\n") == pytest.approx(4.5231)
    assert scpi.parse_temperature(b"-1.9612E+02") == pytest.approx(-196.12)
    assert scpi.parse_error('0,"No error"') == (0, "No error")
    assert scpi.parse_error('-113,"Undefined header"') == (-113, "Undefined header")
    assert scpi.meas_temp(2) == "MEAS:TEMP? (@2)"
    assert scpi.parse_temperature(scpi.format_temperature(-20.04321)) == pytest.approx(-20.043)


@pytest.mark.parametrize(("answer", "code"), [
    ("", "scpi_empty"), ("abc", "scpi_number"), ("+9.9E+37", "scpi_overrange"), ("nan", "scpi_overrange"),
    ("-3.0E+02", "scpi_range"), (b"\xff\xfe", "scpi_noise"), ("4.5\x00", "scpi_noise"),
])
def test_scpi_bad_temperatures(answer, code):
    with pytest.raises(scpi.ScpiError) as info:
        scpi.parse_temperature(answer)
    assert info.value.code == code


def test_scpi_bad_idn():
    with pytest.raises(scpi.ScpiError):
        scpi.parse_idn("ACME,ONLYTWO")
    assert scpi.Identity("A", "M/1", "S N", "1").device_id == "M_1-S_N"

"""Decoding of the native v1 payload and SenML: every rejection code of PROTOCOLS.md."""

from __future__ import annotations

import json

import pytest

from coldtrace.core.payload import DEVICE_ID_RE, MAX_BYTES, parse_payload, valid_device_id

NOW = 1_795_687_500_000  # 2026-11-26T10:05:00Z


def native(**over):
    doc = {"v": 1, "device_id": "LOG-0001", "seq": 7, "battery_pct": 87,
           "readings": [{"ts": "2026-11-26T10:00:00Z", "temp_c": 4.52}, {"ts": 1795687500000, "temp_c": 4.61}]}
    doc.update(over)
    return json.dumps(doc).encode()


def test_native_payload_decodes_both_timestamp_forms():
    r = parse_payload(native(), topic_device_id="LOG-0001", now_ms=NOW)
    assert r.rejections == ()
    b = r.batch
    assert b.device_id == "LOG-0001" and b.seq == 7 and b.battery_pct == 87.0
    assert [(x.ts, x.temp_c) for x in b.readings] == [(1795687200000, 4.52), (1795687500000, 4.61)]


def test_offsets_are_converted_to_utc_with_millisecond_precision():
    doc = native(readings=[{"ts": "2026-11-26T11:00:00.1234+01:00", "temp_c": 5}])
    r = parse_payload(doc, topic_device_id=None, now_ms=NOW)
    assert r.batch.readings[0].ts == 1795687200123


@pytest.mark.parametrize("data,reason", [
    (b"{not json", "bad_json"),
    (b"\xff\xfe\x00", "bad_json"),
    (native(v=2), "unknown_version"),
    (json.dumps({"device_id": "LOG-0001", "readings": []}).encode(), "unknown_version"),
    (native(device_id="LOG-0002"), "device_mismatch"),
    (native(device_id="bad id!"), "schema"),
    (native(readings="nope"), "schema"),
    (b"42", "schema"),
    (b"x" * (MAX_BYTES + 1), "too_large"),
    (native(readings=[{"ts": 1, "temp_c": 1}] * 10_001), "too_large"),
])
def test_whole_message_rejections(data, reason):
    r = parse_payload(data, topic_device_id="LOG-0001", now_ms=NOW)
    assert r.batch is None
    assert [x.reason for x in r.rejections] == [reason]
    assert r.rejections[0].detail


def test_bad_readings_are_rejected_one_by_one_and_the_rest_kept():
    doc = b'{"v":1,"device_id":"LOG-0001","readings":[' \
          b'{"ts":1795687200000,"temp_c":4.5},' \
          b'{"ts":1795687260000,"temp_c":NaN},' \
          b'{"ts":1795687320000,"temp_c":-300},' \
          b'{"ts":1795687380000,"temp_c":"cold"},' \
          b'{"ts":1795697380000,"temp_c":4.0},' \
          b'{"ts":"yesterday","temp_c":4.0},' \
          b'{"temp_c":4.0},' \
          b'{"ts":1795687440000,"temp_c":100}]}'
    r = parse_payload(doc, topic_device_id="LOG-0001", now_ms=NOW)
    assert [(x.ts, x.temp_c) for x in r.batch.readings] == [(1795687200000, 4.5), (1795687440000, 100.0)]
    assert [(x.index, x.reason) for x in r.rejections] == [
        (1, "out_of_range"), (2, "out_of_range"), (3, "schema"), (4, "future_timestamp"), (5, "schema"),
        (6, "schema")]


def test_future_tolerance_is_five_minutes():
    ok = native(readings=[{"ts": NOW + 5 * 60_000, "temp_c": 4}])
    late = native(readings=[{"ts": NOW + 5 * 60_000 + 1, "temp_c": 4}])
    assert parse_payload(ok, topic_device_id=None, now_ms=NOW).rejections == ()
    assert parse_payload(late, topic_device_id=None, now_ms=NOW).rejections[0].reason == "future_timestamp"


def test_unknown_fields_are_ignored():
    r = parse_payload(native(firmware="1.2", extra={"a": 1}), topic_device_id=None, now_ms=NOW)
    assert len(r.batch.readings) == 2


def test_senml_with_base_name_base_time_and_kelvin():
    pack = [{"bn": "urn:dev:id:LOG-0009:", "bt": 1795687200, "bu": "Cel", "bver": 10},
            {"n": "temp", "v": 4.25}, {"n": "temp", "t": 60, "v": 278.15, "u": "K"},
            {"n": "battery", "v": 80, "u": "%"}]
    r = parse_payload(json.dumps(pack).encode(), topic_device_id="LOG-0009", now_ms=NOW)
    assert r.rejections == ()
    assert [(x.ts, x.temp_c) for x in r.batch.readings] == [(1795687200000, 4.25), (1795687260000, 5.0)]


def test_senml_slash_form_and_mismatch():
    pack = [{"bn": "LOG-0003/", "n": "temp", "t": 1795687200, "v": 3.0}]
    r = parse_payload(json.dumps(pack).encode(), topic_device_id=None, now_ms=NOW)
    assert r.batch.device_id == "LOG-0003" and r.batch.readings[0].ts == 1795687200000
    r = parse_payload(json.dumps(pack).encode(), topic_device_id="LOG-0004", now_ms=NOW)
    assert r.batch is None and r.rejections[0].reason == "device_mismatch"


def test_senml_content_type_requires_an_array():
    r = parse_payload(b'{"v":1}', topic_device_id=None, now_ms=NOW, content_type="application/senml+json")
    assert r.batch is None and r.rejections[0].reason == "schema"


# ---- poison isolation and nothing vanishes (issue 12): no input makes the decoder raise ----------------

def _senml(*records) -> bytes:
    return json.dumps(list(records)).encode()


@pytest.mark.parametrize("data,reason", [
    (native(seq=2**63), "out_of_range"),
    (native(seq=-1), "out_of_range"),
    (native(seq=10**30), "out_of_range"),  # orjson reads it as 1e30
    (b'{"v":1,"device_id":"LOG-0001","readings":' + b"[" * 1100 + b"]" * 1100 + b"}", "schema"),
    (b'{"v":1,"device_id":"LOG-0001","x":NaN,"y":' + b"[" * 1100 + b"]" * 1100 + b"}", "schema"),
    (b'[{"bn":"LOG-0001/","bt":NaN,"n":"temp","v":5}]', "out_of_range"),
    (b'[{"bn":"LOG-0001/","bt":-1e400,"n":"temp","v":5}]', "out_of_range"),
    (b'[{"bn":"LOG-0001/","bt":1e400,"n":"temp","v":5}]', "out_of_range"),
    (native(v=True), "unknown_version"),
    (native(v=1.0), "unknown_version"),
    (native(readings=[]), "no_readings"),
    (b"[]", "empty_pack"),
    (_senml({"bn": "LOG-0001/", "bt": 1795687200, "n": "battery", "v": 80, "u": "%"}), "no_temperature"),
])
def test_poison_and_empty_messages_are_rejected_whole_with_their_code(data, reason):
    r = parse_payload(data, topic_device_id="LOG-0001", now_ms=NOW)
    assert r.batch is None and [x.reason for x in r.rejections] == [reason], r.rejections


@pytest.mark.parametrize("reading,reason", [
    ({"ts": NOW - 1000, "temp_c": 10**400}, "out_of_range"),
    ({"ts": NOW - 1000, "temp_c": -(10**400)}, "out_of_range"),
    ({"ts": 10**400, "temp_c": 4.0}, "future_timestamp"),
    ({"ts": -(10**400), "temp_c": 4.0}, "too_old"),
    ({"ts": 0, "temp_c": 4.0}, "too_old"),
    ({"ts": "1999-12-31T23:59:59Z", "temp_c": 4.0}, "too_old"),
])
def test_readings_out_of_any_number_range_are_rejected_one_by_one(reading, reason):
    good = {"ts": NOW - 2000, "temp_c": 4.0}
    for readings in ([reading], [good, reading]):  # the one-reading fast path and the bulk path
        r = parse_payload(native(readings=readings), topic_device_id="LOG-0001", now_ms=NOW)
        assert [x.reason for x in r.rejections] == [reason]
        assert len(r.batch.readings) == len(readings) - 1


def test_senml_kelvin_with_a_400_digit_value_is_out_of_range_and_the_pack_kept():
    data = b'[{"bn":"LOG-0001/","bt":1795687200,"n":"temp","u":"K","v":%s},{"n":"temp","t":60,"v":4.5}]' % (
        b"9" * 400)
    r = parse_payload(data, topic_device_id="LOG-0001", now_ms=NOW)
    assert [(x.index, x.reason) for x in r.rejections] == [(0, "out_of_range")]
    assert [(x.ts, x.temp_c) for x in r.batch.readings] == [(1795687260000, 4.5)]


def test_the_decoder_never_raises_on_a_reading_at_the_edge_of_a_double():
    data = b'[{"bn":"LOG-0001/","bt":1.7e308,"n":"temp","t":1.7e308,"v":4}]'
    r = parse_payload(data, topic_device_id="LOG-0001", now_ms=NOW)
    assert r.rejections and r.rejections[0].reason in ("out_of_range", "future_timestamp")


@pytest.mark.parametrize("device_id", [".", ".."])
def test_a_url_dot_segment_is_not_a_device_id(device_id):
    """/api/v1/devices/.. is /api/v1/ once a browser (or curl, httpx) removes the dot segment: such a device could
    never be opened, so neither id is accepted, in a topic nor in a payload."""
    assert not valid_device_id(device_id)
    r = parse_payload(native(device_id=device_id), topic_device_id=device_id, now_ms=NOW)
    assert r.batch is None and [x.reason for x in r.rejections] == ["schema"]


@pytest.mark.parametrize("device_id", ["...", ".x", "..x", "x.", "x..", "-", "_", "a" * 64, "." + "a" * 63])
def test_ids_with_dots_that_are_not_dot_segments_stay_valid(device_id):
    assert valid_device_id(device_id)
    assert DEVICE_ID_RE.fullmatch(device_id)


@pytest.mark.parametrize("device_id", ["a" * 65, "." + "a" * 64, ".." + "a" * 63, "", "a b", "a/b"])
def test_device_ids_stay_within_64_characters_of_the_set(device_id):
    assert not valid_device_id(device_id)

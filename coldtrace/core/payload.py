"""Decode incoming messages (native JSON v1 or SenML, PROTOCOLS.md) into a Batch and Rejections. Pure.

Every failure has a stable reason code: bad_json, unknown_version, schema, device_mismatch, out_of_range,
future_timestamp, too_old, too_large, empty_pack, no_readings, no_temperature, internal_error (unknown_device
is decided by the pipeline, which knows the registry). No input makes ``parse_payload`` raise: whatever a
message does to the decoder ends as a rejection with a reason (PROTOCOLS.md, "Reason codes").
"""

from __future__ import annotations

import json
import math
import re
from operator import itemgetter
from typing import Any

import orjson

from coldtrace.core.clock import parse_time
from coldtrace.core.model import TEMP_MAX_C, TEMP_MIN_C, Batch, ParseResult, Reading, ReadingColumns, Rejection

MAX_BYTES = 256 * 1024
MAX_READINGS = 10_000
FUTURE_TOLERANCE_MS = 5 * 60_000
# anchored, so that it means the same in Python (fullmatch/match) and as a pydantic Field(pattern=...):
# 1 to 64 of [A-Za-z0-9._-], except "." and "..", which are URL dot segments: a browser (and curl, httpx) removes
# them from /api/v1/devices/{id}/..., so such a device could never be opened on the API or the QA pages. Written
# without a look-ahead, which pydantic's Rust regex does not support.
DEVICE_ID_RE = re.compile(r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}"
                          r"|\.\.[A-Za-z0-9._-]{1,62})$")
MAX_NESTING = 1024  # orjson's depth limit: deeper JSON is refused with reason `schema`
INT64_MAX = 2**63 - 1
TS_FLOOR_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: a reading before it is a logger without a set clock
SENML_CONTENT_TYPE = "application/senml+json"


def _reject(reason: str, detail: str) -> ParseResult:
    return ParseResult(None, (Rejection(reason, detail),))


def valid_device_id(device_id: object) -> bool:
    return isinstance(device_id, str) and DEVICE_ID_RE.fullmatch(device_id) is not None


def claimed_device(data: bytes) -> str | None:
    """The device a message says it is from (native device_id, or the SenML name's device), when it can be
    read and is a valid id; for attributing a message rejected whole. Never raises."""
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            dev = doc.get("device_id")
        elif isinstance(doc, list) and doc and isinstance(doc[0], dict):
            dev = _senml_device(str(doc[0].get("bn", "")) + str(doc[0].get("n", "")))[0]
        else:
            return None
    except Exception:  # noqa: BLE001 - a best effort on any input
        return None
    return dev if valid_device_id(dev) else None


def parse_payload(data: bytes, *, topic_device_id: str | None, now_ms: int,
                  content_type: str | None = None, source: str = "mqtt") -> ParseResult:
    """Bytes of one message -> ParseResult. ``topic_device_id`` is the device the channel says it is from.

    Never raises: an exception while decoding becomes a rejection of the whole message (``schema`` for JSON
    nested too deep, ``out_of_range`` for a number no float or 64-bit integer holds, ``internal_error``
    with the exception's class otherwise), so one message can never stop the ingestion of the others."""
    try:
        return _parse_payload(data, topic_device_id, now_ms, content_type, source)
    except RecursionError:
        return _reject("schema", f"JSON nested deeper than {MAX_NESTING} levels")
    except OverflowError as exc:
        return _reject("out_of_range", f"a number is out of range: {exc}")
    except Exception as exc:  # noqa: BLE001 - the decoder's last line: quarantined with the exception class
        return _reject("internal_error", f"{type(exc).__name__} while decoding: {str(exc)[:300]}")


def _parse_payload(data: bytes, topic_device_id: str | None, now_ms: int, content_type: str | None,
                   source: str) -> ParseResult:
    if len(data) > MAX_BYTES:
        return _reject("too_large", f"message is {len(data)} bytes, the limit is {MAX_BYTES}")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as first:
        if "depth limit" in str(first):
            return _reject("schema", f"JSON nested deeper than {MAX_NESTING} levels")
        try:  # the standard library also reads NaN/Infinity, so such a reading gets its own reason
            doc = json.loads(data)
        except RecursionError:
            return _reject("schema", f"JSON nested deeper than {MAX_NESTING} levels")
        except (UnicodeDecodeError, ValueError) as exc:
            return _reject("bad_json", f"not valid UTF-8 JSON: {exc}")
    if isinstance(doc, list) or (content_type or "").startswith(SENML_CONTENT_TYPE):
        if not isinstance(doc, list):
            return _reject("schema", "SenML must be a JSON array of records")
        return _parse_senml(doc, topic_device_id, now_ms, source)
    if not isinstance(doc, dict):
        return _reject("schema", "expected a JSON object (native v1) or a JSON array (SenML)")
    return _parse_native(doc, topic_device_id, now_ms, source)


def _check_value(temp: Any) -> str | None:
    if isinstance(temp, bool) or not isinstance(temp, int | float):
        return f"temp_c must be a number, got {type(temp).__name__}"
    if isinstance(temp, int):  # exact: no float conversion (a 400-digit integer would overflow one)
        if not TEMP_MIN_C <= temp <= TEMP_MAX_C:
            return f"temp_c {str(temp)[:40]} outside [{TEMP_MIN_C:g}, {TEMP_MAX_C:g}]"
        return None
    if not math.isfinite(temp):
        return "temp_c is not finite"
    if not TEMP_MIN_C <= temp <= TEMP_MAX_C:
        return f"temp_c {temp} outside [{TEMP_MIN_C:g}, {TEMP_MAX_C:g}]"
    return None


def _reading(device_id: str, ts_raw: Any, temp: Any, now_ms: int, index: int,
             rejections: list[Rejection], seq: int | None) -> Reading | None:
    if ts_raw is None:
        rejections.append(Rejection("schema", "reading has no ts", index))
        return None
    try:
        ts = parse_time(ts_raw)
    except (ValueError, TypeError, OverflowError) as exc:
        rejections.append(Rejection("schema", f"bad ts {str(ts_raw)[:40]!r}: {exc}", index))
        return None
    problem = _check_value(temp)
    if problem is not None:
        reason = "schema" if "must be a number" in problem else "out_of_range"
        rejections.append(Rejection(reason, problem, index))
        return None
    if ts > now_ms + FUTURE_TOLERANCE_MS:
        rejections.append(Rejection("future_timestamp",
                                    f"ts is {str((ts - now_ms) // 1000)[:40]} s ahead of the receiver's clock", index))
        return None
    if ts < TS_FLOOR_MS:
        rejections.append(Rejection("too_old", f"ts {str(ts)[:40]} is before 2000-01-01 (a logger whose clock"
                                    " was never set?)", index))
        return None
    return Reading(device_id, ts, float(temp), seq)


_NUMBER_TYPES = frozenset({int, float})
_FLOAT_ONLY = {float}
_GET_TS, _GET_TEMP = itemgetter("ts"), itemgetter("temp_c")


def _fast_readings(device_id: str, items: list[Any], now_ms: int, seq: int | None
                   ) -> tuple[Reading, ...] | ReadingColumns | None:
    """The common case decided in bulk: epoch-ms integer timestamps and finite in-range numbers throughout.
    Anything else (ISO strings, a bad reading) returns None and takes the reading-by-reading path, which
    gives the same result with a reason for each rejection. Many readings come back as columns (no
    ``Reading`` tuple built per reading: model.ReadingColumns)."""
    if not items:
        return ()
    if len(items) == 1:  # the most common message of all: one reading
        d = items[0]
        if type(d) is dict:
            t, v = d.get("ts"), d.get("temp_c")
            if (type(t) is int and type(v) in _NUMBER_TYPES and TEMP_MIN_C <= v <= TEMP_MAX_C
                    and TS_FLOOR_MS <= t <= now_ms + FUTURE_TOLERANCE_MS):
                return (Reading(device_id, t, float(v), seq),)
        return None
    try:
        ts = list(map(_GET_TS, items))  # C getters: no Python frame per reading
        temps = list(map(_GET_TEMP, items))
    except (TypeError, KeyError):
        return None
    if set(map(type, ts)) != {int}:
        return None
    temp_types = set(map(type, temps))
    if not temp_types <= _NUMBER_TYPES:
        return None
    # the range first: a huge integer fails it exactly, before sum() would turn it into a float
    if min(temps) < TEMP_MIN_C or max(temps) > TEMP_MAX_C or not math.isfinite(sum(temps)):
        return None
    if min(ts) < TS_FLOOR_MS or max(ts) > now_ms + FUTURE_TOLERANCE_MS:
        return None
    if temp_types != _FLOAT_ONLY:
        temps = list(map(float, temps))
    return ReadingColumns(device_id, ts, temps, seq)


def _parse_native(doc: dict[str, Any], topic_device_id: str | None, now_ms: int, source: str) -> ParseResult:
    v = doc.get("v")
    if type(v) is not int or v != 1:  # true == 1 and 1.0 == 1 in Python: neither is version 1
        return _reject("unknown_version", f"unknown payload version v={v!r} (this receiver reads v=1)")
    device_id = doc.get("device_id")
    if not valid_device_id(device_id):
        return _reject("schema", "device_id missing or not matching [A-Za-z0-9._-]{1,64}")
    if topic_device_id is not None and device_id != topic_device_id:
        return _reject("device_mismatch", f"payload device_id {device_id!r} != channel device {topic_device_id!r}")
    readings = doc.get("readings")
    if not isinstance(readings, list):
        return _reject("schema", "readings must be an array")
    if not readings:
        return _reject("no_readings", "the message has an empty readings array")
    if len(readings) > MAX_READINGS:
        return _reject("too_large", f"{len(readings)} readings, the limit is {MAX_READINGS}")
    seq = doc.get("seq")
    if isinstance(seq, float) and math.isfinite(seq) and seq.is_integer() and abs(seq) > INT64_MAX:
        # orjson reads an integer literal past 64 bits as a float
        return _reject("out_of_range", f"seq {seq:.0f} outside [0, 2^63 - 1]")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        return _reject("schema", "seq must be an integer")
    if seq is not None and not 0 <= seq <= INT64_MAX:
        return _reject("out_of_range", f"seq {str(seq)[:40]} outside [0, 2^63 - 1]")
    battery = doc.get("battery_pct")
    if battery is not None and (isinstance(battery, bool) or not isinstance(battery, int | float)
                                or not 0 <= battery <= 100):
        return _reject("schema", "battery_pct must be a number in [0, 100]")
    sent_at = None
    if doc.get("sent_at") is not None:
        try:
            sent_at = parse_time(doc["sent_at"])
        except (ValueError, TypeError, OverflowError):
            return _reject("schema", "sent_at is not RFC 3339 or epoch ms")
    fast = _fast_readings(device_id, readings, now_ms, seq)
    if fast is not None:
        batch = Batch(device_id, fast, seq, sent_at, None if battery is None else float(battery), source)
        return ParseResult(batch)
    rejections: list[Rejection] = []
    out: list[Reading] = []
    for i, item in enumerate(readings):
        if not isinstance(item, dict):
            rejections.append(Rejection("schema", "reading must be an object", i))
            continue
        r = _reading(device_id, item.get("ts"), item.get("temp_c"), now_ms, i, rejections, seq)
        if r is not None:
            out.append(r)
    batch = Batch(device_id, tuple(out), seq, sent_at, None if battery is None else float(battery), source)
    return ParseResult(batch, tuple(rejections))


_SENML_PREFIXES = ("urn:dev:id:",)


def _senml_device(name: str) -> tuple[str | None, str]:
    """Split a resolved SenML name into (device_id, record name)."""
    for prefix in _SENML_PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            dev, sep, rec = rest.partition(":")
            return (dev, rec) if sep else (None, name)
    dev, sep, rec = name.partition("/")
    return (dev, rec) if sep else (None, name)


def _finite_number(x: Any) -> bool:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    if isinstance(x, int):
        return abs(x) < 2**53  # exact as a float; larger is no time or temperature a logger sends
    return math.isfinite(x)


def _parse_senml(records: list[Any], topic_device_id: str | None, now_ms: int, source: str) -> ParseResult:
    if not records:
        return _reject("empty_pack", "an empty SenML pack ([])")
    if len(records) > MAX_READINGS:
        return _reject("too_large", f"{len(records)} records, the limit is {MAX_READINGS}")
    bn, bt, bu, bver = "", 0.0, None, None
    rejections: list[Rejection] = []
    out: list[Reading] = []
    device_id: str | None = None
    temperature_records = 0
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            rejections.append(Rejection("schema", "SenML record must be an object", i))
            continue
        if "bver" in rec:
            bver = rec["bver"]
            if type(bver) is not int or bver != 10:
                return _reject("unknown_version", f"unknown SenML version bver={str(bver)[:40]!r}")
        if "bn" in rec:
            bn = str(rec["bn"])
        if "bt" in rec:
            if isinstance(rec["bt"], bool) or not isinstance(rec["bt"], int | float):
                return _reject("schema", "SenML bt must be a number")
            if not _finite_number(rec["bt"]):
                return _reject("out_of_range", f"SenML bt {str(rec['bt'])[:40]} is not a finite time")
            bt = float(rec["bt"])
        if "bu" in rec:
            bu = rec["bu"]
        name = bn + str(rec.get("n", ""))
        dev, rec_name = _senml_device(name)
        if dev is None or not valid_device_id(dev):
            rejections.append(Rejection("schema", f"SenML name {name[:100]!r} names no device", i))
            continue
        if topic_device_id is not None and dev != topic_device_id:
            return _reject("device_mismatch", f"SenML device {dev!r} != channel device {topic_device_id!r}")
        if device_id is None:
            device_id = dev
        elif dev != device_id:
            return _reject("schema", "a SenML pack must describe a single device")
        if rec_name not in ("temp", "temperature"):
            continue  # other measurements of the pack (battery, humidity) are not readings
        temperature_records += 1
        if "v" not in rec:
            rejections.append(Rejection("schema", "SenML temp record has no numeric value v", i))
            continue
        unit = rec.get("u", bu)
        value = rec["v"]
        if unit == "K" and isinstance(value, int | float) and not isinstance(value, bool):
            if not _finite_number(value):
                rejections.append(Rejection("out_of_range", f"SenML v {str(value)[:40]} K is not a temperature", i))
                continue
            value = round(value - 273.15, 6)
        elif unit not in ("Cel", None):
            rejections.append(Rejection("schema", f"unsupported unit {str(unit)[:40]!r} (Cel or K)", i))
            continue
        t = rec.get("t", 0)
        if isinstance(t, bool) or not isinstance(t, int | float):
            rejections.append(Rejection("schema", "SenML t must be a number", i))
            continue
        if not _finite_number(t):
            rejections.append(Rejection("out_of_range", f"SenML t {str(t)[:40]} is not a finite time", i))
            continue
        t_abs = bt + float(t)
        if t_abs < 2**28:  # RFC 8428: small values are relative to now
            t_abs = now_ms / 1000 + t_abs
        r = _reading(dev, int(round(t_abs * 1000)), value, now_ms, i, rejections, None)
        if r is not None:
            out.append(r)
    if device_id is None:
        if topic_device_id is None:
            return ParseResult(None, tuple(rejections) or (Rejection("schema", "empty SenML pack"),))
        device_id = topic_device_id
    if temperature_records == 0 and not rejections:
        return _reject("no_temperature", "the SenML pack has no temperature record (n 'temp' or 'temperature')")
    return ParseResult(Batch(device_id, tuple(out), source=source), tuple(rejections))

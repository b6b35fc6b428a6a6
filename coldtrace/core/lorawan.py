"""LoRaWAN field sensors through their network server's MQTT integration. Pure decoding.

LoRaWAN temperature sensors reach a site through a network server, which decodes each uplink with the
device's payload formatter and publishes it over MQTT:

* The Things Stack v3 (TTN, The Things Industries): topic ``v3/{application id}@{tenant id}/devices/{device
  id}/up``; the decoded fields are in ``uplink_message.decoded_payload``, the frame counter in
  ``uplink_message.f_cnt`` (absent when 0: The Things Stack omits empty fields), the time in
  ``uplink_message.received_at``, the device in ``end_device_ids`` (``device_id``, ``dev_eui``).
* ChirpStack v4 (JSON marshaler): topic ``application/{application id}/device/{dev eui}/event/up``; the decoded
  fields are in ``object``, the counter in ``fCnt``, the time in ``time``, the device in ``deviceInfo``
  (``devEui``, ``deviceName``).

Which decoded field is the temperature (and the battery, in percent or volts) differs per sensor model and is
configured (``LorawanSettings``), as is whether the ColdTrace device id is the DevEUI or the network server's
device id (optionally with a prefix, or mapped one by one). Each uplink becomes the same ``ParseResult`` as a
native message (coldtrace/core/payload.py): one reading, ``seq`` = the frame counter (so lost uplinks show as
``device.data_gap``). An uplink that cannot be used is quarantined with its reason like any payload:
``bad_json``, ``schema`` (not an uplink of that format), ``device_mismatch`` (topic and body disagree),
``undecodable`` (no decoded payload, or no configured temperature field in it), ``out_of_range``,
``future_timestamp``.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode  # a marker only: the *_fields variables may be "a,b" as well as JSON

from coldtrace.core.clock import parse_time
from coldtrace.core.listvalue import comma_or_json_list
from coldtrace.core.model import Batch, ParseResult, Reading, Rejection
from coldtrace.core.payload import FUTURE_TOLERANCE_MS, MAX_BYTES, _check_value, valid_device_id

TTS_FILTER = "v3/+/devices/+/up"
CHIRPSTACK_FILTER = "application/+/device/+/event/up"
_TTS_TOPIC = re.compile(r"^v3/([^/]+)/devices/([^/]+)/up$")
_CS_TOPIC = re.compile(r"^application/([^/]+)/device/([^/]+)/event/up$")
_FRACTION = re.compile(r"(\.\d{1,9})")


class LorawanSettings(BaseModel):
    """``[lorawan]`` / ``COLDTRACE_LORAWAN__*``: which network servers to listen to and how to read a sensor."""

    tts: bool = False  # subscribe to The Things Stack v3 uplinks
    tts_filter: str = TTS_FILTER  # e.g. "v3/coldchain@ttn/devices/+/up" for one application
    chirpstack: bool = False  # subscribe to ChirpStack v4 uplink events
    chirpstack_filter: str = CHIRPSTACK_FILTER
    # the ColdTrace device id: the DevEUI (upper-case hex), or the network server's device id (The Things
    # Stack: end_device_ids.device_id; ChirpStack: deviceInfo.deviceName), with an optional prefix
    device_id_from: Literal["dev_eui", "device_id"] = "dev_eui"
    device_prefix: str = ""
    devices: dict[str, str] = Field(default_factory=dict)  # explicit: DevEUI or device id -> ColdTrace id
    # decoded fields, first present wins; dotted paths reach into objects ("sensor.temperature"); a field may
    # carry its own unit after a colon ("temp_f:F", "BatV:volt"), else the *_unit below applies
    # Env: COLDTRACE_LORAWAN__TEMPERATURE_FIELDS=TempC_SHT,temp_f:F or a JSON list
    temperature_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["temperature", "temperature_c", "TempC_SHT"])
    temperature_unit: Literal["C", "F", "K"] = "C"
    battery_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["battery", "battery_pct", "BatV:volt"])
    battery_unit: Literal["percent", "volt"] = "percent"
    battery_empty_v: float = 2.5  # volt -> percent, linearly between these
    battery_full_v: float = 3.6

    @field_validator("temperature_fields", "battery_fields", mode="before")
    @classmethod
    def _csv(cls, v: Any) -> Any:
        return comma_or_json_list(v)

    @field_validator("temperature_fields")
    @classmethod
    def _temp_units(cls, v: list[str]) -> list[str]:
        for f in v:
            if ":" in f and f.rsplit(":", 1)[1] not in ("C", "F", "K"):
                raise ValueError(f"{f!r}: a temperature field's unit is C, F or K")
        return v

    @field_validator("battery_fields")
    @classmethod
    def _battery_units(cls, v: list[str]) -> list[str]:
        for f in v:
            if ":" in f and f.rsplit(":", 1)[1] not in ("percent", "volt"):
                raise ValueError(f"{f!r}: a battery field's unit is percent or volt")
        return v


def _split(field_spec: str, default_unit: str) -> tuple[str, str]:
    name, sep, unit = field_spec.rpartition(":")
    return (name, unit) if sep else (field_spec, default_unit)


# ---------------------------------------------------------------- helpers

def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _time(value: Any) -> int:
    """RFC 3339 with up to nanoseconds (ChirpStack) or epoch ms -> epoch ms."""
    if isinstance(value, str):
        value = _FRACTION.sub(lambda m: m.group(1)[:7], value, count=1)  # parse_time reads microseconds
    return parse_time(value)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _reject(reason: str, detail: str) -> ParseResult:
    return ParseResult(None, (Rejection(reason, detail),))


@dataclass(frozen=True)
class Uplink:
    """What both network servers say about one uplink, before the mapping to a reading."""

    topic_device: str  # the device as the topic names it
    device_id: str | None  # network server's device id (TTS device_id, ChirpStack deviceName)
    dev_eui: str | None
    f_cnt: int | None
    time_ms: int | None
    decoded: dict[str, Any] | None


class LorawanSource(ABC):
    """One network server's topic family: ``filters``, ``matches(topic)``, ``decode(topic, payload, now)``."""

    name = "lorawan"
    topic_re: re.Pattern[str]

    def __init__(self, settings: LorawanSettings, topic_filter: str) -> None:
        self.settings = settings
        self.filters = [topic_filter]

    def matches(self, topic: str) -> bool:
        return self.topic_re.match(topic) is not None

    def device_hint(self, topic: str) -> str | None:
        m = self.topic_re.match(topic)
        return m.group(2)[:64] if m else None

    @abstractmethod
    def uplink(self, doc: dict[str, Any], topic_device: str) -> Uplink | ParseResult:
        """The network server's uplink JSON -> the fields ColdTrace needs, or a rejection."""

    def decode(self, topic: str, payload: bytes, now_ms: int) -> ParseResult:
        if len(payload) > MAX_BYTES:
            return _reject("too_large", f"message is {len(payload)} bytes, the limit is {MAX_BYTES}")
        m = self.topic_re.match(topic)
        if m is None:
            return _reject("schema", f"topic {topic[:200]!r} is not a {self.label} uplink topic")
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            return _reject("bad_json", f"{self.label} uplink is not JSON ({exc}); {self.json_hint}")
        if not isinstance(doc, dict):
            return _reject("schema", f"{self.label} uplink must be a JSON object")
        up = self.uplink(doc, m.group(2))
        if isinstance(up, ParseResult):
            return up
        return self._reading(up, now_ms)

    # ---- the mapping, common to both --------------------------------------------------------------------
    def _device(self, up: Uplink) -> str | ParseResult:
        s = self.settings
        for key in (up.dev_eui, up.device_id):
            if key and key in s.devices:
                return s.devices[key]
            if key and key.upper() in s.devices:
                return s.devices[key.upper()]
        base = up.dev_eui if s.device_id_from == "dev_eui" else up.device_id
        if not base:
            return _reject("schema", f"{self.label} uplink has no {s.device_id_from} to name the device")
        dev = s.device_prefix + base
        if not valid_device_id(dev):
            return _reject("schema", f"device id {dev[:80]!r} (from {s.device_id_from}) does not match"
                                     " [A-Za-z0-9._-]{1,64}: map it in lorawan.devices")
        return dev

    def _reading(self, up: Uplink, now_ms: int) -> ParseResult:
        s = self.settings
        dev = self._device(up)
        if isinstance(dev, ParseResult):
            return dev
        if not isinstance(up.decoded, dict):
            return _reject("undecodable", f"{self.label} uplink of {dev} has no decoded payload: give the device"
                                          " a payload formatter / codec in the network server")
        spec = next((_split(f, s.temperature_unit) for f in s.temperature_fields
                     if _get(up.decoded, _split(f, s.temperature_unit)[0]) is not None), None)
        if spec is None:
            return _reject("undecodable", f"decoded payload of {dev} has none of the temperature fields"
                                          f" {s.temperature_fields} (keys: {sorted(up.decoded)[:12]});"
                                          " set lorawan.temperature_fields")
        field_name, unit = spec
        raw = _get(up.decoded, field_name)
        temp = _number(raw)
        if temp is None:
            return _reject("schema", f"decoded {field_name} of {dev} is not a finite number: {str(raw)[:40]!r}")
        if unit == "F":
            temp = (temp - 32) * 5 / 9
        elif unit == "K":
            temp -= 273.15
        temp = round(temp, 6)
        problem = _check_value(temp)
        if problem is not None:
            return _reject("out_of_range", f"{field_name}: {problem}")
        ts = up.time_ms if up.time_ms is not None else now_ms
        if ts > now_ms + FUTURE_TOLERANCE_MS:
            return _reject("future_timestamp", f"uplink time is {(ts - now_ms) / 1000:.0f} s ahead of the"
                                               " receiver's clock")
        battery = None
        bspec = next((_split(f, s.battery_unit) for f in s.battery_fields
                      if _number(_get(up.decoded, _split(f, s.battery_unit)[0])) is not None), None)
        if bspec is not None:
            b = _number(_get(up.decoded, bspec[0]))
            if bspec[1] == "volt":
                span = s.battery_full_v - s.battery_empty_v
                b = (b - s.battery_empty_v) / span * 100 if span > 0 else None
            if b is not None:
                battery = round(min(100.0, max(0.0, b)), 1)
        seq = up.f_cnt
        return ParseResult(Batch(dev, (Reading(dev, ts, temp, seq),), seq, None, battery, self.name))


class TheThingsStack(LorawanSource):
    name = "lorawan:tts"
    label = "The Things Stack"
    json_hint = "The Things Stack's MQTT server sends JSON"
    topic_re = _TTS_TOPIC

    def uplink(self, doc: dict[str, Any], topic_device: str) -> Uplink | ParseResult:
        ids = doc.get("end_device_ids")
        up = doc.get("uplink_message")
        if not isinstance(ids, dict) or not isinstance(up, dict):
            return _reject("schema", "not a The Things Stack uplink: end_device_ids and uplink_message expected")
        device_id = ids.get("device_id")
        if device_id is not None and device_id != topic_device:
            return _reject("device_mismatch", f"end_device_ids.device_id {str(device_id)[:64]!r} != topic device"
                                              f" {topic_device[:64]!r}")
        f_cnt = up.get("f_cnt", 0)  # empty fields are omitted: an absent f_cnt is 0
        if isinstance(f_cnt, bool) or not isinstance(f_cnt, int):
            return _reject("schema", "uplink_message.f_cnt must be an integer")
        when = up.get("received_at") or doc.get("received_at")
        try:
            time_ms = _time(when) if when is not None else None
        except (ValueError, TypeError, OverflowError):
            return _reject("schema", f"uplink_message.received_at is not RFC 3339: {str(when)[:40]!r}")
        dev_eui = ids.get("dev_eui")
        return Uplink(topic_device, device_id or topic_device, dev_eui.upper() if isinstance(dev_eui, str) else None,
                      f_cnt, time_ms, up.get("decoded_payload"))


class ChirpStack(LorawanSource):
    name = "lorawan:chirpstack"
    label = "ChirpStack"
    json_hint = "set the ChirpStack MQTT integration to the JSON marshaler (json=true)"
    topic_re = _CS_TOPIC

    def uplink(self, doc: dict[str, Any], topic_device: str) -> Uplink | ParseResult:
        info = doc.get("deviceInfo")
        if not isinstance(info, dict):
            return _reject("schema", "not a ChirpStack v4 uplink event: deviceInfo expected")
        dev_eui = info.get("devEui")
        if not isinstance(dev_eui, str) or dev_eui.lower() != topic_device.lower():
            return _reject("device_mismatch", f"deviceInfo.devEui {str(dev_eui)[:32]!r} != topic device"
                                              f" {topic_device[:32]!r}")
        f_cnt = doc.get("fCnt", 0)
        if isinstance(f_cnt, bool) or not isinstance(f_cnt, int):
            return _reject("schema", "fCnt must be an integer")
        when = doc.get("time")
        try:
            time_ms = _time(when) if when is not None else None
        except (ValueError, TypeError, OverflowError):
            return _reject("schema", f"time is not RFC 3339: {str(when)[:40]!r}")
        name = info.get("deviceName")
        return Uplink(topic_device, name if isinstance(name, str) else None, dev_eui.upper(), f_cnt, time_ms,
                      doc.get("object"))


def sources(settings: LorawanSettings) -> list[LorawanSource]:
    """The topic sources the collector subscribes to (none unless a network server is enabled)."""
    out: list[LorawanSource] = []
    if settings.tts:
        out.append(TheThingsStack(settings, settings.tts_filter))
    if settings.chirpstack:
        out.append(ChirpStack(settings, settings.chirpstack_filter))
    return out

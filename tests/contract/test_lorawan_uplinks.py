"""Contract: uplinks as The Things Stack v3 and ChirpStack v4 publish them over MQTT (the JSON in
tests/contract/lorawan/ follows their documented formats: TTS "Data Formats" uplink message, ChirpStack
"event/up" with the JSON marshaler) become the same ParseResult as a native message; unusable ones get a
quarantine reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from coldtrace.core.clock import parse_time
from coldtrace.core.lorawan import ChirpStack, LorawanSettings, TheThingsStack, sources

HERE = Path(__file__).parent / "lorawan"
TTS = json.loads((HERE / "tts_uplink.json").read_text())
CS = json.loads((HERE / "chirpstack_up.json").read_text())
TTS_TOPIC = "v3/coldchain@ttn/devices/fridge-01/up"
CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/24e124136b502217/event/up"
NOW = parse_time("2026-11-30T06:45:00Z")


def tts(**over) -> TheThingsStack:
    return TheThingsStack(LorawanSettings(tts=True, **over), "v3/+/devices/+/up")


def cs(**over) -> ChirpStack:
    return ChirpStack(LorawanSettings(chirpstack=True, **over), "application/+/device/+/event/up")


def enc(doc) -> bytes:
    return json.dumps(doc).encode()


def test_tts_uplink_of_a_dragino_lht65():
    src = tts(temperature_fields=["TempC_SHT"], battery_fields=["BatV:volt"])
    assert src.matches(TTS_TOPIC) and not src.matches("coldtrace/v1/devices/x/readings")
    pr = src.decode(TTS_TOPIC, enc(TTS), NOW)
    assert pr.rejections == ()
    b = pr.batch
    assert b.device_id == "A84041000181C2D3" and b.seq == 1520 and b.source == "lorawan:tts"
    assert [(r.device_id, r.ts, r.temp_c, r.seq) for r in b.readings] == \
        [("A84041000181C2D3", parse_time("2026-11-30T06:40:12.405Z"), 4.52, 1520)]  # uplink_message.received_at
    assert b.battery_pct == pytest.approx((3.05 - 2.5) / 1.1 * 100, abs=0.1)


def test_tts_device_named_by_its_device_id_with_a_prefix_or_mapped():
    pr = tts(device_id_from="device_id", device_prefix="LW-").decode(TTS_TOPIC, enc(TTS), NOW)
    assert pr.batch.device_id == "LW-fridge-01"
    pr = tts(devices={"A84041000181C2D3": "FRIDGE-PHARMACY-1"}).decode(TTS_TOPIC, enc(TTS), NOW)
    assert pr.batch.device_id == "FRIDGE-PHARMACY-1"


def test_tts_first_uplink_has_no_f_cnt():
    doc = copy.deepcopy(TTS)
    del doc["uplink_message"]["f_cnt"]  # The Things Stack omits empty (zero) fields
    assert tts(temperature_fields=["TempC_SHT"]).decode(TTS_TOPIC, enc(doc), NOW).batch.seq == 0


def test_chirpstack_v4_uplink_of_a_milesight_em300():
    src = cs()
    assert src.matches(CS_TOPIC)
    pr = src.decode(CS_TOPIC, enc(CS), NOW)
    assert pr.rejections == ()
    b = pr.batch
    assert b.device_id == "24E124136B502217" and b.seq == 88 and b.battery_pct == 100.0
    [r] = b.readings
    assert r.temp_c == -18.7 and r.ts == parse_time("2026-11-30T06:41:15.775Z")  # nanoseconds cut to ms
    assert cs(device_id_from="device_id").decode(CS_TOPIC, enc(CS), NOW).batch.device_id == "coldroom-b"


def test_units_are_converted():
    doc = copy.deepcopy(CS)
    doc["object"] = {"temperature": 39.2}
    assert cs(temperature_unit="F").decode(CS_TOPIC, enc(doc), NOW).batch.readings[0].temp_c == pytest.approx(4.0)
    doc["object"] = {"sensor": {"t": 277.15}}
    r = cs(temperature_fields="sensor.t", temperature_unit="K").decode(CS_TOPIC, enc(doc), NOW).batch.readings[0]
    assert r.temp_c == pytest.approx(4.0)
    doc["object"] = {"temp_f": 39.2, "vbat": 3.6}  # units per field
    b = cs(temperature_fields="temp_f:F", battery_fields="vbat:volt").decode(CS_TOPIC, enc(doc), NOW).batch
    assert b.readings[0].temp_c == pytest.approx(4.0) and b.battery_pct == 100.0
    with pytest.raises(ValueError, match="unit is C, F or K"):
        LorawanSettings(temperature_fields=["t:Celsius"])


@pytest.mark.parametrize(("mutate", "reason", "needle"), [
    (lambda d: d["uplink_message"].pop("decoded_payload"), "undecodable", "has no decoded payload"),
    (lambda d: d["uplink_message"].update(decoded_payload={"Hum_SHT": 50}), "undecodable",
     "none of the temperature fields"),
    (lambda d: d["uplink_message"]["decoded_payload"].update(TempC_SHT="4.5"), "schema", "not a finite number"),
    (lambda d: d["uplink_message"]["decoded_payload"].update(TempC_SHT=327.67), "out_of_range", "outside"),
    (lambda d: d["end_device_ids"].update(device_id="fridge-02"), "device_mismatch", "!= topic device"),
    (lambda d: d.pop("uplink_message"), "schema", "not a The Things Stack uplink"),
    (lambda d: d["uplink_message"].update(received_at="2026-12-30T00:00:00Z"), "future_timestamp", "ahead"),
    (lambda d: d["uplink_message"].update(f_cnt="7"), "schema", "f_cnt must be an integer"),
])
def test_bad_tts_uplinks_are_refused_with_a_reason(mutate, reason, needle):
    doc = copy.deepcopy(TTS)
    mutate(doc)
    pr = tts(temperature_fields=["TempC_SHT"]).decode(TTS_TOPIC, enc(doc), NOW)
    assert pr.batch is None
    [rej] = pr.rejections
    assert rej.reason == reason and needle in rej.detail


@pytest.mark.parametrize(("payload", "reason", "needle"), [
    (b"\x0a\x24protobuf", "bad_json", "JSON marshaler"),
    (b"[1, 2]", "schema", "must be a JSON object"),
    (enc({**CS, "deviceInfo": {**CS["deviceInfo"], "devEui": "0000000000000001"}}), "device_mismatch", "devEui"),
    (enc({k: v for k, v in CS.items() if k != "object"}), "undecodable", "codec"),
    (enc({**CS, "time": "yesterday"}), "schema", "time is not RFC 3339"),
])
def test_bad_chirpstack_events_are_refused_with_a_reason(payload, reason, needle):
    pr = cs().decode(CS_TOPIC, payload, NOW)
    assert pr.batch is None
    assert pr.rejections[0].reason == reason and needle in pr.rejections[0].detail


def test_device_ids_that_are_not_ours_must_be_mapped():
    doc = copy.deepcopy(CS)
    doc["deviceInfo"]["deviceName"] = "cold room B"
    pr = cs(device_id_from="device_id").decode(CS_TOPIC, enc(doc), NOW)
    assert pr.rejections[0].reason == "schema" and "lorawan.devices" in pr.rejections[0].detail


def test_sources_only_when_enabled():
    assert sources(LorawanSettings()) == []
    names = [s.name for s in sources(LorawanSettings(tts=True, chirpstack=True))]
    assert names == ["lorawan:tts", "lorawan:chirpstack"]

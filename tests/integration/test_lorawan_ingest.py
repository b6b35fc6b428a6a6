"""LoRaWAN uplinks over a real Mosquitto, as The Things Stack and ChirpStack publish them, through the collector:
stored with battery and seq, a lost run of frames named as a data gap, an undecodable uplink quarantined (and
acknowledged: nothing is redelivered forever), in-process and through the ingest child process."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.core.clock import to_iso
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parents[1] / "contract" / "lorawan"
TTS = json.loads((HERE / "tts_uplink.json").read_text())
CS = json.loads((HERE / "chirpstack_up.json").read_text())
TTS_TOPIC = "v3/coldchain@ttn/devices/fridge-01/up"
CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/24e124136b502217/event/up"


def _publish(broker, items: list[tuple[str, bytes]]) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="network-server")
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=1) for t, p in items]
        for i in infos:
            i.wait_for_publish(10)
            assert i.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def _tts(f_cnt: int, temp: float, ts: int) -> bytes:
    d = copy.deepcopy(TTS)
    d["uplink_message"].update(f_cnt=f_cnt, received_at=to_iso(ts))
    d["uplink_message"]["decoded_payload"]["TempC_SHT"] = temp
    return json.dumps(d).encode()


@pytest.mark.parametrize("worker_process", [False, True], ids=["in-process", "ingest-child"])
def test_tts_and_chirpstack_uplinks_through_mosquitto(tmp_path, mosquitto, worker_process):
    stack = start_stack(tmp_path, mosquitto.url, ingest={"worker_process": worker_process}, lorawan={
        "tts": True, "chirpstack": True, "temperature_fields": ["TempC_SHT", "temperature"],
        "battery_fields": ["battery", "BatV:volt"], "devices": {"A84041000181C2D3": "FRIDGE-PHARMACY-1"}})
    try:
        now = stack.services.clock.now_ms()
        t0 = now - 30 * 60_000
        cs = copy.deepcopy(CS)
        cs["time"] = to_iso(now - 60_000)
        no_codec = copy.deepcopy(TTS)
        del no_codec["uplink_message"]["decoded_payload"]
        no_codec["uplink_message"]["received_at"] = to_iso(now)
        _publish(mosquitto, [
            (TTS_TOPIC, _tts(100, 4.4, t0)),
            (TTS_TOPIC, _tts(101, 4.6, t0 + 60_000)),
            (TTS_TOPIC, _tts(105, 9.1, t0 + 5 * 60_000)),  # frames 102..104 lost on the radio
            (CS_TOPIC, json.dumps(cs).encode()),
            (TTS_TOPIC, json.dumps(no_codec).encode()),
        ])

        def stored() -> bool:
            return (len(stack.services.readings.query("FRIDGE-PHARMACY-1")) == 3
                    and len(stack.services.readings.query("24E124136B502217")) == 1
                    and stack.services.db.query_one("SELECT COUNT(*) FROM quarantine")[0] == 1)

        wait_for(stored, 20, "the uplinks stored and the undecodable one quarantined")
        fridge = stack.services.readings.query("FRIDGE-PHARMACY-1")
        assert [(r.ts, r.temp_c, r.seq) for r in fridge] == [(t0, 4.4, 100), (t0 + 60_000, 4.6, 101),
                                                              (t0 + 5 * 60_000, 9.1, 105)]
        dev = stack.get("/api/v1/devices/24E124136B502217")
        assert dev["battery_pct"] == 100.0 and dev["last_temp_c"] == -18.7
        q = stack.services.db.query_one("SELECT source, topic, device_id, reason, detail FROM quarantine")
        assert (q["source"], q["topic"], q["reason"]) == ("lorawan:tts", TTS_TOPIC, "undecodable")
        assert q["device_id"] == "fridge-01" and "payload formatter" in q["detail"]
        gap = stack.services.db.query_one("SELECT data FROM alerts WHERE type = 'device.data_gap'")
        assert json.loads(gap[0])["missing_seq"] == {"first": 102, "last": 104}
        # the fridge went above 8 °C: the same excursion engine as for any logger
        wait_for(lambda: stack.services.db.query_one(
            "SELECT COUNT(*) FROM excursions WHERE device_id = 'FRIDGE-PHARMACY-1'")[0] >= 1, 10, "an excursion")
    finally:
        stack.close()

"""The gateway in-process against a real Mosquitto and simulated instruments on real ptys."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from coldtrace.payload import parse_payload
from firmware_sim.serial_instruments import Ctl1Logger, ScpiThermometer
from gateway.config import load_config
from gateway.service import Gateway
from tests.integration.gateway_support import Subscriber, wait_for, write_config

pytestmark = pytest.mark.integration


class Running:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.thread = threading.Thread(target=gw.run)
        self.thread.start()

    def stop(self) -> None:
        self.gw.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()


def test_gateway_publishes_every_reading_with_status(tmp_path, mosquitto):
    sims = [Ctl1Logger(tmp_path / f"ttyCT{i}", f"LOG-{i:04d}", records=1500).start() for i in range(3)]
    ref = ScpiThermometer(tmp_path / "ttyREF", true_temp=lambda t: 25.0).start()
    sub = Subscriber(mosquitto.port)
    cfg = load_config(write_config(tmp_path / "gateway.toml", broker_url=mosquitto.url,
                                   ports=[s.path for s in sims], scpi=[ref.path], spool=tmp_path / "spool.db"))
    run = Running(Gateway(cfg))
    try:
        expected = {(r.device_id, r.ts) for s in sims for r in s.readings()}
        wait_for(lambda: expected <= sub.keys(), 30, "all dumped readings at the broker")
        wait_for(lambda: any(m["device_id"] == "REF-1524-SN0001" for m in sub.messages), 10, "reference")
        # the status is republished every interval: wait for one that shows the settled state
        wait_for(lambda: sub.status.get("GW-TEST", {}).get("spool", {}).get("entries") == 0
                 and all(p["connected"] for p in sub.status["GW-TEST"].get("ports", [])), 15,
                 "status says the spool is empty and every port is connected")
        st = sub.status["GW-TEST"]
        assert st["online"] is True and st["broker_connected"] is True
        assert {p["port"] for p in st["ports"]} == {s.path for s in sims} | {ref.path}
        assert all(p["connected"] for p in st["ports"])
        # every message is a valid native payload with a per-device seq 1, 2, 3...
        seqs: dict[str, list[int]] = {}
        for m in list(sub.messages):
            pr = parse_payload(json.dumps(m).encode(), topic_device_id=m["device_id"], now_ms=2**62)
            assert pr.batch is not None and not pr.rejections
            assert len(m["readings"]) <= cfg.max_batch_readings
            seqs.setdefault(m["device_id"], []).append(m["seq"])
        for dev, s in seqs.items():
            assert sorted(s) == list(range(1, len(s) + 1)), dev
        assert sub.count() >= len(expected)
    finally:
        run.stop()
        sub.close()
        for s in [*sims, ref]:
            s.stop()


def test_clean_stop_says_offline_and_last_will_covers_a_crash(tmp_path, mosquitto):
    sub = Subscriber(mosquitto.port)
    cfg = load_config(write_config(tmp_path / "gateway.toml", broker_url=mosquitto.url, ports=[],
                                   spool=tmp_path / "spool.db"))
    run = Running(Gateway(cfg))
    wait_for(lambda: sub.status.get("GW-TEST", {}).get("online") is True, 10, "online status")
    run.stop()
    wait_for(lambda: sub.status["GW-TEST"]["online"] is False, 10, "offline status after a clean stop")
    sub.close()


@pytest.mark.parametrize("policy", ["reject-new", "drop-oldest"])
def test_full_spool_follows_its_policy_and_says_so(tmp_path, mosquitto, caplog, policy):
    sub = Subscriber(mosquitto.port)  # a persistent session: it gets what is published while it is away
    mosquitto.stop()  # the broker is away: everything goes to the spool
    sim = Ctl1Logger(tmp_path / "ttyCT0", "LOG-FULL", records=3000).start()
    cfg = load_config(write_config(tmp_path / "gateway.toml", broker_url=mosquitto.url, ports=[sim.path],
                                   spool=tmp_path / "spool.db",
                                   spool_extra=f'max_readings = 1000\npolicy = "{policy}"'))
    cfg.max_batch_readings = 100
    gw = Gateway(cfg)
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        run = Running(gw)
        try:
            wait_for(lambda: gw.readers.readers[0].stats.dumps_complete == 1, 20, "dump")
            st = gw.spool.status()
            assert st.full and st.readings <= 1000
            if policy == "reject-new":
                assert st.rejected_readings == 2000 and "REJECTED" in caplog.text
                kept = range(1, 11)  # the first ten messages
            else:
                assert st.dropped_readings == 2000 and "drop-oldest" in caplog.text
                kept = range(21, 31)  # the newest ten
            assert [e.seq for e in gw.spool.peek(limit=100)] == list(kept)
            mosquitto.start()
            try:
                wait_for(lambda: sub.status.get("GW-TEST", {}).get("spool", {}).get("policy") == policy, 15,
                         "status published")
                spool_status = sub.status["GW-TEST"]["spool"]
                assert spool_status["full"] is True
                assert spool_status["rejected_readings" if policy == "reject-new" else "dropped_readings"] == 2000
                wait_for(lambda: sub.count() >= 1000, 15, "the kept readings delivered")
                assert sub.count() == 1000
                assert sorted(m["seq"] for m in sub.messages) == list(kept)
            finally:
                sub.close()
        finally:
            run.stop()
            sim.stop()

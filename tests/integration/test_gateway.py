"""The gateway in-process against a real Mosquitto and simulated instruments on real ptys."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from coldtrace.core.payload import parse_payload
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
    """3,000 readings into a 1,000-reading spool while the broker is away.

    Message boundaries depend on timing (the reader hands over a batch when 1,000 records are in or every
    0.2 s, and the gateway cuts each batch into messages of at most 100), and the spool keeps or loses whole
    messages. So the policy's promise is checked as it holds for any boundaries: every reading is either
    spooled or counted as lost, the limit holds, less than one message's worth of room is left unused, and
    the right end of the dump is kept (the oldest readings for reject-new, the newest for drop-oldest).
    """
    total, limit, per_msg = 3000, 1000, 100
    sub = Subscriber(mosquitto.port)  # a persistent session: it gets what is published while it is away
    mosquitto.stop()  # the broker is away: everything goes to the spool
    sim = Ctl1Logger(tmp_path / "ttyCT0", "LOG-FULL", records=total).start()
    cfg = load_config(write_config(tmp_path / "gateway.toml", broker_url=mosquitto.url, ports=[sim.path],
                                   spool=tmp_path / "spool.db",
                                   spool_extra=f'max_readings = {limit}\npolicy = "{policy}"'))
    cfg.max_batch_readings = per_msg
    gw = Gateway(cfg)
    lost_key = "rejected_readings" if policy == "reject-new" else "dropped_readings"
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        run = Running(gw)
        try:
            wait_for(lambda: gw.readers.readers[0].stats.dumps_complete == 1, 20, "dump")
            st = gw.spool.status()
            spooled = gw.spool.peek(limit=total)
            kept = [r["ts"] for e in spooled for r in json.loads(e.payload)["readings"]]
            dump = [r.ts for r in sim.readings()]  # oldest first
            lost = getattr(st, lost_key)
            assert st.full and st.readings == len(kept) == len(set(kept))
            assert st.readings + lost == total  # nothing vanished uncounted
            assert limit - per_msg < st.readings <= limit  # the limit holds; no more lost than whole messages need
            assert set(kept) <= set(dump)
            seqs = [e.seq for e in spooled]
            if policy == "reject-new":
                assert st.dropped_readings == 0 and "REJECTED" in caplog.text
                # seq 1, 2, ... up to the first refused message: the start of the dump, nearly the whole limit
                unbroken = next((i for i, s in enumerate(seqs) if s != i + 1), len(seqs))
                head = sum(e.readings for e in spooled[:unbroken])
                assert kept[:head] == dump[:head] and head > limit - per_msg
            else:
                assert st.rejected_readings == 0 and "drop-oldest" in caplog.text
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one unbroken run...
                assert kept == dump[-len(kept):]  # ...holding the newest readings
            mosquitto.start()
            try:
                wait_for(lambda: sub.count() >= len(kept), 15, "the kept readings delivered")
                wait_for(lambda: sub.status.get("GW-TEST", {}).get("spool", {}).get("entries") == 0, 15,
                         "a status with the spool drained")
                # the first status after the reconnect is published before any PUBACK: full, with the count
                first = sub.status_log[0]["spool"]
                assert first["policy"] == policy and first["full"] is True and first[lost_key] == lost
                last = sub.status["GW-TEST"]["spool"]  # delivery freed room: no longer full, the count stays
                assert last["full"] is False and last[lost_key] == lost
                assert sub.count() == len(kept)
                assert sorted(sub.keys()) == sorted(("LOG-FULL", ts) for ts in kept)
                assert sorted(m["seq"] for m in sub.messages) == seqs
            finally:
                sub.close()
        finally:
            run.stop()
            sim.stop()

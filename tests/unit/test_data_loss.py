"""device.data_gap from seq jumps, and the dropped-messages counter decisions (coldtrace/services/data_loss.py)."""

from __future__ import annotations

import json

from coldtrace.core.model import Batch, Reading
from coldtrace.services.data_loss import decide_dropped, seq_gap_alerts


def _b(seq, ts, dev="D1"):
    return Batch(dev, (Reading(dev, ts, 5.0, seq),), seq)


def test_gaps_in_arrival_order_name_the_missing_range():
    alerts = seq_gap_alerts("D1", [_b(4, 4000), _b(5, 5000), _b(9, 9000), _b(7, 7000), _b(10, 10_000)],
                            last_seq=2, last_ts=2000, now_ms=99_000)
    assert [(a.data["missing_seq"]["first"], a.data["missing_seq"]["last"]) for a in alerts] == [(3, 3), (6, 8)]
    assert alerts[1].data["after_ts"] == 5000 and alerts[1].data["before_ts"] == 9000
    assert alerts[1].severity == "warning" and alerts[1].type == "device.data_gap" and alerts[1].ts == 9000
    # the same gap seen again (a redelivery) has the same id: raised once
    again = seq_gap_alerts("D1", [_b(9, 9000)], last_seq=5, last_ts=5000, now_ms=1)
    assert again[0].id == alerts[1].id


def test_no_gap_without_history_or_after_a_reset():
    assert seq_gap_alerts("D1", [_b(7, 1)], last_seq=None, last_ts=None, now_ms=0) == []
    assert seq_gap_alerts("D1", [_b(1, 1), _b(2, 2)], last_seq=500, last_ts=0, now_ms=0) == []  # device reboot
    assert seq_gap_alerts("D1", [Batch("D1", (), None)], last_seq=3, last_ts=0, now_ms=0) == []


def test_dropped_counter_decisions():
    assert decide_dropped(None, 0).new_drops == 0
    assert decide_dropped(None, 12).new_drops == 12  # drops before we watched are drops all the same
    assert decide_dropped(12, 12).new_drops == 0
    d = decide_dropped(12, 40)
    assert (d.baseline, d.new_drops, d.reset) == (40, 28, False)
    d = decide_dropped(40, 3)  # the broker restarted: its counter began again
    assert (d.baseline, d.new_drops, d.reset) == (3, 3, True)


def test_pipeline_raises_the_gap_once_with_the_message_that_reveals_it(pipeline_env):
    clock, db, pipeline = pipeline_env
    t = clock.now_ms() - 600_000

    def msg(seq):
        return json.dumps({"v": 1, "device_id": "LOG-G", "seq": seq,
                           "readings": [{"ts": t + seq * 1000, "temp_c": 5.0}]}).encode()

    pipeline.ingest_raw(msg(1))
    pipeline.ingest_raw(msg(2))
    pipeline.ingest_raw(msg(6))
    pipeline.ingest_raw(msg(6))  # redelivered
    rows = db.query("SELECT type, severity, device_id, data FROM alerts WHERE type = 'device.data_gap'")
    assert len(rows) == 1
    data = json.loads(rows[0]["data"])
    assert data["missing_seq"] == {"first": 3, "last": 5} and data["missing_messages"] == 3
    assert data["after_ts"] == t + 2000 and data["before_ts"] == t + 6000
    assert db.query_one("SELECT seq_gaps FROM devices WHERE id = 'LOG-G'")[0] == 3
    assert db.query_one("SELECT COUNT(*) FROM outbox WHERE type = 'device.data_gap'")[0] == 1  # webhooks too

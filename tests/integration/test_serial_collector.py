"""A bench PC's serial instruments feeding the one ingest pipeline directly (collector/serial_source.py)."""

from __future__ import annotations

import time

import pytest

from coldtrace.core.clock import SystemClock
from coldtrace.core.model import Batch, Reading
from coldtrace.services.pipeline import Pipeline
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore
from collector.serial_source import SerialSource, screen
from firmware_sim.serial_instruments import Ctl1Logger, ScpiThermometer
from tests.integration.gateway_support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tmp_path):
    db = Database(tmp_path / "ct.db", synchronous="NORMAL")
    store = SqliteReadingStore(db)
    yield Pipeline(db, store, SystemClock())
    store.close()
    db.close()


def test_serial_source_stores_logger_dump_and_reference_and_quarantines_the_impossible(tmp_path, pipeline):
    # a logger whose sensor reads -250 °C for part of its memory: those readings are quarantined, not lost
    broken = Ctl1Logger(tmp_path / "ttyB", "LOG-BROKEN", records=100,
                        true_temp=lambda ts: -250.0 if (ts // 300_000) % 10 == 0 else 4.0).start()
    good = Ctl1Logger(tmp_path / "ttyG", "LOG-GOOD", records=2000).start()
    ref = ScpiThermometer(tmp_path / "ttyR", true_temp=lambda t: 5.0).start()
    src = SerialSource(pipeline, [
        {"kind": "ctl1", "port": good.path},
        {"kind": "ctl1", "port": broken.path},
        {"kind": "scpi", "port": ref.path, "interval_s": 0.02, "flush_interval_s": 0.05},
    ])
    src.start()
    try:
        wait_for(lambda: pipeline.readings.count("LOG-GOOD") == 2000, 30, "the dump stored")
        wait_for(lambda: pipeline.readings.count("REF-1524-SN0001") >= 10, 30, "reference readings stored")
        bad = sum(1 for r in broken.readings() if r.temp_c < -200)
        assert bad > 0
        wait_for(lambda: pipeline.readings.count("LOG-BROKEN") == 100 - bad, 30, "valid readings stored")
        q = pipeline.db.query("SELECT reason, source FROM quarantine WHERE device_id = 'LOG-BROKEN'")
        assert len(q) == bad and {(r[0], r[1]) for r in q} == {("out_of_range", "serial")}
        assert pipeline.readings.query("LOG-GOOD") == good.readings()
        assert all(s["connected"] for s in src.status())
    finally:
        src.stop()
        for s in (good, broken, ref):
            s.stop()


def test_screen_rejects_future_and_out_of_range():
    now = int(time.time() * 1000)
    b = Batch("D", (Reading("D", now, 4.0), Reading("D", now + 3600_000, 4.0), Reading("D", now - 1, 150.0)),
              source="serial")
    kept, rejected = screen([b], now)
    assert [r.ts for r in kept[0].readings] == [now]
    assert sorted(rej.reason for _, rej in rejected) == ["future_timestamp", "out_of_range"]
    assert kept[0].source == "serial"

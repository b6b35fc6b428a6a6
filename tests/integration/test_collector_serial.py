"""`coldtrace collector --serial-config`: instruments on the server's own serial ports feed the pipeline."""

from __future__ import annotations

import pytest

from firmware_sim.serial_instruments import Ctl1Logger, ScpiThermometer
from tests.support.stack import start_stack, wait_for

pytestmark = pytest.mark.integration


def test_collector_reads_the_serial_instruments_of_its_config(tmp_path, mosquitto):
    logger = Ctl1Logger(tmp_path / "ttyDock", "LOG-DOCK-7", records=500).start()
    ref = ScpiThermometer(tmp_path / "ttyRef", true_temp=lambda t: 5.0).start()
    conf = tmp_path / "serial.toml"
    conf.write_text(f'[[instruments]]\nkind = "ctl1"\nport = "{logger.path}"\nmode = "dump"\n\n'
                    f'[[instruments]]\nkind = "scpi"\nport = "{ref.path}"\ninterval_s = 0.05\n')
    stack = start_stack(tmp_path, mosquitto.url, serial_config=conf)
    try:
        wait_for(lambda: stack.services.readings.count("LOG-DOCK-7") == 500, 30, "the dock dump stored")
        wait_for(lambda: stack.services.readings.count("REF-1524-SN0001") >= 5, 30, "reference readings")
        first = logger.readings()[0].ts
        page = stack.get("/api/v1/devices/LOG-DOCK-7/readings", limit=1000, **{"from": first})
        assert [(r["ts_ms"], r["temp_c"]) for r in page["items"]] == [(r.ts, r.temp_c) for r in logger.readings()]
    finally:
        stack.close()
        logger.stop()
        ref.stop()

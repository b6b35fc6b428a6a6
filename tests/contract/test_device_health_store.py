"""The HealthStore contract (coldtrace/store/health.py): device health states, and the devices the deadman
watches."""

from __future__ import annotations

from coldtrace.ports import MonitoredDevice
from coldtrace.store import devices, health


def test_save_read_back_and_replace(db):
    assert health.state(db.conn(), "LOG-1") is None
    with db.write() as c:
        health.save(c, "LOG-1", '{"offline": false}', 10)
    assert health.state(db.conn(), "LOG-1") == '{"offline": false}'
    with db.write() as c:
        health.save(c, "LOG-1", '{"offline": true}', 20)
    assert health.state(db.conn(), "LOG-1") == '{"offline": true}'


def test_states_of_many_devices_in_chunks(db):
    ids = [f"LOG-{i:04d}" for i in range(1200)]  # more than one IN list
    with db.write() as c:
        health.save_many(c, [(d, f'{{"n": {i}}}', 5) for i, d in enumerate(ids) if i % 2 == 0])
    got = health.states(db.conn(), ids)
    assert got == {d: f'{{"n": {i}}}' for i, d in enumerate(ids) if i % 2 == 0}
    assert health.states(db.conn(), []) == {}
    with db.write() as c:  # save_many upserts
        health.save_many(c, [("LOG-0000", '{"n": -1}', 6), ("LOG-0001", '{"n": -2}', 6)])
    assert health.states(db.conn(), ["LOG-0000", "LOG-0001"]) == {"LOG-0000": '{"n": -1}', "LOG-0001": '{"n": -2}'}


def test_monitored_devices_are_those_seen_and_monitored(db):
    with db.write() as c:
        devices.register_device(c, "WATCHED", "logger", None, "2-8C", True, 0)
        devices.register_device(c, "NEVER-SEEN", "logger", None, None, True, 0)
        devices.register_unmonitored(c, "BENCH", "reference", "bench", 0)
        devices.update_device_states(c, [(100, None, 0, None, None, None, None, None, d)
                                          for d in ("WATCHED", "BENCH")])
        health.save(c, "WATCHED", '{"x": 1}', 100)
    got = health.monitored(db.conn())
    assert got == [MonitoredDevice("WATCHED", "2-8C", 100, '{"x": 1}')]

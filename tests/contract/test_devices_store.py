"""The device family's store contract (coldtrace/store/devices.py): DeviceStore, ProfileStore and
QuarantineStore of coldtrace/ports.py, each function against a fresh database: create, read back, conflicts,
ordering, not-found."""

from __future__ import annotations

from coldtrace.ports import DeviceState, RoleState
from coldtrace.store import calibration, devices


def _running_session(c, sid: str, reference: str, duts: list[str]) -> None:
    """A running calibration session (the calibration family's tables, written here as test data)."""
    c.execute("INSERT INTO calibration_sessions (id, reference_id, set_points, mpe_c, u_ref_c, cursor_ms, started_at,"
              " created_at, created_by, notes) VALUES (?, ?, '[25.0]', 0.5, 0.03, 0, 0, 0, 'qa', 'n')",
              (sid, reference))
    for d in duts:
        c.execute("INSERT INTO calibration_session_duts (session_id, device_id, resolution_c) VALUES (?, ?, 0.01)",
                  (sid, d))


# ---- devices -------------------------------------------------------------------------------------------------

def test_ensure_devices_registers_once_and_states_read_back(db):
    with db.write() as c:
        devices.ensure_devices(c, ["B", "A"], 100)
        devices.ensure_devices(c, ["A", "C"], 200)  # A exists: untouched
        devices.ensure_device(c, "C", 300)
    st = devices.device_states(db.conn(), ["A", "B", "C", "UNKNOWN"])
    assert st == {d: DeviceState(d, None, None, None, None, None, "logger", None) for d in "ABC"}
    assert devices.get_device(db.conn(), "A")["registered_at"] == 100
    assert devices.get_device(db.conn(), "C")["registered_at"] == 200
    assert devices.get_device(db.conn(), "UNKNOWN") is None
    assert devices.known_devices(db.conn(), ["A", "X", "C"]) == {"A", "C"}
    assert devices.known_devices(db.conn(), []) == set()


def test_device_states_of_more_devices_than_one_in_list(db):
    ids = [f"LOG-{i:04d}" for i in range(1100)]
    with db.write() as c:
        devices.ensure_devices(c, ids, 1)
    assert set(devices.device_states(db.conn(), ids)) == set(ids)
    assert devices.known_devices(db.conn(), ids) == set(ids)


def test_update_device_states_adds_gaps_and_keeps_what_is_not_given(db):
    with db.write() as c:
        devices.ensure_devices(c, ["A"], 1)
        devices.update_device_states(c, [(10, 5, 2, 80.0, 1000, 1000, 4.5, 1000, "A")])
    d = devices.get_device(db.conn(), "A")
    assert (d["last_seen_at"], d["last_seq"], d["seq_gaps"], d["battery_pct"], d["last_ts"], d["last_temp_c"],
            d["evaluated_ts"]) == (10, 5, 2, 80.0, 1000, 4.5, 1000)
    with db.write() as c:  # an older reading: no battery, no newest reading; gaps add up
        devices.update_device_states(c, [(20, 7, 1, None, None, None, None, 1000, "A")])
    d = devices.get_device(db.conn(), "A")
    assert (d["last_seen_at"], d["last_seq"], d["seq_gaps"], d["battery_pct"], d["last_ts"], d["last_temp_c"]) == (
        20, 7, 3, 80.0, 1000, 4.5)
    assert devices.device_states(db.conn(), ["A"])["A"].last_ts == 1000


def test_status_of_a_registered_device_only(db):
    with db.write() as c:
        assert devices.set_status(c, "GHOST", '{"online": true}', True) is False
        devices.ensure_device(c, "A", 1)
        assert devices.set_status(c, "A", '{"online": false}', False) is True
    assert devices.get_device(db.conn(), "A")["online"] == 0
    with db.write() as c:
        assert devices.set_status(c, "A", '{"fw": "1.2"}', None) is True  # None keeps online as it is
    d = devices.get_device(db.conn(), "A")
    assert (d["online"], d["status_json"]) == (0, '{"fw": "1.2"}')
    with db.write() as c:
        devices.set_online(c, ["A"], True)
    assert devices.get_device(db.conn(), "A")["online"] == 1


def test_register_upserts_and_keeps_the_profile_when_none_is_given(db):
    with db.write() as c:
        devices.register_device(c, "A", "logger", "fridge 1", "2-8C", True, 5)
        devices.register_device(c, "A", "reference", "bath ref", None, False, 9)
    d = devices.get_device(db.conn(), "A")
    assert (d["kind"], d["name"], d["profile_id"], d["monitored"], d["registered_at"]) == (
        "reference", "bath ref", "2-8C", 0, 5)
    assert devices.device_profile_id(db.conn(), "A") == (True, "2-8C")
    assert devices.device_profile_id(db.conn(), "NOPE") == (False, None)


def test_register_unmonitored_keeps_name_and_profile_of_a_known_device(db):
    with db.write() as c:
        devices.register_device(c, "REF-1", "logger", "kept name", "15-25C", True, 1)
        devices.register_unmonitored(c, "REF-1", "reference", "simulated bench reference", 2)
        devices.register_unmonitored(c, "DUT-1", "logger", "simulated bench logger", 3)
    ref, dut = devices.get_device(db.conn(), "REF-1"), devices.get_device(db.conn(), "DUT-1")
    assert (ref["kind"], ref["name"], ref["profile_id"], ref["monitored"]) == ("reference", "kept name", "15-25C", 0)
    assert (dut["name"], dut["monitored"], dut["registered_at"]) == ("simulated bench logger", 0, 3)


def test_list_devices_filters_orders_and_pages(db):
    with db.write() as c:
        for i, kind in enumerate(["logger", "reference", "logger", "gateway", "logger"]):
            devices.register_device(c, f"D{4 - i}", kind, None, None, True, i)
        devices.set_role(c, "D0", "calibration_reference")
        _running_session(c, "S1", "D1", ["D2"])  # the gateway D1 as the session's reference; D2 under calibration
    ids = [d["id"] for d in devices.list_devices(db.conn())]
    assert ids == ["D0", "D1", "D2", "D3", "D4"]
    assert [d["id"] for d in devices.list_devices(db.conn(), limit=2, offset=1)] == ["D1", "D2"]
    assert [d["id"] for d in devices.list_devices(db.conn(), kind="logger")] == ["D0", "D2", "D4"]
    assert [d["id"] for d in devices.list_devices(db.conn(), role="calibration_reference")] == ["D0", "D1", "D3"]
    assert [d["id"] for d in devices.list_devices(db.conn(), role="device_under_calibration")] == ["D2"]
    assert [d["id"] for d in devices.list_devices(db.conn(), kind="logger", role="shipment_logger")] == ["D4"]
    assert devices.list_devices(db.conn(), kind="nothing") == []
    assert calibration.session_roles(db.conn()) == {"D1": "calibration_reference", "D2": "device_under_calibration"}
    assert devices.effective_role_of(db.conn(), "D2") == "device_under_calibration"
    assert devices.effective_role_of(db.conn(), "NOPE") is None


def test_roles_and_judged_from(db):
    with db.write() as c:
        devices.ensure_device(c, "A", 1)
        devices.update_device_states(c, [(2, None, 0, None, 500, 500, 5.0, None, "A")])
        devices.set_role(c, "A", "device_under_calibration")
    assert devices.role_state(db.conn(), "A") == RoleState("device_under_calibration", "logger", 500, None)
    with db.write() as c:
        devices.set_role(c, "A", None, judged_from=501)
    assert devices.role_state(db.conn(), "A") == RoleState(None, "logger", 500, 501)
    with db.write() as c:
        devices.set_judged_from(c, "A", 900)
    assert devices.device_states(db.conn(), ["A"])["A"].judged_from == 900
    assert devices.role_state(db.conn(), "NOPE") is None


def test_profile_assignment_is_recorded_in_order(db):
    with db.write() as c:
        devices.ensure_device(c, "A", 1)
        devices.assign_profile(c, "A", "2-8C", None, 10, "qa1")
        devices.assign_profile(c, "A", "15-25C", "2-8C", 20, "qa2")
    assert devices.device_profile_id(db.conn(), "A") == (True, "15-25C")
    got = [(r["profile_id"], r["previous_profile_id"], r["assigned_at"], r["assigned_by"])
           for r in devices.profile_assignments(db.conn(), "A")]
    assert got == [("2-8C", None, 10, "qa1"), ("15-25C", "2-8C", 20, "qa2")]
    assert devices.profile_assignments(db.conn(), "B") == []


def test_counts(db):
    with db.write() as c:
        devices.ensure_devices(c, ["A", "B", "C"], 1)
        devices.update_device_states(c, [(2, None, 0, None, ts, ts, 1.0, None, d)
                                          for d, ts in (("A", 100), ("B", 200))])
    assert devices.count_devices(db.conn()) == 3
    assert devices.count_devices_ahead(db.conn(), 150) == 1
    assert devices.resume_states(db.conn(), ["A", "Z"]) == {"A": devices.DeviceAhead("A", 100, None)}


# ---- profiles ------------------------------------------------------------------------------------------------

def test_builtin_profiles_are_stored_once_and_never_overwritten(db):
    with db.write() as c:
        devices.ensure_builtin_profile(c, "zz-builtin", "Builtin", '{"v": 1}', 1)
        devices.ensure_builtin_profile(c, "zz-builtin", "Changed", '{"v": 2}', 2)
    p = devices.get_profile(db.conn(), "zz-builtin")
    assert (p["name"], p["body"], p["builtin"], p["updated_at"], p["updated_by"]) == (
        "Builtin", '{"v": 1}', 1, 1, "system")
    assert devices.profile_body(db.conn(), "zz-builtin") == '{"v": 1}'
    assert devices.profile_body(db.conn(), "nope") is None
    assert devices.get_profile(db.conn(), "nope") is None


def test_save_profile_upserts_records_each_change_and_lists_builtin_first(db):
    with db.write() as c:
        devices.ensure_builtin_profile(c, "b-profile", "B", "{}", 1)
        devices.save_profile(c, "a-custom", "Custom", '{"v": 1}', 10, "qa1")
        devices.save_profile(c, "a-custom", "Custom 2", '{"v": 2}', 20, "qa2")
    p = devices.get_profile(db.conn(), "a-custom")
    assert (p["name"], p["body"], p["builtin"], p["updated_at"], p["updated_by"]) == (
        "Custom 2", '{"v": 2}', 0, 20, "qa2")
    hist = [(r["body"], r["changed_at"], r["changed_by"]) for r in devices.profile_changes(db.conn(), "a-custom")]
    assert hist == [('{"v": 1}', 10, "qa1"), ('{"v": 2}', 20, "qa2")]
    listed = [(r["id"], r["builtin"]) for r in devices.list_profiles(db.conn())]
    assert listed.index(("b-profile", 1)) < listed.index(("a-custom", 0))  # built-in first, then by id
    builtin_ids = [i for i, b in listed if b]
    assert builtin_ids == sorted(builtin_ids)


# ---- quarantine ----------------------------------------------------------------------------------------------

def _q(i: int, reason: str = "schema", dev: str | None = "A") -> tuple:
    return (100 + i, "mqtt", f"t/{i}", dev, reason, f"detail {i}", i, b"raw\x00")


def test_quarantine_rows_read_back_newest_first_with_filters(db):
    with db.write() as c:
        devices.add_quarantine_many(c, [_q(0), _q(1, "future_timestamp"), _q(2, dev="B")])
        devices.add_quarantine(c, (200, "serial:/dev/x", None, None, "bad_line", "no temp", None))
    rows = devices.list_quarantine(db.conn())
    assert [r["received_at"] for r in rows] == [200, 102, 101, 100]
    assert rows[0]["reading_index"] is None and rows[0]["raw"] is None
    assert bytes(rows[-1]["raw"]) == b"raw\x00" and rows[-1]["reading_index"] == 0
    assert [r["received_at"] for r in devices.list_quarantine(db.conn(), reason="schema")] == [102, 100]
    assert [r["received_at"] for r in devices.list_quarantine(db.conn(), device_id="A")] == [101, 100]
    assert [r["received_at"] for r in devices.list_quarantine(db.conn(), limit=2, offset=1)] == [102, 101]
    assert devices.quarantine_by_reason(db.conn()) == {"schema": 2, "future_timestamp": 1, "bad_line": 1}
    assert devices.count_quarantine(db.conn()) == 4
    assert devices.quarantined_for(db.conn(), "future_timestamp") == (1, 101)
    assert devices.quarantined_for(db.conn(), "nothing") == (0, None)


def test_device_sources_keep_each_pair_once(db):
    with db.write() as c:
        devices.record_sources(c, [("A", "mqtt"), ("B", "serial")], 100)
        devices.record_sources(c, [("A", "mqtt"), ("A", "http")], 200)  # A/mqtt exists: untouched
        devices.record_sources(c, [], 300)
    assert devices.sources_of(db.conn(), ["A", "B", "C"]) == {"A": {"mqtt", "http"}, "B": {"serial"}}
    assert devices.sources_of(db.conn(), []) == {}
    rows = db.query("SELECT device_id, source, first_seen FROM device_sources ORDER BY device_id, source")
    assert [tuple(r) for r in rows] == [("A", "http", 200), ("A", "mqtt", 100), ("B", "serial", 100)]


def test_conflicts_open_until_resolved(db):
    conflict = (300, "mqtt", "t", "A", "second value", b"{}", 1000, 4.0, 7, 9.5, 8, "http or mqtt")
    with db.write() as c:
        devices.add_conflicts(c, [conflict, (301, "http", None, "B", "other", None, 2000, 1.0, None, 2.0, None,
                                             None)])
        devices.add_quarantine_many(c, [_q(0)])
    assert devices.open_conflict_exists(db.conn(), "A", 1000, 9.5)
    assert not devices.open_conflict_exists(db.conn(), "A", 1000, 4.0)
    assert devices.open_conflicts(db.conn()) == {"A": 1, "B": 1}
    assert devices.open_conflicts(db.conn(), ["A", "C"]) == {"A": 1}
    assert devices.open_conflicts(db.conn(), []) == {}
    (row,) = devices.list_quarantine(db.conn(), open_only=True, device_id="A")
    assert (row["reason"], row["reading_ts"], row["stored_temp_c"], row["stored_seq"], row["stored_source"],
            row["received_temp_c"], row["received_seq"], row["resolved_at"]) == (
        "conflicting_duplicate", 1000, 4.0, 7, "http or mqtt", 9.5, 8, None)
    with db.write() as c:
        devices.resolve_quarantine(c, row["id"], 400, "qa", "stored_value_correct: checked")
    got = devices.get_quarantine(db.conn(), row["id"])
    assert (got["resolved_at"], got["resolved_by"], got["resolution"]) == (400, "qa", "stored_value_correct: checked")
    assert not devices.open_conflict_exists(db.conn(), "A", 1000, 9.5)
    assert devices.open_conflicts(db.conn()) == {"B": 1}
    assert [r["device_id"] for r in devices.list_quarantine(db.conn(), open_only=True)] == ["B"]
    assert devices.get_quarantine(db.conn(), 10_000) is None

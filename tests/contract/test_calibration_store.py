"""The CalibrationStore contract (coldtrace/store/calibration.py): every function against a fresh database,
through the same ``db.write()`` transactions the services use; create, read back, conflicts, ordering, not found."""

from __future__ import annotations

import inspect
import json

import pytest

from coldtrace.core.errors import NotFound
from coldtrace.ports import CalibrationStore
from coldtrace.store import calibration as store

T0 = 1_795_687_200_000  # 2026-11-26T08:00:00Z
DAY = 86_400_000


def device_values(**over):
    v = dict.fromkeys(store.DEVICE_FIELDS)
    v.update(interval_days=365.0, status="unknown")
    v.update(over)
    return v


def new_session(db, sid="cal_1", *, reference="REF-1", duts=(("LOG-B", 0.1), ("LOG-A", 0.01)), started=T0,
                **over):
    row = {"id": sid, "reference_id": reference, "set_points": json.dumps([2.0, 8.0]), "mpe_c": 0.5,
           "rule": "guarded", "kind": "as_found", "capture_ms": 600_000, "tolerance_c": 1.0, "u_medium_c": 0.0,
           "u_ref_c": 0.05, "cursor_ms": started, "started_at": started, "created_at": started,
           "created_by": "qa1", "notes": None, **over}
    with db.write() as c:
        store.insert_session(c, row, list(duts))
    return row


def test_the_module_implements_every_function_of_the_port_with_its_parameters():
    members = [n for n, f in vars(CalibrationStore).items() if callable(f) and not n.startswith("_")]
    assert len(members) >= 35
    for name in members:
        impl = getattr(store, name)
        want = list(inspect.signature(getattr(CalibrationStore, name)).parameters)[1:]  # without self
        assert list(inspect.signature(impl).parameters) == want, name


# ---------------------------------------------------------------- device calibration state

def test_device_calibration_is_saved_read_back_and_replaced_whole(db):
    assert store.device_calibration(db, "LOG-1") is None
    with db.write() as c:
        store.save_device_calibration(c, "LOG-1", device_values(last_calibrated_at=T0, due_at=T0 + 365 * DAY,
                                                                status="valid", certificate_ref="CT-x-LOG-1",
                                                                make="Acme", resolution_c=0.1), T0)
    row = store.device_calibration(db, "LOG-1")
    assert row["device_id"] == "LOG-1" and row["status"] == "valid" and row["make"] == "Acme"
    assert row["interval_days"] == 365.0 and row["due_at"] == T0 + 365 * DAY and row["updated_at"] == T0
    assert row["drift_predicted_ms"] is None and row["drift_judged_at"] is None
    with db.write() as c:  # an upsert: every field is the new value, the row stays one
        store.save_device_calibration(c, "LOG-1", device_values(status="failed", interval_days=180.0), T0 + 1)
    row = store.device_calibration(db, "LOG-1")
    assert (row["status"], row["interval_days"], row["make"], row["updated_at"]) == ("failed", 180.0, None, T0 + 1)
    assert list(store.device_calibrations(db)) == ["LOG-1"]


def test_saving_refuses_a_partial_state(db):
    with pytest.raises(ValueError, match="missing calibration fields"), db.write() as c:
        store.save_device_calibration(c, "LOG-1", {"status": "valid"}, T0)
    assert store.device_calibration(db, "LOG-1") is None


def test_known_devices_are_registered_ones_and_those_with_a_record_each_once_in_id_order(db):
    with db.write() as c:
        for dev in ("LOG-b", "LOG-A"):
            c.execute("INSERT INTO devices (id, registered_at) VALUES (?, ?)", (dev, T0))
        for dev in ("LOG-A", "REF-1"):
            store.save_device_calibration(c, dev, device_values(), T0)
    assert store.calibration_device_ids(db) == ["LOG-A", "LOG-b", "REF-1"]
    assert sorted(store.device_calibrations(db)) == ["LOG-A", "REF-1"]


def test_drift_judgement_and_which_devices_to_rejudge(db):
    with db.write() as c:
        store.save_device_calibration(c, "LOG-2", device_values(due_at=T0 + DAY), T0)
        store.save_device_calibration(c, "LOG-1", device_values(due_at=T0 + DAY), T0)
        store.save_device_calibration(c, "LOG-3", device_values(), T0)  # no due date
        store.save_device_calibration(c, "LOG-4", device_values(due_at=T0 + DAY), T0)  # no history
        for dev in ("LOG-1", "LOG-2", "LOG-3"):
            store.save_history(c, dev, 2.0, T0, error_c=0.1, expanded_u_c=0.05, mpe_c=0.5, source="cal_1")
    assert store.devices_to_rejudge(db, T0) == ["LOG-1", "LOG-2"]  # never judged
    with db.write() as c:
        store.set_drift_judgement(c, "LOG-1", T0 + 10 * DAY, T0 + 5)
        store.set_drift_judgement(c, "LOG-2", None, T0 - 5)
    assert store.device_calibration(db, "LOG-1")["drift_predicted_ms"] == T0 + 10 * DAY
    assert store.device_calibration(db, "LOG-1")["drift_judged_at"] == T0 + 5
    assert store.devices_to_rejudge(db, T0) == ["LOG-2"]  # judged at or before the bound
    assert store.devices_to_rejudge(db, T0 + 5) == ["LOG-1", "LOG-2"]


def test_due_dates_within_a_horizon_and_the_stage_already_raised(db):
    with db.write() as c:
        store.save_device_calibration(c, "LOG-late", device_values(due_at=T0 - DAY), T0)
        store.save_device_calibration(c, "LOG-soon", device_values(due_at=T0 + 10 * DAY), T0)
        store.save_device_calibration(c, "LOG-edge", device_values(due_at=T0 + 30 * DAY), T0)
        store.save_device_calibration(c, "LOG-far", device_values(due_at=T0 + 31 * DAY), T0)
        store.save_device_calibration(c, "LOG-none", device_values(), T0)
    rows = store.due_within(db, T0, 30 * DAY)
    assert [r["device_id"] for r in rows] == ["LOG-edge", "LOG-late", "LOG-soon"]
    assert all(r["due_alerted"] is None for r in rows)
    with db.write() as c:
        store.mark_due_alerted(c, [("expired", "LOG-late"), ("due_30", "LOG-soon")])
    assert {r["device_id"]: r["due_alerted"] for r in store.due_within(db, T0, 30 * DAY)} == {
        "LOG-edge": None, "LOG-late": "expired", "LOG-soon": "due_30"}


# ---------------------------------------------------------------- sessions

def test_a_session_is_created_with_its_duts_and_read_back(db):
    row = new_session(db)
    assert store.session_exists(db, "cal_1") and not store.session_exists(db, "cal_2")
    s = store.get_session(db, "cal_1")
    assert {k: s[k] for k in row} == row
    assert (s["state"], s["point_index"], s["completed_at"], s["customer"]) == ("running", 0, None, None)
    assert store.session_duts(db, "cal_1") == [{"device_id": "LOG-A", "resolution_c": 0.01},
                                               {"device_id": "LOG-B", "resolution_c": 0.1}]
    assert store.session_dut(db, "cal_1", "LOG-B") == {"device_id": "LOG-B", "resolution_c": 0.1}
    assert store.session_dut(db, "cal_1", "REF-1") is None


def test_an_unknown_session_is_not_found(db):
    with pytest.raises(NotFound, match="no calibration session 'nope'"):
        store.get_session(db, "nope")


def test_a_second_session_with_the_same_id_is_refused_and_the_first_stays(db):
    new_session(db)
    with pytest.raises(Exception), db.write() as c:  # noqa: B017 - each dialect raises its own integrity error
        store.insert_session(c, {"id": "cal_1", "reference_id": "REF-2", "set_points": "[1]", "mpe_c": 1,
                                 "rule": "simple", "kind": "as_left", "capture_ms": 60_000, "tolerance_c": 1,
                                 "u_medium_c": 0, "u_ref_c": 0.1, "cursor_ms": T0, "started_at": T0,
                                 "created_at": T0}, [])
    assert store.get_session(db, "cal_1")["reference_id"] == "REF-1"


def test_conditions_are_set_field_by_field_and_other_fields_refused(db):
    new_session(db)
    with db.write() as c:
        store.update_session_conditions(c, "cal_1", {"customer": "Depot 3", "ambient_c": 21.5})
        store.update_session_conditions(c, "cal_1", {})
    s = store.get_session(db, "cal_1")
    assert (s["customer"], s["location"], s["ambient_c"], s["ambient_rh_pct"]) == ("Depot 3", None, 21.5, None)
    with pytest.raises(ValueError, match="unknown session fields"), db.write() as c:
        store.update_session_conditions(c, "cal_1", {"state": "completed"})
    assert store.get_session(db, "cal_1")["state"] == "running"


def test_sessions_finish_and_advance(db):
    new_session(db)
    new_session(db, "cal_2", started=T0 - 1)
    new_session(db, "cal_3", started=T0 - 2)
    assert store.running_session_ids(db) == ["cal_3", "cal_2", "cal_1"]  # oldest start first
    with db.write() as c:
        store.next_set_point(c, "cal_1", T0 + 900_000)
        store.finish_session(c, "cal_2", "completed", T0 + 5)
        store.finish_session(c, "cal_3", "cancelled", T0 + 6)
    s = store.get_session(db, "cal_1")
    assert (s["point_index"], s["cursor_ms"]) == (1, T0 + 900_000)
    assert (store.get_session(db, "cal_2")["state"], store.get_session(db, "cal_2")["completed_at"]) == (
        "completed", T0 + 5)
    assert store.get_session(db, "cal_3")["state"] == "cancelled"
    assert store.running_session_ids(db) == ["cal_1"]
    with pytest.raises(ValueError), db.write() as c:
        store.finish_session(c, "cal_1", "running", T0)


def test_sessions_are_listed_newest_first_with_filters_and_pages(db):
    new_session(db, "cal_1", started=T0, duts=(("LOG-A", 0.1),))
    new_session(db, "cal_2", started=T0 + 1, reference="REF-2", duts=(("LOG-B", 0.1),))
    new_session(db, "cal_3", started=T0 + 2, duts=(("LOG-A", 0.1), ("LOG-B", 0.1)))
    with db.write() as c:
        store.finish_session(c, "cal_1", "completed", T0 + 10)
    ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
    assert ids(store.list_sessions(db)) == ["cal_3", "cal_2", "cal_1"]
    assert ids(store.list_sessions(db, reference_id="REF-1")) == ["cal_3", "cal_1"]
    assert ids(store.list_sessions(db, device_id="LOG-B")) == ["cal_3", "cal_2"]
    assert ids(store.list_sessions(db, state="completed")) == ["cal_1"]
    assert ids(store.list_sessions(db, reference_id="REF-1", device_id="LOG-B", state="running")) == ["cal_3"]
    assert ids(store.list_sessions(db, reference_id="", state="")) == ["cal_3", "cal_2", "cal_1"]  # empty: none
    assert ids(store.list_sessions(db, limit=1, offset=1)) == ["cal_2"]
    assert store.list_sessions(db, device_id="LOG-Z") == []


def test_a_session_without_set_points_is_deleted_with_its_duts_and_charts(db):
    new_session(db)
    with db.write() as c:
        store.add_ewma(c, "cal_1", "LOG-A", 0, mu0=0.0, sigma=0.1, n0=10, last_ts=T0)
    assert not store.has_points(db, "cal_1")
    with db.write() as c:
        store.delete_session(c, "cal_1")
    assert not store.session_exists(db, "cal_1")
    assert store.session_duts(db, "cal_1") == [] and store.ewma(db, "cal_1", "LOG-A", 0) is None


def test_a_session_with_a_captured_set_point_is_never_deleted(db):
    new_session(db)
    with db.write() as c:
        store.add_point(c, "cal_1", 0, 2.0, stable_from=T0, stable_at=T0 + 1, capture_end=T0 + 2, ref_mean_c=2.0,
                        ref_std_c=0.01, ref_slope_c_per_min=0.0)
    assert store.has_points(db, "cal_1")
    with pytest.raises(ValueError, match="captured set points"), db.write() as c:
        store.delete_session(c, "cal_1")
    assert store.session_exists(db, "cal_1") and len(store.session_duts(db, "cal_1")) == 2


def test_reverse_traceability_lists_the_duts_of_completed_sessions_of_a_reference(db):
    new_session(db, "cal_1", duts=(("LOG-B", 0.1), ("LOG-A", 0.1)))
    new_session(db, "cal_2", duts=(("LOG-C", 0.1),))
    new_session(db, "cal_3", duts=(("LOG-D", 0.1),))  # still running
    new_session(db, "cal_4", reference="REF-2", duts=(("LOG-E", 0.1),))
    with db.write() as c:
        store.finish_session(c, "cal_2", "completed", T0 + 5)
        store.finish_session(c, "cal_1", "completed", T0 + 9)
        store.finish_session(c, "cal_4", "completed", T0 + 1)
    rows = store.sessions_with_reference(db, "REF-1")
    assert [(r["session_id"], r["device_id"]) for r in rows] == [("cal_2", "LOG-C"), ("cal_1", "LOG-A"),
                                                                  ("cal_1", "LOG-B")]
    assert rows[0] == {"device_id": "LOG-C", "session_id": "cal_2", "kind": "as_found", "completed_at": T0 + 5,
                       "u_ref_c": 0.05, "state": "completed"}
    assert store.sessions_with_reference(db, "REF-9") == []


# ---------------------------------------------------------------- set points and live charts

def test_a_set_point_is_recorded_once_and_evaluated(db):
    new_session(db)
    assert store.point(db, "cal_1", 0) is None and store.last_capture_end(db, "cal_1") is None
    with db.write() as c:
        assert store.add_point(c, "cal_1", 1, 8.0, stable_from=T0 + 10, stable_at=T0 + 11, capture_end=T0 + 20,
                               ref_mean_c=8.01, ref_std_c=0.02, ref_slope_c_per_min=0.001)
        assert store.add_point(c, "cal_1", 0, 2.0, stable_from=T0, stable_at=T0 + 1, capture_end=T0 + 5,
                               ref_mean_c=2.0, ref_std_c=0.01, ref_slope_c_per_min=0.0)
        # a second window for the same set point (a redelivery, a restart) changes nothing
        assert not store.add_point(c, "cal_1", 0, 2.0, stable_from=T0 + 100, stable_at=T0 + 101,
                                   capture_end=T0 + 105, ref_mean_c=2.5, ref_std_c=0.5, ref_slope_c_per_min=1.0)
        store.mark_point_evaluated(c, "cal_1", 0)
    p = store.point(db, "cal_1", 0)
    assert p == {"session_id": "cal_1", "point_index": 0, "set_point_c": 2.0, "stable_from": T0, "stable_at": T0 + 1,
                 "capture_end": T0 + 5, "ref_mean_c": 2.0, "ref_std_c": 0.01, "ref_slope_c_per_min": 0.0,
                 "evaluated": 1}
    assert [q["point_index"] for q in store.points(db, "cal_1")] == [0, 1]
    assert store.points(db, "cal_1")[1]["evaluated"] == 0
    assert store.last_capture_end(db, "cal_1") == T0 + 20


def test_a_live_chart_starts_at_its_baseline_once_and_follows_updates(db):
    new_session(db)
    with db.write() as c:
        assert store.add_ewma(c, "cal_1", "LOG-A", 0, mu0=0.02, sigma=0.01, n0=12, last_ts=T0)
        assert not store.add_ewma(c, "cal_1", "LOG-A", 0, mu0=9.0, sigma=9.0, n0=1, last_ts=T0 + 9)
    assert store.ewma(db, "cal_1", "LOG-A", 0) == {
        "session_id": "cal_1", "device_id": "LOG-A", "point_index": 0, "mu0": 0.02, "sigma": 0.01, "n0": 12,
        "z": 0.02, "i": 0, "last_ts": T0, "drift_at": None}
    with db.write() as c:
        store.update_ewma(c, "cal_1", "LOG-A", 0, z=0.05, i=7, last_ts=T0 + 70, drift_at=T0 + 60)
    e = store.ewma(db, "cal_1", "LOG-A", 0)
    assert (e["z"], e["i"], e["last_ts"], e["drift_at"], e["mu0"]) == (0.05, 7, T0 + 70, T0 + 60, 0.02)
    assert store.ewma(db, "cal_1", "LOG-B", 0) is None


# ---------------------------------------------------------------- results and history

def result(dev, idx, decision="pass", **over):
    return {"session_id": "cal_1", "device_id": dev, "point_index": idx, "set_point_c": [2.0, 8.0][idx], "n": 10,
            "error_c": 0.1, "s_c": 0.01, "u_c": 0.03, "expanded_u_c": 0.06, "decision": decision, "zone": "pass",
            "ref_mean_c": 2.0, "dut_mean_c": 2.1, "capture_from": T0, "capture_to": T0 + 5, "created_at": T0,
            **over}


def test_results_are_read_by_device_then_set_point_and_a_reevaluation_replaces_one(db):
    new_session(db)
    with db.write() as c:
        for dev, idx in (("LOG-B", 1), ("LOG-A", 1), ("LOG-B", 0), ("LOG-A", 0)):
            store.save_result(c, result(dev, idx))
        store.save_result(c, result("LOG-A", 1, "fail", error_c=None, n=0, created_at=T0 + 9))
    rows = store.results(db, "cal_1")
    assert [(r["device_id"], r["point_index"]) for r in rows] == [("LOG-A", 0), ("LOG-A", 1), ("LOG-B", 0),
                                                                  ("LOG-B", 1)]
    assert rows[1] == result("LOG-A", 1, "fail", error_c=None, n=0, created_at=T0 + 9)
    assert [r["decision"] for r in store.results(db, "cal_1", "LOG-A")] == ["pass", "fail"]
    assert store.results(db, "cal_1", "LOG-Z") == [] and store.results(db, "cal_9") == []


def test_history_is_by_set_point_then_time_and_the_same_point_is_replaced(db):
    with db.write() as c:
        store.save_history(c, "LOG-1", 8.0, T0 + DAY, error_c=0.2, expanded_u_c=0.1, mpe_c=0.5, source="cal_2")
        store.save_history(c, "LOG-1", 2.0, T0 + DAY, error_c=0.1, expanded_u_c=0.1, mpe_c=0.5, source="cal_2")
        store.save_history(c, "LOG-1", 2.0, T0, error_c=0.05, expanded_u_c=0.1, mpe_c=0.5, source="cal_1")
        store.save_history(c, "LOG-2", 2.0, T0, error_c=9.0, expanded_u_c=0.1, mpe_c=0.5, source="cal_1")
        store.save_history(c, "LOG-1", 2.0, T0, error_c=0.07, expanded_u_c=0.2, mpe_c=0.4, source="import:X-1")
    assert store.history(db, "LOG-1") == [
        {"set_point_c": 2.0, "ts": T0, "error_c": 0.07, "expanded_u_c": 0.2, "mpe_c": 0.4},
        {"set_point_c": 2.0, "ts": T0 + DAY, "error_c": 0.1, "expanded_u_c": 0.1, "mpe_c": 0.5},
        {"set_point_c": 8.0, "ts": T0 + DAY, "error_c": 0.2, "expanded_u_c": 0.1, "mpe_c": 0.5}]
    assert store.history(db, "LOG-9") == []


# ---------------------------------------------------------------- signatures and certificates

def signature(**over):
    return {"id": "csig_1", "session_id": "cal_1", "role": "performed", "meaning": "Performed",
            "signer_user_id": "u1", "signer_username": "metro", "printed_name": "M. Etro", "signed_at": T0,
            "record_hash": "a" * 64, "signature_hash": "b" * 64, **over}


def test_a_session_has_one_performed_signature(db):
    new_session(db)
    assert store.performed_signature(db, "cal_1") is None
    with db.write() as c:
        assert store.insert_signature(c, signature())
        assert not store.insert_signature(c, signature(id="csig_2", signer_username="other"))
    assert store.performed_signature(db, "cal_1") == signature()


def certificate(rev, **over):
    return {"number": "CT-cal_1-LOG-A", "revision": rev, "session_id": "cal_1", "device_id": "LOG-A",
            "issued_at": T0 + rev, "approver_user_id": "u2", "approver_username": "boss", "approver_name": "B. Oss",
            "changes": None if rev == 1 else "typo", "body": json.dumps({"revision": rev}),
            "body_hash": f"{rev:064d}", "signature_hash": f"{rev:064x}", **over}


def test_certificate_revisions_are_issued_once_each_and_read_in_order(db):
    new_session(db)
    assert store.certificate_revisions(db, "cal_1", "LOG-A") == []
    assert store.certificate_body(db, "cal_1", "LOG-A") is None
    assert store.certificate_session(db, "CT-cal_1-LOG-A", "LOG-A") is None
    with db.write() as c:
        assert store.insert_certificate(c, certificate(2))
        assert store.insert_certificate(c, certificate(1))
        assert not store.insert_certificate(c, certificate(2, body="{}"))  # issued meanwhile: nothing changes
    revs = store.certificate_revisions(db, "cal_1", "LOG-A")
    assert [r["revision"] for r in revs] == [1, 2]
    assert "body" not in revs[0] and revs[1]["changes"] == "typo" and revs[0]["approver_name"] == "B. Oss"
    assert json.loads(store.certificate_body(db, "cal_1", "LOG-A")) == {"revision": 2}  # the latest
    assert json.loads(store.certificate_body(db, "cal_1", "LOG-A", 1)) == {"revision": 1}
    assert store.certificate_body(db, "cal_1", "LOG-A", 3) is None
    assert store.certificate_body(db, "cal_1", "LOG-B") is None
    assert store.certificate_session(db, "CT-cal_1-LOG-A", "LOG-A") == "cal_1"
    assert store.certificate_session(db, "CT-cal_1-LOG-A", "LOG-B") is None

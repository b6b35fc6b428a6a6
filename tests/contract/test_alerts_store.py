"""The AlertStore contract (coldtrace/store/alerts.py): every function of the alerts family against a fresh
database - create, read back, conflicts, ordering, not-found - with the same statement texts in every dialect.

The migrations' triggers (1151) are part of what is checked: an alert's ``condition`` follows its excursion.
"""

from __future__ import annotations

import inspect
import json

import pytest

from coldtrace.core.model import MINUTE, Alert, Excursion
from coldtrace.ports import AlertQuery, AlertStore
from coldtrace.store import alerts as store
from coldtrace.store import devices as device_store
from coldtrace.store.db import Database
from coldtrace.store.excursions import upsert_excursion

T0 = 1_795_687_200_000  # 2026-11-26T08:00:00Z


def _exc(series: str = "LOG-1", limit: str = "high", severity: str = "alarm", start: int = T0,
         end: int | None = None, threshold: float = 8.0, alarm_ts: int | None = None) -> Excursion:
    return Excursion(series, limit, "high", threshold, severity, start, end, 0 if end is None else end - start,
                     9.0, 1.0, alarm_ts, None if alarm_ts is None else "consecutive")


def _store_exc(db: Database, e: Excursion, now: int = T0, superseded: bool = False) -> str:
    with db.write() as c:
        upsert_excursion(c, e, e.series_id, None, now)
        if superseded:
            c.execute("UPDATE excursions SET superseded = 1, updated_at = ? WHERE id = ?", (now, e.id))
    return e.id


def _alert(db: Database, id_: str, *, type_: str = "device.offline", severity: str = "alarm",
           device: str | None = "LOG-1", ts: int = T0, created_at: int | None = None, data: dict | None = None,
           excursion_id: str | None = None, shipment_id: str | None = None) -> bool:
    a = Alert(id_, type_, severity, device, ts, data or {}, shipment_id, excursion_id)
    with db.write() as c:
        return store.insert_alert(c, a, ts if created_at is None else created_at)


def _ids(rows) -> list[str]:
    return [r["id"] for r in rows]


def test_the_module_implements_every_function_of_the_port_with_its_parameters():
    members = [n for n, f in vars(AlertStore).items() if callable(f) and not n.startswith("_")]
    assert len(members) >= 26
    for name in members:
        want = list(inspect.signature(getattr(AlertStore, name)).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(store, name)).parameters) == want, name


# ---------------------------------------------------------------- alerts


def test_insert_is_idempotent_by_id_and_the_first_alert_is_kept(db):
    assert _alert(db, "al_1", data={"n": 1}, shipment_id="SHP-1") is True
    assert _alert(db, "al_1", data={"n": 2}, severity="critical") is False
    a = store.get_alert(db, "al_1")
    assert a is not None
    assert (a["type"], a["severity"], a["device_id"], a["shipment_id"], a["excursion_id"], a["ts"],
            a["created_at"], json.loads(a["data"]), a["state"]) == (
        "device.offline", "alarm", "LOG-1", "SHP-1", None, T0, T0, {"n": 1}, "open")
    assert (a["condition"], a["cleared_at"], a["shelved_until"]) == ("active", None, None)
    assert store.get_alert(db, "al_nope") is None


def test_the_condition_follows_the_excursion_and_the_device_coming_back(db):
    open_exc = _store_exc(db, _exc())
    _alert(db, "al_open", type_="excursion.alarm", excursion_id=open_exc)
    _alert(db, "al_off", type_="device.offline", device="LOG-2")
    assert store.get_alert(db, "al_open")["condition"] == "active"
    _alert(db, "al_on", type_="device.online", severity="info", device="LOG-2", ts=T0 + 5 * MINUTE)
    assert (store.get_alert(db, "al_off")["condition"], store.get_alert(db, "al_off")["cleared_at"]) == (
        "cleared", T0 + 5 * MINUTE)
    assert store.get_alert(db, "al_on")["condition"] == "cleared"
    _store_exc(db, _exc(end=T0 + 30 * MINUTE), now=T0 + 31 * MINUTE)  # the excursion ends
    a = store.get_alert(db, "al_open")
    assert (a["condition"], a["cleared_at"]) == ("cleared", T0 + 31 * MINUTE)


# ---------------------------------------------------------------- handling and history


def test_the_lifecycle_row_is_made_once_and_every_change_reads_back(db):
    _alert(db, "al_1")
    h = store.get_handling(db, "al_1")
    assert h is not None and h["assignee"] is None and h["escalations"] is None  # no lifecycle row yet
    assert store.get_lifecycle(db, "al_1") is None
    assert store.get_handling(db, "al_nope") is None
    with db.write() as c:
        store.ensure_lifecycle(c, "al_1")
        store.ensure_lifecycle(c, "al_1")  # again: nothing changes
        store.set_assignee(c, "al_1", "bob")
        store.record_escalation(c, "al_1", 1, T0 + 30 * MINUTE, T0 + 90 * MINUTE)
    life = store.get_lifecycle(db, "al_1")
    assert (life["assignee"], life["escalations"], life["last_escalated_at"], life["next_escalation_at"]) == (
        "bob", 1, T0 + 30 * MINUTE, T0 + 90 * MINUTE)
    with db.write() as c:
        store.mark_shelved(c, "al_1", T0 + 120 * MINUTE, T0 + 40 * MINUTE, "carol", "planned defrost")
    h = store.get_handling(db, "al_1")
    assert (h["shelved_until"], h["shelved_at"], h["shelved_by"], h["shelve_reason"]) == (
        T0 + 120 * MINUTE, T0 + 40 * MINUTE, "carol", "planned defrost")
    with db.write() as c:
        store.clear_shelving(c, "al_1")
        store.mark_acknowledged(c, "al_1", T0 + 50 * MINUTE, "bob", "on my way")
    h = store.get_handling(db, "al_1")
    assert (h["state"], h["shelved_until"], h["acknowledged_at"], h["acknowledged_by"], h["ack_comment"],
            h["next_escalation_at"], h["escalations"]) == ("acknowledged", None, T0 + 50 * MINUTE, "bob",
                                                           "on my way", None, 1)
    with db.write() as c:
        store.mark_shelved(c, "al_1", T0 + 200 * MINUTE, T0 + 60 * MINUTE, "carol", "again")
        store.mark_resolved(c, "al_1", T0 + 70 * MINUTE, "carol", "door fixed")
    h = store.get_handling(db, "al_1")
    assert (h["state"], h["shelved_until"], h["resolved_at"], h["resolved_by"], h["resolution"]) == (
        "resolved", None, T0 + 70 * MINUTE, "carol", "door fixed")


def test_events_are_appended_in_order_per_alert(db):
    _alert(db, "al_1")
    _alert(db, "al_2")
    with db.write() as c:
        first = store.insert_event(c, "al_1", T0 + 2, "bob", "acknowledged", "seen", json.dumps({"x": 1}))
        other = store.insert_event(c, "al_2", T0 + 1, "carol", "commented", "n/a", None)
        second = store.insert_event(c, "al_1", T0 + 1, "system", "escalated", None, None)
    assert first < other < second
    ev = store.events(db, "al_1")
    assert [(e["id"], e["alert_id"], e["at"], e["actor"], e["action"], e["comment"]) for e in ev] == [
        (first, "al_1", T0 + 2, "bob", "acknowledged", "seen"), (second, "al_1", T0 + 1, "system", "escalated", None)]
    assert json.loads(ev[0]["data"]) == {"x": 1} and ev[1]["data"] is None
    assert store.events(db, "al_nope") == []


# ---------------------------------------------------------------- what a shipment's report and checklist read

def _row(c, aid, ts, *, type_="excursion.alarm", severity="alarm", device=None, shipment_id=None):
    """An alert row as the report's and checklist's tests need it (data: a limit id)."""
    c.execute("INSERT INTO alerts (id, type, severity, device_id, shipment_id, ts, created_at, data) VALUES"
              " (?, ?, ?, ?, ?, ?, ?, ?)", (aid, type_, severity, device, shipment_id, ts, ts,
                                            json.dumps({"limit_id": "hi"})))


def test_shipment_alerts_are_its_own_and_its_loggers_inside_their_windows(db):
    with db.write() as c:
        _row(c, "a_own", T0 + 50, type_="lot.stability_low", shipment_id="shp_1")
        _row(c, "a_in", T0 + 10, device="LOG-A", type_="excursion.opened", severity="info")
        _row(c, "a_early", T0 - 1, device="LOG-A")
        _row(c, "a_end", T0 + 100, device="LOG-A")  # the window's end is exclusive
        _row(c, "a_b", T0 + 20, device="LOG-B")
        _row(c, "a_other", T0 + 30, device="LOG-C")
    rows = store.shipment_alerts(db, "shp_1", [("LOG-A", T0, T0 + 100), ("LOG-B", T0, T0 + 100)])
    assert [r["id"] for r in rows] == ["a_in", "a_b", "a_own"]
    assert [r["id"] for r in store.shipment_alerts(db, "shp_1", [("LOG-A", T0, T0 + 100)], limit=1)] == ["a_in"]
    assert [r["id"] for r in store.shipment_alerts(db, "shp_1", [])] == ["a_own"]


def test_shipment_alarms_carry_their_acknowledgement(db):
    with db.write() as c:
        _row(c, "a_own", T0 + 50, type_="lot.stability_exhausted", severity="critical", shipment_id="shp_1")
        _row(c, "a_low", T0 + 60, type_="lot.stability_low", severity="warning", shipment_id="shp_1")
        _row(c, "a_2", T0 + 20, device="LOG-A")
        _row(c, "a_1", T0 + 20, device="LOG-A")
        _row(c, "a_opened", T0 + 30, device="LOG-A", type_="excursion.opened", severity="info")
        _row(c, "a_late", T0 + 200, device="LOG-A")
        c.execute("INSERT INTO alert_lifecycle (alert_id, acknowledged_at, acknowledged_by, ack_comment) VALUES"
                  " (?, ?, ?, ?)", ("a_2", T0 + 40, "qa1", "checked the door"))
    rows = store.shipment_alarms(db, "shp_1", ("lot.stability_exhausted",), [("LOG-A", T0, T0 + 100)])
    assert [r["id"] for r in rows] == ["a_1", "a_2", "a_own"]  # by time, then id
    assert (rows[1]["acknowledged_at"], rows[1]["acknowledged_by"], rows[1]["ack_comment"]) == (
        T0 + 40, "qa1", "checked the door")
    assert rows[0]["acknowledged_at"] is None and json.loads(rows[0]["data"]) == {"limit_id": "hi"}
    assert set(rows[0]) == {"id", "type", "severity", "device_id", "ts", "state", "data", "excursion_id",
                            "acknowledged_at", "acknowledged_by", "ack_comment"}
    assert store.shipment_alarms(db, "shp_2", ("lot.stability_exhausted",), []) == []


def test_events_with_some_actions_oldest_first(db):
    with db.write() as c:
        for at, action, comment in ((T0 + 3, "commented", "x"), (T0 + 1, "acknowledged", "seen"),
                                    (T0 + 5, "acknowledged", "again"), (T0 + 7, "escalated", None)):
            c.execute("INSERT INTO alert_events (alert_id, at, actor, action, comment) VALUES (?, ?, ?, ?, ?)",
                      ("a_1", at, "qa1", action, comment))
    assert [e["at"] for e in store.events_with_actions(db, "a_1", ("acknowledged", "commented"))] == [T0 + 3, T0 + 1,
                                                                                              T0 + 5]
    assert store.events_with_actions(db, "a_1", ("acknowledged",), limit=1) == [
        {"at": T0 + 1, "actor": "qa1", "action": "acknowledged", "comment": "seen"}]
    assert store.events_with_actions(db, "a_2", ("acknowledged",)) == []



# ---------------------------------------------------------------- listings


def _listing_fixture(db: Database) -> None:
    _alert(db, "al_a", severity="critical", device="LOG-1", ts=T0, created_at=T0 + 1)
    _alert(db, "al_b", type_="excursion.started", severity="info", device="LOG-2", ts=T0 + 5, created_at=T0 + 2)
    _alert(db, "al_c", severity="warning", device="LOG-1", ts=T0 + 3, created_at=T0 + 2, shipment_id="SHP-1")
    _alert(db, "al_d", severity="alarm", device="LOG-3", ts=T0, created_at=T0 + 3)


def test_listing_is_newest_first_with_filters_and_pages(db):
    _listing_fixture(db)
    now = T0 + 10
    assert _ids(store.list_alerts(db, AlertQuery(), now, 100)) == ["al_d", "al_b", "al_c", "al_a"]
    assert _ids(store.list_alerts(db, AlertQuery(), now, 2, 1)) == ["al_b", "al_c"]
    assert _ids(store.list_alerts(db, AlertQuery(device_id="LOG-1"), now, 100)) == ["al_c", "al_a"]
    assert _ids(store.list_alerts(db, AlertQuery(type="excursion.started"), now, 100)) == ["al_b"]
    assert _ids(store.list_alerts(db, AlertQuery(severity="warning"), now, 100)) == ["al_c"]
    assert _ids(store.list_alerts(db, AlertQuery(severities=("critical", "alarm")), now, 100)) == ["al_d", "al_a"]
    assert store.list_alerts(db, AlertQuery(severities=()), now, 100) == []
    assert _ids(store.list_alerts(db, AlertQuery(shipment_id="SHP-1"), now, 100)) == ["al_c"]
    assert _ids(store.list_alerts(db, AlertQuery(since=T0 + 2), now, 100)) == ["al_d", "al_b", "al_c"]
    assert _ids(store.list_alerts(db, AlertQuery(state="open", condition="active", device_id="LOG-3"), now,
                                  100)) == ["al_d"]
    assert store.list_alerts(db, AlertQuery(state="resolved"), now, 100) == []
    assert store.list_alerts(db, AlertQuery(device_id="LOG-9"), now, 100) == []
    with pytest.raises(ValueError):
        store.list_alerts(db, AlertQuery(view="everything"), now, 100)


def test_the_inbox_orders_by_isa_state_then_severity_and_hides_what_needs_nobody(db):
    _listing_fixture(db)
    _alert(db, "al_e", type_="device.online", severity="info", device="LOG-7", created_at=T0 + 4)  # cleared
    _alert(db, "al_f", severity="critical", device="LOG-8", created_at=T0 + 5)
    _alert(db, "al_g", type_="device.online", severity="info", device="LOG-9", created_at=T0 + 6)
    now = T0 + 10 * MINUTE
    with db.write() as c:
        for i in ("al_a", "al_d", "al_e", "al_f", "al_c"):
            store.ensure_lifecycle(c, i)
        store.set_assignee(c, "al_d", "bob")
        store.mark_acknowledged(c, "al_a", now, "bob", None)  # acknowledged, still active
        store.mark_acknowledged(c, "al_e", now, "bob", None)  # acknowledged and cleared: normal
        store.mark_shelved(c, "al_f", now + MINUTE, now, "carol", "defrost")  # shelved
        store.mark_shelved(c, "al_c", now, now - MINUTE, "carol", "expired")  # shelving over at now
        store.mark_resolved(c, "al_b", now, "carol", "done")
    inbox = store.list_alerts(db, AlertQuery(view="inbox"), now, 100)
    # unacknowledged-active by severity (al_d alarm, al_c warning), acknowledged-active, unacknowledged-cleared
    assert _ids(inbox) == ["al_d", "al_c", "al_a", "al_g"]
    assert [r["assignee"] for r in inbox] == ["bob", None, None, None]
    assert _ids(store.list_alerts(db, AlertQuery(view="inbox", device_id="LOG-1"), now, 100)) == ["al_c", "al_a"]
    assert _ids(store.list_alerts(db, AlertQuery(view="shelved"), now, 100)) == ["al_f"]
    assert _ids(store.list_alerts(db, AlertQuery(view="inbox"), now + MINUTE, 100)) == [
        "al_f", "al_d", "al_c", "al_a", "al_g"]  # the shelving ran out


# ---------------------------------------------------------------- episodes


def test_an_episode_has_its_stages_with_their_newest_alarm(db):
    warn = _store_exc(db, _exc(limit="high_warn", severity="warning", alarm_ts=T0 + MINUTE))
    alarm = _store_exc(db, _exc(limit="high", severity="alarm"))
    _store_exc(db, _exc(limit="high_other", severity="critical"), superseded=True)  # taken back: not a stage
    _store_exc(db, _exc(limit="later", start=T0 + 60 * MINUTE))  # another start: another episode
    _store_exc(db, _exc(series="LOG-2", limit="high"))  # another series
    _alert(db, "al_w1", type_="excursion.alarm", severity="warning", excursion_id=warn, created_at=T0 + 1)
    _alert(db, "al_w2", type_="excursion.alarm", severity="warning", excursion_id=warn, created_at=T0 + 2)
    _alert(db, "al_w0", type_="excursion.started", severity="info", excursion_id=warn, created_at=T0 + 3)
    end, stages = store.episode_stages(db, warn, "high", 8.0, T0)
    assert end is None
    by_limit = {s["limit_id"]: s for s in stages}
    assert set(by_limit) == {"high_warn", "high"}
    assert (by_limit["high_warn"]["alert_id"], by_limit["high_warn"]["alert_state"],
            by_limit["high_warn"]["alarm_ts"], by_limit["high_warn"]["alarm_kind"],
            by_limit["high_warn"]["severity"], by_limit["high_warn"]["excursion_id"]) == (
        "al_w2", "open", T0 + MINUTE, "consecutive", "warning", warn)
    assert (by_limit["high"]["alert_id"], by_limit["high"]["alert_state"], by_limit["high"]["alarm_ts"]) == (
        None, None, None)
    assert store.episode_stages(db, alarm, "high", 8.5, T0)[1] == []  # another threshold
    assert store.episode_stages(db, "exc_nope", "high", 8.0, T0) is None


def test_open_alerts_of_an_episode_are_found_per_device(db):
    exc = _store_exc(db, _exc())
    ep = {"episode_id": "ep_1"}
    _alert(db, "al_1", type_="excursion.alarm", excursion_id=exc, data=ep, created_at=T0 + 2)
    _alert(db, "al_2", type_="excursion.alarm", excursion_id=exc, data=ep, created_at=T0 + 1)
    _alert(db, "al_3", type_="excursion.alarm", excursion_id=exc, data={"episode_id": "ep_2"})
    _alert(db, "al_4", type_="excursion.alarm", excursion_id=exc, data=ep, device="LOG-2")
    _alert(db, "al_5", type_="device.offline", data=ep)  # no excursion
    _alert(db, "al_6", type_="excursion.alarm", excursion_id=exc, data=ep, device=None)
    _alert(db, "al_7", type_="excursion.alarm", excursion_id=exc, data=ep)
    with db.write() as c:
        store.ensure_lifecycle(c, "al_7")
        store.mark_acknowledged(c, "al_7", T0, "bob", None)  # no longer open
        assert store.open_episode_alerts(c, "ep_1", "LOG-1", "al_1") == ["al_2"]
        assert store.open_episode_alerts(c, "ep_1", "LOG-1", "al_x") == ["al_2", "al_1"]  # oldest first
        assert store.open_episode_alerts(c, "ep_1", None, "al_x") == ["al_6"]
        assert store.open_episode_alerts(c, "ep_9", "LOG-1", "al_x") == []


# ---------------------------------------------------------------- the clock's queries


def test_expired_shelvings_earliest_first_and_acknowledged_cleared(db):
    for i, created in (("al_1", T0 + 3), ("al_2", T0 + 1), ("al_3", T0 + 2)):
        _alert(db, i, type_="device.online", severity="info", device=i, created_at=created)  # cleared at once
    _alert(db, "al_4", device="LOG-4")  # active
    with db.write() as c:
        for i in ("al_1", "al_2", "al_3", "al_4"):
            store.ensure_lifecycle(c, i)
            store.mark_acknowledged(c, i, T0 + 5, "bob", None)
        store.mark_shelved(c, "al_1", T0 + 20, T0, "carol", "r")
        store.mark_shelved(c, "al_2", T0 + 10, T0, "carol", "r")
        store.mark_shelved(c, "al_3", T0 + 30, T0, "carol", "r")
    assert store.expired_shelvings(db, T0 + 20) == ["al_2", "al_1"]
    assert store.expired_shelvings(db, T0 + 9) == []
    assert store.acknowledged_and_cleared(db) == ["al_2", "al_3", "al_1"]


def test_escalations_fall_due_after_their_delay_then_on_schedule_up_to_the_cap(db):
    after = {"critical": 15 * MINUTE, "alarm": 30 * MINUTE}
    excluded = ["excursion.closed"]
    _alert(db, "al_c", severity="critical", device="A", created_at=T0)
    _alert(db, "al_a", severity="alarm", device="B", created_at=T0 - MINUTE)
    _alert(db, "al_w", severity="warning", device="C", created_at=T0 - 60 * MINUTE)  # not escalated
    _alert(db, "al_x", type_="excursion.closed", severity="critical", device="D", created_at=T0 - 60 * MINUTE)
    assert store.due_escalations(db, T0 + 15 * MINUTE - 1, after, excluded, None) == []
    assert store.due_escalations(db, T0 + 15 * MINUTE, after, excluded, None) == ["al_c"]
    assert store.due_escalations(db, T0 + 29 * MINUTE, after, excluded, None) == ["al_a", "al_c"]
    assert store.due_escalations(db, T0 + 29 * MINUTE, after, [], None) == ["al_x", "al_a", "al_c"]
    assert store.due_escalations(db, T0 + 29 * MINUTE, {}, excluded, None) == []
    with db.write() as c:
        store.ensure_lifecycle(c, "al_c")
        store.record_escalation(c, "al_c", 1, T0 + 15 * MINUTE, T0 + 45 * MINUTE)
        store.ensure_lifecycle(c, "al_a")
        store.record_escalation(c, "al_a", 2, T0 + 29 * MINUTE, None)  # no repeat scheduled
    assert store.due_escalations(db, T0 + 44 * MINUTE, after, excluded, None) == []
    assert store.due_escalations(db, T0 + 45 * MINUTE, after, excluded, None) == ["al_c"]
    assert store.due_escalations(db, T0 + 45 * MINUTE, after, excluded, 1) == []  # capped at one
    with db.write() as c:
        store.mark_shelved(c, "al_c", T0 + 50 * MINUTE, T0 + 44 * MINUTE, "carol", "r")
    assert store.due_escalations(db, T0 + 46 * MINUTE, after, excluded, None) == []  # shelved
    assert store.due_escalations(db, T0 + 50 * MINUTE, after, excluded, None) == ["al_c"]
    with db.write() as c:
        store.mark_acknowledged(c, "al_c", T0 + 51 * MINUTE, "bob", None)
    assert store.due_escalations(db, T0 + 600 * MINUTE, after, excluded, None) == []


def test_self_resolvable_alerts_are_quiet_cleared_info_and_warnings(db):
    quiet_since = T0 + 120 * MINUTE
    ended = _store_exc(db, _exc(limit="lo", start=T0, end=T0 + 10 * MINUTE))
    recurs = _store_exc(db, _exc(limit="hi", start=T0, end=T0 + 10 * MINUTE))
    _store_exc(db, _exc(limit="hi", start=T0 + 100 * MINUTE))  # the same limit again, still open
    late = _store_exc(db, _exc(series="LOG-2", limit="lo", start=T0, end=T0 + 125 * MINUTE))
    gone = _store_exc(db, _exc(series="LOG-3", limit="lo", start=T0, end=T0 + 10 * MINUTE), superseded=True)
    _alert(db, "al_1", type_="excursion.alarm", severity="warning", excursion_id=ended, created_at=T0)
    _alert(db, "al_2", type_="excursion.alarm", severity="alarm", excursion_id=ended, created_at=T0)
    _alert(db, "al_3", type_="excursion.started", severity="info", excursion_id=recurs, created_at=T0)
    _alert(db, "al_4", type_="excursion.started", severity="info", device="LOG-2", excursion_id=late)
    _alert(db, "al_5", type_="excursion.started", severity="info", device="LOG-3", excursion_id=gone)
    _alert(db, "al_6", type_="device.online", severity="info", device="LOG-6", created_at=T0 + 120 * MINUTE)
    _alert(db, "al_7", type_="device.online", severity="info", device="LOG-7", created_at=T0 + 121 * MINUTE)
    _alert(db, "al_8", type_="excursion.started", severity="info", excursion_id=ended, created_at=T0)
    with db.write() as c:
        store.ensure_lifecycle(c, "al_8")
        store.mark_resolved(c, "al_8", T0, "bob", "done")
    rows = store.self_resolvable(db, quiet_since)
    assert rows == [
        {"alert_id": "al_1", "severity": "warning", "device_id": "LOG-1", "excursion_end_ts": T0 + 10 * MINUTE},
        {"alert_id": "al_6", "severity": "info", "device_id": "LOG-6", "excursion_end_ts": None}]


def test_information_events_of_a_recurring_limit_resolve_once_their_own_excursion_is_quiet(db):
    """Seen from outside (issue 13 judge): a fridge opened every 20 min never stays below 8 °C for 60 min, so
    under the warning rule (no later episode ended less than 60 min ago) its door openings' information
    events never resolved: 60 of 99 info alerts of `run --simulate` were still open after 2 h, growing ~12 an
    hour per fridge. An information event resolves once its own excursion ended `quiet` ago and the limit is
    not exceeded right now (no later episode still open); a warning keeps the stricter rule."""
    quiet_since = T0 + 120 * MINUTE  # now: T0 + 180 min, quiet: 60 min
    old = _store_exc(db, _exc(limit="high", start=T0, end=T0 + 3 * MINUTE))  # a door opening 3 h ago
    _store_exc(db, _exc(limit="high", start=T0 + 160 * MINUTE, end=T0 + 163 * MINUTE))  # the last, 17 min ago
    warn = _store_exc(db, _exc(series="LOG-2", limit="high-warn", severity="warning", start=T0,
                               end=T0 + 3 * MINUTE))
    _store_exc(db, _exc(series="LOG-2", limit="high-warn", severity="warning", start=T0 + 160 * MINUTE,
                        end=T0 + 163 * MINUTE))
    now_open = _store_exc(db, _exc(series="LOG-3", limit="high", start=T0, end=T0 + 3 * MINUTE))
    _store_exc(db, _exc(series="LOG-3", limit="high", start=T0 + 178 * MINUTE))  # the door is open right now
    _alert(db, "al_1", type_="excursion.opened", severity="info", excursion_id=old, created_at=T0)
    _alert(db, "al_2", type_="excursion.closed", severity="info", excursion_id=old, created_at=T0 + 3 * MINUTE)
    _alert(db, "al_3", type_="excursion.alarm", severity="warning", device="LOG-2", excursion_id=warn)
    _alert(db, "al_4", type_="excursion.opened", severity="info", device="LOG-3", excursion_id=now_open)
    rows = store.self_resolvable(db, quiet_since)
    assert [r["alert_id"] for r in rows] == ["al_1", "al_2"]
    assert rows[0] == {"alert_id": "al_1", "severity": "info", "device_id": "LOG-1",
                       "excursion_end_ts": T0 + 3 * MINUTE}


def test_profiles_of_devices_are_read_in_chunks(db):
    with db.write() as c:
        c.execute("INSERT INTO profiles (id, name, body, updated_at) VALUES (?,?,?,0)", ("p1", "P1", '{"a":1}'))
        for i in range(1203):
            c.execute("INSERT INTO devices (id, registered_at, profile_id) VALUES (?, 0, ?)",
                      (f"D{i:04d}", "p1" if i % 2 == 0 else None))
    ids = [f"D{i:04d}" for i in range(1203)] + ["NOPE"]
    rows = device_store.device_profile_bodies(db, ids + ids[:10])
    assert rows == [(f"D{i:04d}", "p1", '{"a":1}') for i in range(0, 1203, 2)]
    assert device_store.device_profile_bodies(db, []) == []


# ---------------------------------------------------------------- alarm-system health


def test_alarms_raised_in_a_half_open_window_with_what_they_are_about(db):
    _alert(db, "al_1", type_="excursion.alarm", severity="alarm", created_at=T0,
           data={"limit_id": "high", "kind": "k"})
    _alert(db, "al_2", type_="sensor.fault", severity="warning", created_at=T0 + 1, data={"kind": "stuck"})
    _alert(db, "al_3", type_="calibration.drift", severity="critical", created_at=T0 + 2,
           data={"limit_id": None, "set_point_c": {"nominal": 5.0, "unit": "°C"}})
    _alert(db, "al_4", type_="x.flag", severity="warning", created_at=T0 + 3, data={"stage": True})
    _alert(db, "al_5", type_="x.none", severity="warning", created_at=T0 + 4, data={"other": 1})
    _alert(db, "al_6", type_="x.info", severity="info", created_at=T0 + 5, data={"kind": "i"})  # not an alarm
    _alert(db, "al_7", type_="x.late", severity="alarm", created_at=T0 + 10, data={"set_point_c": 5.0})
    rows = store.alarms_raised(db, T0, T0 + 10, ("warning", "alarm", "critical"))
    assert [(r["id"], r["detail"]) for r in rows] == [
        ("al_1", "high"), ("al_2", "stuck"), ("al_3", '{"nominal":5.0,"unit":"°C"}'), ("al_4", 1),
        ("al_5", None)]
    assert (rows[0]["created_at"], rows[0]["ts"], rows[0]["type"], rows[0]["severity"], rows[0]["device_id"],
            rows[0]["state"]) == (T0, T0, "excursion.alarm", "alarm", "LOG-1", "open")
    assert [r["detail"] for r in store.alarms_raised(db, T0 + 10, T0 + 11, ("alarm",))] == [5.0]
    assert store.alarms_raised(db, T0, T0 + 10, ()) == []


def test_standing_alarms_are_active_unresolved_and_old_enough(db):
    exc = _store_exc(db, _exc())
    _alert(db, "al_1", type_="excursion.alarm", excursion_id=exc, ts=T0 + 5, data={"limit_id": "high"})
    _alert(db, "al_2", type_="device.offline", device="LOG-2", ts=T0)
    _alert(db, "al_3", type_="device.offline", device="LOG-3", ts=T0 + 100)  # too recent
    _alert(db, "al_4", type_="device.offline", device="LOG-4", ts=T0, severity="info")  # not an alarm
    _alert(db, "al_5", type_="device.offline", device="LOG-5", ts=T0)
    _alert(db, "al_6", type_="device.online", device="LOG-5", ts=T0 + 1)  # clears al_5
    _alert(db, "al_7", type_="excursion.revised", device="LOG-7", ts=T0 + 1)  # a correction: not a condition
    _alert(db, "al_8", type_="device.offline", device="LOG-8", ts=T0)
    with db.write() as c:
        store.ensure_lifecycle(c, "al_8")
        store.mark_resolved(c, "al_8", T0 + 2, "bob", "moved")
    alarms = ("warning", "alarm", "critical")
    rows = store.standing_alarms(db, T0 + 50, alarms, ("excursion.revised",))
    assert [(r["id"], r["detail"]) for r in rows] == [("al_2", None), ("al_1", "high")]  # oldest first
    assert _ids(store.standing_alarms(db, T0 + 50, alarms, ())) == ["al_2", "al_7", "al_1"]
    assert store.standing_alarms(db, T0 + 50, (), ()) == []


# ---- statements of the ingest pipeline, the data-loss guard and the health endpoint ------------------------

def test_alert_and_outbox_rows_are_idempotent(db):
    a = Alert(id="al-1", type="broker.messages_dropped", severity="alarm", device_id=None, ts=5,
              data={"broker": "b1"})
    with db.write() as c:
        assert store.insert_alert(c, a, 10, '{"broker": "b1"}') is True
        assert store.insert_alert(c, a, 11, '{"broker": "b1"}') is False
        store.insert_outbox(c, ("ev-1", a.type, a.id, "{}", 10))
        store.insert_outbox(c, ("ev-1", a.type, a.id, "{}", 11))
    assert store.open_alerts_of_type(db.conn(), "broker.messages_dropped") == [("al-1", '{"broker": "b1"}')]
    assert store.open_alerts_of_type(db.conn(), "other") == []
    assert store.alerts_by_type(db.conn()) == {"broker.messages_dropped": 1}
    assert store.outbox_pending(db.conn()) == 1
    assert store.alert_kinds(db.conn()) == [(None, "broker.messages_dropped", "alarm")]

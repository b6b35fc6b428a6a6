"""The ShipmentStore contract (coldtrace/store/shipments.py): every function against a fresh database, through
the same ``db.write()`` transactions the services use; create, read back, conflicts, ordering, not found."""

from __future__ import annotations

import inspect

import pytest

from coldtrace.core.errors import NotFound
from coldtrace.core.model import Excursion
from coldtrace.ports import ShipmentStore
from coldtrace.store import devices as device_store
from coldtrace.store import excursions as excursion_store
from coldtrace.store import shipments as store
from coldtrace.store.excursions import upsert_excursion

T0 = 1_795_687_200_000  # 2026-11-26T08:00:00Z
HOUR = 3_600_000


def shipment(sid, **over):
    return {"id": sid, "reference": f"REF-{sid}", "origin": "Basel", "destination": "Leeds", "product": "P-1",
            "lot": "L-1", "profile_id": "2-8C", "state": "planned", "created_at": T0, "created_by": "qa1",
            "updated_at": T0, **over}


def add(db, *rows):
    with db.write() as c:
        for r in rows:
            assert store.insert_shipment(c, r)


def logger(sid, dev, start=None, end=None):
    return {"shipment_id": sid, "device_id": dev, "start_ts": start, "end_ts": end, "attached_at": T0,
            "attached_by": "qa1"}


def test_the_module_implements_every_function_of_the_port_with_its_parameters():
    members = [n for n, f in vars(ShipmentStore).items() if callable(f) and not n.startswith("_")]
    assert len(members) >= 12
    for name in members:
        want = list(inspect.signature(getattr(ShipmentStore, name)).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(store, name)).parameters) == want, name


# ---------------------------------------------------------------- shipments

def test_a_shipment_is_created_read_back_and_updated(db):
    add(db, shipment("shp_1"))
    assert store.get_shipment(db, "shp_1") == shipment("shp_1") | {"start_ts": None, "end_ts": None}
    with db.write() as c:
        store.update_shipment(c, "shp_1", state="in_transit", start_ts=T0 + 5, updated_at=T0 + 5)
    got = store.get_shipment(db, "shp_1")
    assert (got["state"], got["start_ts"], got["updated_at"], got["origin"]) == ("in_transit", T0 + 5, T0 + 5,
                                                                                "Basel")


def test_a_duplicate_id_or_reference_stores_nothing_and_says_so(db):
    add(db, shipment("shp_1"))
    with db.write() as c:
        assert not store.insert_shipment(c, shipment("shp_1", origin="Elsewhere"))
        assert not store.insert_shipment(c, shipment("shp_2", reference="REF-shp_1"))
    assert store.get_shipment(db, "shp_1")["origin"] == "Basel"
    assert [s["id"] for s in store.list_shipments(db)] == ["shp_1"]


def test_unknown_fields_and_shipments(db):
    add(db, shipment("shp_1"))
    with pytest.raises(ValueError, match="unknown shipment fields"), db.write() as c:
        store.update_shipment(c, "shp_1", reference="X", colour="red")
    assert store.get_shipment(db, "shp_1")["reference"] == "REF-shp_1"
    with pytest.raises(NotFound, match="no shipment shp_9"):
        store.get_shipment(db, "shp_9")


def test_shipments_are_listed_by_id_with_filters_and_keyset_pages(db):
    add(db, shipment("shp_3", lot="L-2"), shipment("shp_1"), shipment("shp_2", state="in_transit", product="P-2"))
    with db.write() as c:
        store.attach_logger(c, logger("shp_3", "LOG-1"))
        store.attach_logger(c, logger("shp_1", "LOG-2"))
    ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
    assert ids(store.list_shipments(db)) == ["shp_1", "shp_2", "shp_3"]
    assert ids(store.list_shipments(db, state="planned")) == ["shp_1", "shp_3"]
    assert ids(store.list_shipments(db, product="P-2")) == ["shp_2"]
    assert ids(store.list_shipments(db, lot="L-2")) == ["shp_3"]
    assert ids(store.list_shipments(db, device_id="LOG-1")) == ["shp_3"]
    assert ids(store.list_shipments(db, after="shp_1", limit=1)) == ["shp_2"]
    assert ids(store.list_shipments(db, limit=0)) == ["shp_1"]  # at least one per page
    assert store.list_shipments(db, device_id="LOG-9") == []


def test_a_lot_is_its_shipments_in_journey_order(db):
    add(db, shipment("shp_c", start_ts=T0 + 2 * HOUR), shipment("shp_a", start_ts=T0 + HOUR),
        shipment("shp_b", created_at=T0 - HOUR), shipment("shp_x", lot="L-9"))
    # not departed: ordered by creation; the start time once departed
    assert [s["id"] for s in store.lot_shipments(db, "P-1", "L-1")] == ["shp_b", "shp_a", "shp_c"]
    assert store.lot_shipments(db, "P-1", "L-0") == []


def test_the_shipments_the_clock_reevaluates(db):
    add(db, shipment("shp_2", state="delivered"), shipment("shp_1", state="in_transit"), shipment("shp_0"),
        shipment("shp_3", state="released"))
    assert store.shipments_to_tick(db) == [{"id": "shp_1", "product": "P-1", "lot": "L-1"},
                                           {"id": "shp_2", "product": "P-1", "lot": "L-1"}]


# ---------------------------------------------------------------- loggers

def test_loggers_are_attached_once_read_by_device_and_detached(db):
    add(db, shipment("shp_1"), shipment("shp_2"))
    with db.write() as c:
        assert store.attach_logger(c, logger("shp_1", "LOG-B", T0, T0 + HOUR))
        assert store.attach_logger(c, logger("shp_1", "LOG-A"))
        assert store.attach_logger(c, logger("shp_2", "LOG-A"))
        assert not store.attach_logger(c, logger("shp_1", "LOG-A", T0))  # attached already: unchanged
    assert store.loggers(db, "shp_1") == [logger("shp_1", "LOG-A"), logger("shp_1", "LOG-B", T0, T0 + HOUR)]
    with db.write() as c:
        assert store.detach_logger(c, "shp_1", "LOG-A") == 1
        assert store.detach_logger(c, "shp_1", "LOG-A") == 0
    assert [lg["device_id"] for lg in store.loggers(db, "shp_1")] == ["LOG-B"]
    assert [lg["device_id"] for lg in store.loggers(db, "shp_2")] == ["LOG-A"]


def test_active_shipments_of_devices(db):
    add(db, shipment("shp_2", state="in_transit"), shipment("shp_1", state="delivered"), shipment("shp_3"),
        shipment("shp_4", state="released"))
    with db.write() as c:
        for sid in ("shp_1", "shp_2", "shp_3", "shp_4"):
            store.attach_logger(c, logger(sid, "LOG-A"))
        store.attach_logger(c, logger("shp_2", "LOG-B"))
    assert store.active_shipments_of_devices(db, ["LOG-A", "LOG-B"]) == ["shp_1", "shp_2"]  # each once
    assert store.active_shipments_of_devices(db, ["LOG-B"]) == ["shp_2"]
    assert store.active_shipments_of_devices(db, []) == []


# ---------------------------------------------------------------- signed decisions

def decision(did, signed_at, supersedes=None, meaning="released"):
    return {"id": did, "shipment_id": "shp_1", "meaning": meaning, "reason": "ok", "signer_user_id": "u1",
            "signer_username": "qa1", "printed_name": "Q. A.", "signed_at": signed_at, "supersedes_id": supersedes,
            "supersede_reason": "new data" if supersedes else None, "record_hash": "a" * 64,
            "signature_hash": "b" * 64}


def test_decisions_are_oldest_first_and_within_one_millisecond_along_the_supersession_chain(db):
    add(db, shipment("shp_1"), shipment("shp_2"))
    assert store.decisions(db, "shp_1") == []
    # ids sort against the order of signing: the order must come from the times and the chain
    chain = [decision("sd_z", T0), decision("sd_m", T0 + 5, "sd_z", "quarantined"),
             decision("sd_a", T0 + 5, "sd_m", "rejected"), decision("sd_0", T0 + 5, "sd_a")]
    with db.write() as c:
        for d in chain:
            store.insert_decision(c, d)
    assert store.decisions(db, "shp_1") == chain
    assert store.decisions(db, "shp_2") == []


def test_a_signed_decision_is_never_edited_or_duplicated(db):
    add(db, shipment("shp_1"))
    with db.write() as c:
        store.insert_decision(c, decision("sd_1", T0))
    with pytest.raises(Exception), db.write() as c:  # noqa: B017 - each dialect raises its own integrity error
        store.insert_decision(c, decision("sd_1", T0 + 1, meaning="rejected"))
    assert store.decisions(db, "shp_1") == [decision("sd_1", T0)]


# ---------------------------------------------------------------- what the checklist reads of other families

def test_open_conflicts_count_unresolved_conflicting_duplicates_inside_a_window(db):
    with db.write() as c:
        for dev, ts, reason, resolved in (("LOG-A", T0, "conflicting_duplicate", None),
                                          ("LOG-A", T0 + 99, "conflicting_duplicate", None),
                                          ("LOG-A", T0 + 100, "conflicting_duplicate", None),
                                          ("LOG-A", T0 + 5, "conflicting_duplicate", T0 + 6),
                                          ("LOG-A", T0 + 5, "bad_value", None),
                                          ("LOG-B", T0 + 5, "conflicting_duplicate", None)):
            c.execute("INSERT INTO quarantine (received_at, source, device_id, reason, detail, reading_ts,"
                      " resolved_at) VALUES (?, 'mqtt', ?, ?, 'x', ?, ?)", (T0, dev, reason, ts, resolved))
    assert device_store.open_conflicts_in(db, "LOG-A", T0, T0 + 100) == 2
    assert device_store.open_conflicts_in(db, "LOG-A", T0, None) == 3
    assert device_store.open_conflicts_in(db, "LOG-A", T0 + 1, T0 + 100) == 1
    assert device_store.open_conflicts_in(db, "LOG-C", T0, None) == 0


def test_profile_bodies_of_stored_profiles(db):
    with db.write() as c:
        c.execute("INSERT INTO profiles (id, name, body, updated_at) VALUES (?, ?, ?, ?)",
                  ("custom-1", "Custom", '{"id": "custom-1"}', T0))
    assert device_store.profile_body(db.conn(), "custom-1") == '{"id": "custom-1"}'
    assert device_store.profile_body(db.conn(), "nope") is None


def test_shipment_excursions_late_data_removed_are_superseded_not_deleted(db):
    def exc(series, start):
        return Excursion(series, "hi", "above", 8.0, "alarm", start, start + 10, 10, 9.0, 0.1)

    keep, gone, other = exc("shp_1:LOG-A", T0), exc("shp_1:LOG-A", T0 + 100), exc("LOG-A", T0 + 100)
    with db.write() as c:
        upsert_excursion(c, keep, "LOG-A", "shp_1", T0)
        upsert_excursion(c, gone, "LOG-A", "shp_1", T0)
        upsert_excursion(c, other, "LOG-A", None, T0)  # the device's own series: not the shipment's
        assert excursion_store.supersede_shipment_excursions(c, "shp_1", {keep.id}, T0 + 9) == [gone.id]
        assert excursion_store.supersede_shipment_excursions(c, "shp_1", {keep.id}, T0 + 10) == []  # done already
    rows = {r["id"]: (r["superseded"], r["updated_at"]) for r in db.query("SELECT id, superseded, updated_at"
                                                                          " FROM excursions")}
    assert rows == {keep.id: (0, T0), gone.id: (1, T0 + 9), other.id: (0, T0)}

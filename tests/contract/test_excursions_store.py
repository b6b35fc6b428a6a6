"""The ExcursionStore contract (coldtrace/store/excursions.py): excursions by stable id (superseded, never
deleted), the alert stream's announced state, and the live evaluation's series checkpoints."""

from __future__ import annotations

from coldtrace.core.model import Excursion
from coldtrace.store import excursions as store


def exc(start: int, end: int | None, *, series: str = "LOG-1", limit: str = "high", alarm: int | None = None,
        peak: float = 9.0) -> Excursion:
    return Excursion(series, limit, "above", 8.0, "alarm", start, end, (end or start + 60_000) - start, peak, 1.5,
                     alarm, None if alarm is None else "consecutive")


def test_upsert_reads_back_updates_and_unsupersedes(db):
    e = exc(1000, None)
    with db.write() as c:
        store.upsert_excursion(c, e, "LOG-1", None, 5)
    assert store.stored_excursions(db.conn(), "LOG-1") == [e]
    closed = exc(1000, 61_000, alarm=31_000, peak=9.5)  # the same episode (same id), now closed
    with db.write() as c:
        store.supersede(c, [e.id], 6)
    assert store.stored_excursions(db.conn(), "LOG-1") == []
    with db.write() as c:
        store.upsert_excursion(c, closed, "LOG-1", "SHP-1", 7)
    assert store.stored_excursions(db.conn(), "LOG-1") == [closed]
    row = store.get_excursion(db.conn(), closed.id)
    assert (row["superseded"], row["updated_at"], row["end_ts"], row["peak_c"], row["alarm_kind"]) == (
        0, 7, 61_000, 9.5, "consecutive")
    assert store.get_excursion(db.conn(), "nope") is None


def test_stored_excursions_since_a_checkpoint(db):
    before = exc(1_000, 2_000, limit="a")  # ended before the checkpoint: cannot change
    spans = exc(1_000, 9_000, limit="b")  # ends after it
    opened = exc(1_500, None, limit="c")  # still open
    after = exc(6_000, 7_000, limit="d")  # started after it
    with db.write() as c:
        for e in (before, spans, opened, after):
            store.upsert_excursion(c, e, "LOG-1", None, 1)
        store.upsert_excursion(c, exc(6_000, None, series="LOG-2"), "LOG-2", None, 1)
    assert {e.limit_id for e in store.stored_excursions(db.conn(), "LOG-1", since=5_000)} == {"b", "c", "d"}
    assert {e.limit_id for e in store.stored_excursions(db.conn(), "LOG-1")} == {"a", "b", "c", "d"}


def test_list_excursions_overlapping_a_range_with_filters_and_order(db):
    rows = [(exc(1_000, 2_000, limit="low"), "A", None), (exc(1_000, None, limit="high", alarm=1_500), "A", "S1"),
            (exc(5_000, 6_000, series="B"), "B", None), (exc(9_000, 9_500, series="C"), "C", None)]
    with db.write() as c:
        for e, dev, shp in rows:
            store.upsert_excursion(c, e, dev, shp, 1)
        store.supersede(c, [rows[3][0].id], 2)
    ids = [r["limit_id"] + "@" + r["device_id"] for r in store.list_excursions(db.conn(), start=0, end=10_000)]
    assert ids == ["high@B", "high@A", "low@A"]  # newest start first, then limit id; superseded left out
    assert [r["device_id"] for r in store.list_excursions(db.conn(), start=3_000, end=10_000)] == ["B", "A"]
    assert [r["limit_id"] for r in store.list_excursions(db.conn(), start=0, end=10_000, device_id="A",
                                                         open=True)] == ["high"]
    assert [r["limit_id"] for r in store.list_excursions(db.conn(), start=0, end=10_000, open=False,
                                                         device_id="A")] == ["low"]
    assert [r["shipment_id"] for r in store.list_excursions(db.conn(), start=0, end=10_000, alarmed=True)] == ["S1"]
    assert len(store.list_excursions(db.conn(), start=0, end=10_000, alarmed=False)) == 2
    assert [r["device_id"] for r in store.list_excursions(db.conn(), start=0, end=10_000, shipment_id="S1")] == ["A"]
    assert [r["limit_id"] for r in store.list_excursions(db.conn(), start=0, end=10_000, limit_id="low")] == ["low"]
    assert [r["device_id"] for r in store.list_excursions(db.conn(), start=0, end=10_000, limit=1, offset=1)] == ["A"]
    assert store.list_excursions(db.conn(), start=0, end=500) == []


def test_alert_states_upsert_and_the_last_row_of_an_id_wins(db):
    assert store.alert_states(db.conn(), ["x"]) == {}
    with db.write() as c:
        store.save_alert_states(c, [("x", 1, '{"s": 1}', 10), ("y", 1, '{"s": 1}', 10), ("x", 2, '{"s": 2}', 11)])
    assert store.alert_states(db.conn(), ["x", "y", "z"]) == {"x": (2, '{"s": 2}'), "y": (1, '{"s": 1}')}
    ids = [f"e{i}" for i in range(1200)]
    with db.write() as c:
        store.save_alert_states(c, [(i, 1, "{}", 1) for i in ids])
    assert len(store.alert_states(db.conn(), ids)) == 1200


def test_checkpoints_by_profile_hash_replaced_and_pruned(db):
    assert store.checkpoint_before(db.conn(), "LOG-1", 10_000, "h1") is None
    assert store.last_checkpoint_ts(db.conn(), "LOG-1") is None
    with db.write() as c:
        store.save_checkpoints(c, [("LOG-1", 1_000, "h1", "s1"), ("LOG-1", 2_000, "h2", "s2"),
                                   ("LOG-1", 2_000, "h1", "s2b"), ("LOG-2", 500, "h1", "t")], cutoff=0)
    assert store.checkpoint_before(db.conn(), "LOG-1", 10_000, "h1") == (2_000, "s2b")  # replaced: last wins
    assert store.checkpoint_before(db.conn(), "LOG-1", 2_000, "h1") == (1_000, "s1")  # strictly before
    assert store.checkpoint_before(db.conn(), "LOG-1", 10_000, "h2") is None
    assert store.last_checkpoint_ts(db.conn(), "LOG-1") == 2_000
    with db.write() as c:  # the older checkpoints of the series stored now are dropped, others kept
        store.save_checkpoints(c, [("LOG-1", 5_000, "h1", "s5")], cutoff=1_500)
    assert store.checkpoint_before(db.conn(), "LOG-1", 2_000, "h1") is None
    assert store.checkpoint_before(db.conn(), "LOG-2", 1_000, "h1") == (500, "t")
    with db.write() as c:
        store.delete_checkpoints_from(c, "LOG-1", 2_000)
    assert store.last_checkpoint_ts(db.conn(), "LOG-1") is None
    assert store.last_checkpoint_ts(db.conn(), "LOG-2") == 500

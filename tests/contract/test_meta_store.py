"""The MetaStore contract (coldtrace/store/meta.py): small shared key/value settings."""

from __future__ import annotations

import pytest

from coldtrace.core.errors import StoreError
from coldtrace.store import meta


def test_get_put_and_replace(db):
    assert meta.get(db.conn(), "sim.anchor_ms") is None
    with db.write() as c:
        meta.put(c, "sim.anchor_ms", "123")
    assert meta.get(db.conn(), "sim.anchor_ms") == "123"
    with db.write() as c:
        meta.put(c, "sim.anchor_ms", "456")  # an upsert: the new value replaces the old
    assert meta.get(db.conn(), "sim.anchor_ms") == "456"


def test_add_refuses_a_key_that_exists_and_the_transaction_rolls_back(db):
    with db.write() as c:
        meta.add(c, "k", "first")
    with pytest.raises(Exception) as info:  # noqa: PT011 - each dialect's integrity error
        with db.write() as c:
            meta.put(c, "other", "x")
            meta.add(c, "k", "second")
    assert isinstance(info.value, StoreError) or "unique" in str(info.value).lower()
    assert meta.get(db.conn(), "k") == "first"
    assert meta.get(db.conn(), "other") is None  # the whole transaction rolled back


def test_first_with_prefix_is_literal_and_in_key_order(db):
    with db.write() as c:
        meta.put(c, "broker.dropped.b", "2")
        meta.put(c, "broker.dropped.a", "1")
        meta.put(c, "brokerXdropped.0", "wrong")  # '.' and '_' are not wildcards
        meta.put(c, "BROKER.DROPPED.0", "case")  # and case matters, in both dialects
    assert meta.first_with_prefix(db.conn(), "broker.dropped.") == "1"
    assert meta.first_with_prefix(db.conn(), "broker_dropped") is None
    assert meta.first_with_prefix(db.conn(), "100%") is None


def test_with_prefix_lists_every_key_literally_in_key_order(db):
    with db.write() as c:
        meta.put(c, "broker.stored.b:1883", "20")
        meta.put(c, "broker.stored.a:1883", "10")
        meta.put(c, "brokerXstored.c", "wrong")
        meta.put(c, "BROKER.STORED.d", "case")
    assert meta.with_prefix(db.conn(), "broker.stored.") == [("broker.stored.a:1883", "10"),
                                                             ("broker.stored.b:1883", "20")]
    assert meta.with_prefix(db.conn(), "broker_stored") == []


def test_config_version_is_bumped_by_profile_changes(db):
    from coldtrace.store import devices

    before = int(meta.get(db.conn(), meta.CONFIG_VERSION))
    with db.write() as c:
        devices.save_profile(c, "p1", "P1", '{"id": "p1"}', 1, "qa")
    assert int(meta.get(db.conn(), meta.CONFIG_VERSION)) > before


def test_the_database_answers_and_counts_its_migrations(db):
    meta.ping(db.conn())
    assert meta.migrations_applied(db.conn()) >= 20

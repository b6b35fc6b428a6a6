"""Gateway spool contract: one suite, run on the memory and the SQLite implementation."""

from __future__ import annotations

import json
import logging

import pytest

from coldtrace.core.errors import ConfigError, StoreError
from gateway.spool import MemorySpool, SqliteSpool, read_depth


def enc(n: int = 1, pad: int = 0):
    """An encoder like the gateway's: the payload carries the seq the spool assigned."""
    return lambda seq: json.dumps({"seq": seq, "n": n, "pad": "x" * pad}).encode()


@pytest.fixture(params=["memory", "sqlite"])
def make_spool(request, tmp_path):
    made = []

    def make(**kw):
        if request.param == "memory":
            s = MemorySpool(**kw)
        else:
            s = SqliteSpool(tmp_path / f"spool{len(made)}.db", **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_put_peek_ack_in_order(make_spool):
    s = make_spool()
    ids = [s.put("A", enc(), 10, now_ms=i).id for i in range(5)]
    assert ids == sorted(ids)
    got = s.peek(limit=3)
    assert [e.id for e in got] == ids[:3]
    assert [json.loads(e.payload)["seq"] for e in got] == [1, 2, 3]
    assert [e.created_ms for e in got] == [0, 1, 2]
    assert [e.id for e in s.peek(after_id=ids[2])] == ids[3:]
    assert s.ack([ids[0], ids[2]]) == 2
    assert [e.id for e in s.peek()] == [ids[1], ids[3], ids[4]]
    assert s.ack([ids[0], 999_999]) == 0  # acking twice, or something unknown, changes nothing
    st = s.status()
    assert (st.entries, st.readings) == (3, 30)
    assert st.bytes == sum(len(e.payload) for e in s.peek())


def test_seq_counts_per_device(make_spool):
    s = make_spool()
    seqs = [(d, s.put(d, enc(), 1, 0).seq) for d in "ABAAB"]
    assert seqs == [("A", 1), ("B", 1), ("A", 2), ("A", 3), ("B", 2)]
    assert [e.device_id for e in s.peek()] == list("ABAAB")


def test_reject_new_policy(make_spool, caplog):
    s = make_spool(max_readings=25, policy="reject-new")
    assert s.put("A", enc(), 10, 0).accepted
    assert s.put("A", enc(), 10, 0).accepted
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        r = s.put("A", enc(), 10, 0)
    assert not r.accepted and r.id is None and r.seq == 3  # the lost message still consumed its seq
    assert "REJECTED" in caplog.text
    st = s.status()
    assert st.full and st.rejected_entries == 1 and st.rejected_readings == 10 and st.readings == 20
    assert [json.loads(e.payload)["seq"] for e in s.peek()] == [1, 2]
    s.ack([e.id for e in s.peek(limit=1)])
    assert s.put("A", enc(), 5, 0).accepted
    assert not s.status().full
    assert s.put("A", enc(), 1, 0).seq == 5


def test_drop_oldest_policy(make_spool, caplog):
    s = make_spool(max_readings=30, policy="drop-oldest")
    for _ in range(3):
        s.put("A", enc(), 10, 0)
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        r = s.put("B", enc(), 15, 0)
    assert r.accepted and r.dropped_entries == 2 and r.dropped_readings == 20
    assert "drop-oldest" in caplog.text
    st = s.status()
    assert st.full and st.dropped_entries == 2 and st.dropped_readings == 20 and st.readings == 25
    assert [(e.device_id, e.seq) for e in s.peek()] == [("A", 3), ("B", 1)]


@pytest.mark.parametrize("policy", ["reject-new", "drop-oldest"])
def test_full_stays_set_until_delivery_frees_room(make_spool, policy):
    """Messages of uneven size: after the limit is hit, a small message that still squeezes in must not make
    a spool at its limit (which lost data) report itself healthy; only an ack (delivery resumed) clears it."""
    s = make_spool(max_readings=30, policy=policy)
    for _ in range(3):
        assert s.put("A", enc(), 9, 0).accepted  # 27 of 30
    r = s.put("A", enc(), 9, 0)
    assert (not r.accepted) if policy == "reject-new" else r.dropped_entries == 1
    assert s.status().full
    r = s.put("A", enc(), 3, 0)  # fits without rejecting or dropping anything
    assert r.accepted and not r.dropped_entries
    st = s.status()
    assert st.full and st.readings == 30
    assert st.readings + st.rejected_readings + st.dropped_readings == 4 * 9 + 3  # every reading accounted
    s.ack([s.peek(limit=1)[0].id])
    assert not s.status().full


def test_byte_limit_and_oversized_message(make_spool):
    s = make_spool(max_bytes=400, policy="drop-oldest")
    assert s.put("A", enc(pad=100), 1, 0).accepted
    assert s.put("A", enc(pad=100), 1, 0).accepted
    r = s.put("A", enc(pad=1000), 1, 0)  # could never fit: rejected even with drop-oldest
    assert not r.accepted
    assert s.status().entries == 2 and s.status().rejected_entries == 1
    assert s.status().bytes <= 400


def test_bad_configuration_is_refused(make_spool):
    with pytest.raises(ConfigError):
        make_spool(policy="drop-newest")
    with pytest.raises(ConfigError):
        make_spool(max_readings=0)


def test_sqlite_spool_survives_reopen_with_seq_and_counters(tmp_path):
    path = tmp_path / "gw.db"
    s = SqliteSpool(path, max_readings=15)
    s.put("A", enc(), 10, 0)
    s.put("A", enc(), 10, 0)  # rejected
    s.close()
    s = SqliteSpool(path, max_readings=15)
    try:
        st = s.status()
        assert (st.entries, st.readings, st.rejected_readings) == (1, 10, 10)
        assert s.put("A", enc(), 1, 0).seq == 3
        assert read_depth(path) == (2, 11)
    finally:
        s.close()


def test_sqlite_spool_is_owned_by_one_gateway(tmp_path):
    s = SqliteSpool(tmp_path / "gw.db")
    try:
        with pytest.raises(StoreError, match="in use"):
            SqliteSpool(tmp_path / "gw.db")
    finally:
        s.close()
    SqliteSpool(tmp_path / "gw.db").close()  # released on close (and by the kernel on SIGKILL)

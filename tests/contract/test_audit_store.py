"""The AuditStore contract (coldtrace/store/audit.py) against a fresh database of each dialect, and the
property the next step (several API processes on one database) depends on: concurrent writers, each in
its own transaction on its own connection, append to ONE chain (no fork, no gap, every record verifies)."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path

import pytest

from coldtrace import ports
from coldtrace.core.errors import StoreError
from coldtrace.ports import AuditRow
from coldtrace.services import audit
from coldtrace.store import audit as store
from coldtrace.store.db import Database
from coldtrace.store.postgres import PostgresDatabase

T0 = 1_795_687_200_000
DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.fixture(params=DIALECTS)
def open_db(request, tmp_path):
    """A factory of Database objects on one fresh database: each has its own connections, as a separate
    process would (the SQLite file, or the PostgreSQL database)."""
    opened = []
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")

        def factory():
            opened.append(PostgresDatabase(url))
            return opened[-1]
    else:
        def factory():
            opened.append(Database(tmp_path / "contract.db"))
            return opened[-1]
    yield factory
    for d in opened:
        d.close()


@pytest.fixture
def db(open_db):
    return open_db()


def row(id_: int, *, prev: str = audit.GENESIS, h: str | None = None, ts: int = T0, actor: str = "qa.anna",
        action: str = "shipment.create", entity: str = "shipment", entity_id: str | None = "SHP-1",
        key_id: str | None = "k1") -> AuditRow:
    return AuditRow(id=id_, ts=ts, actor=actor, action=action, entity=entity, entity_id=entity_id,
                    old_value=None, new_value='{"state":"planned"}', reason=None, prev_hash=prev,
                    hash=h or f"{id_:064x}", key_id=key_id)


def test_the_module_implements_the_port():
    for name, member in inspect.getmembers(ports.AuditStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        fn = getattr(store, name, None)
        assert fn is not None, f"store.audit lacks {name}"
        want = [p for p in inspect.signature(member).parameters if p != "self"]
        assert list(inspect.signature(fn).parameters) == want, name


def test_an_empty_trail(db):
    assert store.chain_head(db) is None
    assert audit.head(db) == (0, audit.GENESIS)
    with db.write() as c:
        assert store.next_id(c) == 1
    assert store.records_after(db, 0, 10) == []
    assert not store.has_keyed_records(db)
    assert store.last_unkeyed_id(db) is None


def test_append_read_back_head_and_next_id(db):
    with db.write() as c:
        store.lock_chain(c)
        store.append(c, row(1, key_id=None))
        assert store.next_id(c) == 2
        store.append(c, row(2, prev=f"{1:064x}"))
    assert store.chain_head(db) == (2, f"{2:064x}")
    got = store.records_after(db, 0, 10)
    assert got == [row(1, key_id=None), row(2, prev=f"{1:064x}")]
    assert store.records_after(db, 1, 10) == [got[1]]
    assert store.records_after(db, 0, 1) == [got[0]]
    assert store.has_keyed_records(db)
    assert store.last_unkeyed_id(db) == 1


def test_an_id_is_never_given_twice(db):
    """Two appends that read the same head collide on the id: the chain cannot fork silently."""
    with db.write() as c:
        store.append(c, row(1))
    with pytest.raises(StoreError), db.write() as c:
        store.append(c, row(1, h="f" * 64))
    assert store.records_after(db, 0, 10) == [row(1)]


def test_a_rolled_back_append_leaves_no_gap(db):
    with db.write() as c:
        store.append(c, row(1))
    with pytest.raises(RuntimeError), db.write() as c:
        store.append(c, row(2, prev=f"{1:064x}"))
        raise RuntimeError("the change this record belonged to failed")
    with db.write() as c:
        assert store.next_id(c) == 2


def test_records_are_append_only(db):
    with db.write() as c:
        store.append(c, row(1))
    for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(StoreError, match="append-only"), db.write() as c:
            c.execute(sql)
    assert store.records_after(db, 0, 10) == [row(1)]


def test_search_filters_window_paging_and_page_cap(db):
    with db.write() as c:
        prev = audit.GENESIS
        for i in range(1, 9):
            r = row(i, prev=prev, ts=T0 + i, actor="qa.anna" if i % 2 else "admin.ada",
                    action="user.create" if i <= 4 else "decision.sign", entity="user" if i <= 4 else "shipment",
                    entity_id=f"E{i % 3}")
            store.append(c, r)
            prev = r["hash"]
    ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
    assert ids(store.search(db)) == list(range(1, 9))
    assert ids(store.search(db, actor="qa.anna")) == [1, 3, 5, 7]
    assert ids(store.search(db, entity="user", entity_id="E1")) == [1, 4]
    assert ids(store.search(db, action="decision.sign", actor="admin.ada")) == [6, 8]
    assert ids(store.search(db, start=T0 + 3, end=T0 + 6)) == [3, 4, 5]  # start <= ts < end
    assert ids(store.search(db, after_id=5, limit=2)) == [6, 7]
    assert ids(store.search(db, limit=0)) == [1]  # at least one
    assert ids(store.search(db, actor="nobody")) == []
    assert store.search(db, actor="qa.anna'; DROP TABLE audit_log; --") == []  # values are parameters
    assert store.MAX_PAGE == 1000


def test_the_key_files_live_beside_the_database(db, tmp_path):
    where = store.database_file(db)
    if getattr(db, "dialect", "sqlite") == "postgresql":
        assert where == ""  # no data directory given: the key comes from the environment or the process
    else:
        assert Path(where) == tmp_path / "contract.db"
        with db.write() as c:
            assert store.database_file(c) == where
    mem = Database(":memory:")
    try:
        assert store.database_file(mem) == ""
    finally:
        mem.close()


# ---------------------------------------------------------------- one chain under concurrent writers

def test_concurrent_writers_append_to_one_chain(open_db):
    """Six writers, each with its own Database (its own connections, as six API processes would have), append
    at the same moments; every record lands on the chain exactly once, with contiguous ids, each linked to the
    one before it, and the keyed chain verifies. On PostgreSQL the writers also skip the cluster-wide write
    lock (``write(lock=False)``): the chain's own lock is what keeps it one chain."""
    writers, per_writer = 6, 15
    dbs = [open_db() for _ in range(writers)]
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []
    ids: list[list[int]] = [[] for _ in range(writers)]

    def work(w: int) -> None:
        db = dbs[w]
        try:
            barrier.wait(30)
            for i in range(per_writer):
                tx = db.write(lock=False) if getattr(db, "dialect", "sqlite") == "postgresql" else db.write()
                with tx as c:
                    ids[w].append(audit.record_audit(c, actor=f"writer-{w}", action="test.append", entity="test",
                                                     entity_id=f"{w}:{i}", new={"i": i}, ts=T0 + i))
        except BaseException as exc:  # reported below, with the writer that failed
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = writers * per_writer
    every = sorted(i for w in ids for i in w)
    assert every == list(range(1, total + 1))  # each append got its own id, none lost, no gap
    rows = store.records_after(dbs[0], 0, total + 10)
    assert len(rows) == total
    assert {r["entity_id"] for r in rows} == {f"{w}:{i}" for w in range(writers) for i in range(per_writer)}
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]  # no fork: one line
    assert len({r["prev_hash"] for r in rows}) == total
    result = audit.verify(dbs[0])
    assert result.ok, result.problem
    assert (result.checked, result.head_id) == (total, total)

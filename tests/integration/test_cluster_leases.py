"""The cluster's named leases (coldtrace/store/cluster.py) on SQLite and PostgreSQL: one holder at a time,
renewal by the holder only, take-over after expiry with a new term, release, and many processes' worth of
connections racing for one lease: exactly one wins."""

from __future__ import annotations

import threading

import pytest

from coldtrace.store import cluster
from tests.integration.cluster_support import open_db

pytestmark = pytest.mark.integration

T = 1_796_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "ct.db")


def test_one_holder_renewal_takeover_and_release(target):
    db = open_db(target)
    try:
        a = cluster.acquire(db, "clock-tick", "a", T, 3000)
        assert (a.holder, a.term, a.acquired_at, a.expires_at) == ("a", 1, T, T + 3000)
        assert cluster.acquire(db, "clock-tick", "b", T + 2999, 3000) is None  # valid: b must wait
        renewed = cluster.acquire(db, "clock-tick", "a", T + 2000, 3000)
        assert (renewed.term, renewed.acquired_at, renewed.renewed_at, renewed.expires_at) == (1, T, T + 2000, T + 5000)
        assert cluster.acquire(db, "clock-tick", "b", T + 4999, 3000) is None
        b = cluster.acquire(db, "clock-tick", "b", T + 5000, 3000)  # expired: taken over, a new term
        assert (b.holder, b.term, b.acquired_at) == ("b", 2, T + 5000)
        assert cluster.acquire(db, "clock-tick", "a", T + 5001, 3000) is None  # the old leader is out
        assert cluster.acquire(db, "other", "a", T + 5001, 3000).term == 1  # leases are independent
        assert not cluster.release(db, "clock-tick", "a")  # only the holder gives it up
        assert cluster.current(db, "clock-tick").holder == "b"
        assert cluster.release(db, "clock-tick", "b")
        assert cluster.current(db, "clock-tick") is None
        assert cluster.acquire(db, "clock-tick", "c", T + 5002, 3000).holder == "c"
        with pytest.raises(ValueError):
            cluster.acquire(db, "clock-tick", "c", T, 0)
    finally:
        db.close()


def test_racing_contenders_one_wins(target):
    dbs = [open_db(target) for _ in range(4)]  # four connection pools, as four processes would have
    try:
        term, last = 0, None
        for round_no in range(5):
            now = T + round_no * 10_000  # each round starts after the previous lease expired
            start = threading.Barrier(8)
            won: list[str] = []

            def contend(i: int, start=start, now=now, won=won) -> None:
                start.wait()
                lease = cluster.acquire(dbs[i % 4], "race", f"p{i}", now, 5000)
                if lease is not None:
                    won.append(lease.holder)

            threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert len(won) == 1, won
            term += won[0] != last  # a new holder is a new term; the same one winning again renews
            last = won[0]
            lease = cluster.current(dbs[0], "race")
            assert (lease.holder, lease.term, lease.renewed_at) == (won[0], term, now)
    finally:
        for d in dbs:
            d.close()

"""The AuthStore contract (coldtrace/store/auth.py): users, tokens, sessions, failed sign-ins and the shared
sign-in throttle, against a fresh database of each dialect. Every function is exercised: create, read back,
conflicts, ordering, not-found."""

from __future__ import annotations

import inspect
import threading

import pytest

from coldtrace import ports
from coldtrace.core.model import MINUTE
from coldtrace.ports import FailureCount, ThrottleEntry, TokenOwner
from coldtrace.store import auth as store
from coldtrace.store.db import Database
from coldtrace.store.postgres import PostgresDatabase

T0 = 1_795_687_200_000  # 2026-11-26T08:00:00Z
DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


def add_user(db, uid: str, username: str, role: str = "qa", *, full_name: str | None = None, now: int = T0) -> bool:
    with db.write() as c:
        return store.insert_user(c, id=uid, username=username, full_name=full_name or username.title(),
                                 password_hash=f"$argon2id$fake${uid}", role=role, now=now)


def test_the_module_implements_the_port():
    """Every method of ports.AuthStore is a function of the store module with the same parameters."""
    for name, member in inspect.getmembers(ports.AuthStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        fn = getattr(store, name, None)
        assert fn is not None, f"store.auth lacks {name}"
        want = [p for p in inspect.signature(member).parameters if p != "self"]
        assert list(inspect.signature(fn).parameters) == want, name


# ---------------------------------------------------------------- users

def test_user_round_trip_and_not_found(db):
    assert add_user(db, "usr_1", "qa.anna", "qa", full_name="Anna Muster")
    want = {"id": "usr_1", "username": "qa.anna", "full_name": "Anna Muster", "role": "qa", "active": 1,
            "created_at": T0}
    assert store.get_user(db, "usr_1") == want
    assert store.find_user(db, "qa.anna") == want
    assert store.find_user_by_id_or_name(db, "usr_1") == want
    assert store.find_user_by_id_or_name(db, "qa.anna") == want
    assert store.get_user(db, "usr_x") is None
    assert store.find_user(db, "nobody") is None
    assert store.find_user_by_id_or_name(db, "nobody") is None
    login = store.login_row(db, "qa.anna")
    assert login is not None and login["password_hash"] == "$argon2id$fake$usr_1" and login["active"] == 1
    assert store.login_row(db, "nobody") is None


def test_usernames_are_one_person_whatever_their_case(db):
    assert add_user(db, "usr_1", "QA.Anna")
    assert not add_user(db, "usr_2", "qa.anna")  # taken: nothing written
    assert store.get_user(db, "usr_2") is None
    assert store.find_user(db, "qa.ANNA")["id"] == "usr_1"
    assert store.login_row(db, "qa.anna")["id"] == "usr_1"


def test_users_are_listed_by_username_without_regard_to_case(db):
    for uid, name in (("u1", "zoe"), ("u2", "Bernd"), ("u3", "anna"), ("u4", "Carla")):
        add_user(db, uid, name)
    assert [u["username"] for u in store.list_users(db)] == ["anna", "Bernd", "Carla", "zoe"]


def test_update_user_and_counting_the_other_active_admins(db):
    add_user(db, "adm_1", "admin.one", "admin")
    add_user(db, "adm_2", "admin.two", "admin")
    add_user(db, "usr_1", "viewer.vera", "viewer")
    with db.write() as c:
        assert store.active_admins_other_than(c, "adm_1") == 1
        store.update_user(c, "adm_2", full_name="Admin Two", role="admin", active=False, now=T0 + 5)
        assert store.active_admins_other_than(c, "adm_1") == 0
        assert store.active_admins_other_than(c, "usr_1") == 1
        store.update_user(c, "usr_1", full_name="Vera V.", role="qa", active=True, now=T0 + 5)
    assert store.get_user(db, "adm_2")["active"] == 0
    u = store.get_user(db, "usr_1")
    assert (u["full_name"], u["role"], u["active"]) == ("Vera V.", "qa", 1)


def test_set_password_clears_the_lock_and_not_found(db):
    add_user(db, "usr_1", "qa.anna")
    with db.write() as c:
        for i in range(5):
            store.record_login_failure(c, "usr_1", T0 + i, max_failures=5, lock_ms=15 * MINUTE)
        assert store.set_password(c, "usr_1", "$argon2id$new", T0 + 10)
        assert not store.set_password(c, "usr_x", "$argon2id$new", T0 + 10)
    assert store.login_row(db, "qa.anna")["password_hash"] == "$argon2id$new"
    with db.write() as c:  # the count starts again from nothing
        assert store.record_login_failure(c, "usr_1", T0 + 11, max_failures=5, lock_ms=MINUTE) == FailureCount(1, None)


# ---------------------------------------------------------------- the lockout count

def test_failures_count_lock_at_the_maximum_and_do_not_extend_the_lock(db):
    add_user(db, "usr_1", "qa.anna")
    lock = 15 * MINUTE
    with db.write() as c:
        got = [store.record_login_failure(c, "usr_1", T0 + i, max_failures=3, lock_ms=lock) for i in range(3)]
        assert got == [FailureCount(1, None), FailureCount(2, None), FailureCount(3, T0 + 2 + lock)]
        # while locked: counted, the lock stays where it was; a right password does not clear it
        assert store.record_login_failure(c, "usr_1", T0 + 5 * MINUTE, max_failures=3,
                                          lock_ms=lock) == FailureCount(4, T0 + 2 + lock)
        assert not store.clear_login_failures(c, "usr_1", T0 + 5 * MINUTE)
        # after the lock ended: the first failure starts a new count
        assert store.record_login_failure(c, "usr_1", T0 + 2 + lock, max_failures=3,
                                          lock_ms=lock) == FailureCount(1, None)
        assert store.clear_login_failures(c, "usr_1", T0 + 2 + lock + 1)
        assert store.record_login_failure(c, "usr_x", T0, max_failures=3, lock_ms=lock) is None
        assert not store.clear_login_failures(c, "usr_x", T0)


@pytest.fixture(params=DIALECTS)
def open_db(request, tmp_path):
    """A factory of Database objects on one fresh database, each with its own connections (as separate API
    processes would have)."""
    opened = []
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        make = lambda: PostgresDatabase(url, max_size=5)  # noqa: E731
    else:
        make = lambda: Database(tmp_path / "contract.db")  # noqa: E731

    def factory():
        opened.append(make())
        return opened[-1]

    yield factory
    for d in opened:
        d.close()


def test_forty_simultaneous_failures_from_separate_connections_all_count(open_db):
    """Issue 14's lockout bypass at its root: 40 failures at the same instant, from 8 "processes" with 5 threads
    each, every one in its own transaction. Each sees its own count (1..40: no update lost, which a read in
    Python, +1, write back loses), the lock is set once, at the 5th, and is not moved by the others. On
    PostgreSQL the writers skip the cluster-wide write lock (``write(lock=False)``): the single
    UPDATE ... RETURNING and the row lock it takes are what make the count atomic."""
    dbs = [open_db() for _ in range(8)]
    add_user(dbs[0], "usr_1", "qa.anna")
    lock, n = 15 * MINUTE, 40
    barrier = threading.Barrier(n)
    got: list[FailureCount | None] = [None] * n
    errors: list[BaseException] = []

    def fail(i: int) -> None:
        d = dbs[i % len(dbs)]
        try:
            barrier.wait(30)
            with d.write(lock=False) as c:
                got[i] = store.record_login_failure(c, "usr_1", T0, max_failures=5, lock_ms=lock)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(g.failed_logins for g in got) == list(range(1, n + 1))
    assert all(g.locked_until == (T0 + lock if g.failed_logins >= 5 else None) for g in got)
    row = dbs[0].query_one("SELECT failed_logins, locked_until FROM users WHERE id = 'usr_1'")
    assert (row[0], row[1]) == (n, T0 + lock)
    with dbs[1].write() as c:  # the right password does not open the locked account
        assert not store.clear_login_failures(c, "usr_1", T0 + MINUTE)


def test_a_disabled_account_is_never_cleared(db):
    add_user(db, "usr_1", "qa.anna")
    with db.write() as c:
        store.update_user(c, "usr_1", full_name="Anna", role="qa", active=False, now=T0)
        assert not store.clear_login_failures(c, "usr_1", T0)


def test_a_rehash_is_stored_only_over_the_hash_it_replaces(db):
    add_user(db, "usr_1", "qa.anna")
    with db.write() as c:
        assert not store.replace_password_hash(c, "usr_1", "$argon2id$rehash", "$argon2id$stale")
        assert store.replace_password_hash(c, "usr_1", "$argon2id$rehash", "$argon2id$fake$usr_1")
    assert store.login_row(db, "qa.anna")["password_hash"] == "$argon2id$rehash"


def test_failed_sign_ins_of_unknown_users_add_up_per_window_and_client(db):
    w = 10 * MINUTE
    with db.write() as c:
        for client, ts in (("192.0.2.1", T0), ("192.0.2.1", T0 + 7), ("192.0.2.9", T0 + 3),
                           ("192.0.2.9", T0 + w + 1)):
            store.note_unknown_failure(c, ts - ts % w, client, ts)
    start = T0  # a multiple of the window
    assert T0 % w == 0
    assert store.ended_unknown_windows(db, w, T0 + w - 1) == []  # the window is still open
    assert store.ended_unknown_windows(db, w, start + 2 * w) == [start, start + w]
    with db.write() as c:
        assert store.unknown_failures(c, start) == [
            {"client": "192.0.2.1", "attempts": 2, "first_ts": T0, "last_ts": T0 + 7},
            {"client": "192.0.2.9", "attempts": 1, "first_ts": T0 + 3, "last_ts": T0 + 3}]
        store.delete_unknown_window(c, start)
        assert store.unknown_failures(c, start) == []
    assert store.ended_unknown_windows(db, w, start + 2 * w) == [start + w]


# ---------------------------------------------------------------- tokens

def add_token(db, tid: str, *, user_id: str | None = None, role: str = "viewer", created: int = T0,
              expires: int | None = None) -> str:
    h = f"{tid:0<64}"[:64]
    with db.write() as c:
        store.insert_api_token(c, id=tid, token_hash=h, name=f"name-{tid}", user_id=user_id, role=role,
                               created_at=created, expires_at=expires)
    return h


def test_api_tokens_round_trip_owner_listing_and_revocation(db):
    add_user(db, "usr_1", "qa.anna", "qa")
    h1 = add_token(db, "tok_b", user_id="usr_1", role="qa", created=T0 + 2, expires=T0 + 10_000)
    h2 = add_token(db, "tok_a", role="admin", created=T0 + 1)
    assert [t["id"] for t in store.list_api_tokens(db)] == ["tok_a", "tok_b"]  # oldest first
    assert store.list_api_tokens(db)[1] == {"id": "tok_b", "name": "name-tok_b", "user_id": "usr_1", "role": "qa",
                                            "created_at": T0 + 2, "expires_at": T0 + 10_000, "revoked_at": None,
                                            "last_used_at": None}
    assert store.api_token_id(db, h1) == "tok_b" and store.api_token_id(db, "f" * 64) is None
    assert store.token_owner(db, "tok_b") == TokenOwner("api", "usr_1")
    assert store.token_owner(db, "tok_a") == TokenOwner("api", None)
    assert store.token_owner(db, "tok_x") is None
    b = store.bearer_api_token(db, h1)
    assert b == {"id": "tok_b", "name": "name-tok_b", "role": "qa", "user_id": "usr_1", "created_at": T0 + 2,
                 "expires_at": T0 + 10_000, "username": "qa.anna", "user_role": "qa", "active": 1}
    service = store.bearer_api_token(db, h2)
    assert service["user_id"] is None and service["username"] is None and service["active"] is None
    with db.write() as c:
        assert store.revoke_token(c, "tok_b", T0 + 50)
        assert not store.revoke_token(c, "tok_b", T0 + 60)  # already revoked
        assert not store.revoke_token(c, "tok_x", T0 + 60)
    assert store.bearer_api_token(db, h1) is None
    assert store.list_api_tokens(db)[1]["revoked_at"] == T0 + 50


def test_device_tokens_carry_their_devices_and_are_revoked_like_api_tokens(db):
    with db.write() as c:
        store.insert_device_token(c, id="dtk_1", token_hash="d" * 64, name="two", created_at=T0,
                                  device_ids=["LOG-2", "LOG-1"])
    dev = store.bearer_device_token(db, "d" * 64)
    assert (dev.id, dev.name, dev.device_ids) == ("dtk_1", "two", frozenset({"LOG-1", "LOG-2"}))
    assert store.bearer_device_token(db, "e" * 64) is None
    assert store.token_owner(db, "dtk_1") == TokenOwner("device", None)
    with db.write() as c:
        assert store.revoke_token(c, "dtk_1", T0 + 1)
    assert store.bearer_device_token(db, "d" * 64) is None


def test_all_tokens_list_api_then_device_tokens_with_users_and_devices(db):
    add_user(db, "usr_1", "qa.anna")
    add_token(db, "tok_2", user_id="usr_1", created=T0 + 5)
    add_token(db, "tok_1", created=T0 + 9)
    with db.write() as c:
        store.insert_device_token(c, id="dtk_9", token_hash="9" * 64, name="late", created_at=T0 + 2,
                                  device_ids=["LOG-B", "LOG-A"])
        store.insert_device_token(c, id="dtk_1", token_hash="1" * 64, name="early", created_at=T0 + 1,
                                  device_ids=["LOG-C"])
    got = store.list_all_tokens(db)
    assert [(t["id"], t["kind"], t["user"], t["devices"]) for t in got] == [
        ("tok_2", "api", "qa.anna", None), ("tok_1", "api", None, None),
        ("dtk_1", "device", None, ["LOG-C"]), ("dtk_9", "device", None, ["LOG-A", "LOG-B"])]
    assert got[2]["role"] == "device" and got[2]["expires_at"] is None


def test_last_use_is_read_and_touched_per_kind(db):
    add_token(db, "tok_1")
    with db.write() as c:
        store.insert_device_token(c, id="dtk_1", token_hash="d" * 64, name="d", created_at=T0, device_ids=["L"])
    assert store.token_last_used(db, "api", "tok_1") == (True, None)
    assert store.token_last_used(db, "device", "dtk_1") == (True, None)
    assert store.token_last_used(db, "api", "dtk_1") == (False, None)  # each kind reads its own table
    with db.write() as c:
        store.touch_token(c, "api", "tok_1", T0 + 7)
        store.touch_token(c, "device", "dtk_1", T0 + 8)
    assert store.token_last_used(db, "api", "tok_1") == (True, T0 + 7)
    assert store.token_last_used(db, "device", "dtk_1") == (True, T0 + 8)
    with pytest.raises(KeyError):  # a table name is never taken from the caller
        store.token_last_used(db, "users", "tok_1")


# ---------------------------------------------------------------- sessions

def test_sessions_round_trip_touch_and_revoke(db):
    add_user(db, "usr_1", "qa.anna", "qa")
    with db.write() as c:
        store.insert_session(c, id_hash="a" * 64, user_id="usr_1", csrf_token="csrf", created_at=T0,
                             expires_at=T0 + 1000)
        store.insert_session(c, id_hash="b" * 64, user_id="usr_1", csrf_token="csrf2", created_at=T0,
                             expires_at=T0 + 1000)
    assert store.session(db, "a" * 64) == {"id_hash": "a" * 64, "user_id": "usr_1", "csrf_token": "csrf",
                                           "created_at": T0, "expires_at": T0 + 1000, "last_seen_at": T0,
                                           "revoked_at": None, "username": "qa.anna", "role": "qa", "active": 1}
    assert store.session(db, "c" * 64) is None
    with db.write() as c:
        store.touch_session(c, "a" * 64, T0 + 60)
        store.revoke_session(c, "a" * 64, T0 + 70)
        store.revoke_session(c, "a" * 64, T0 + 99)  # the first revocation stands
    s = store.session(db, "a" * 64)
    assert (s["last_seen_at"], s["revoked_at"]) == (T0 + 60, T0 + 70)
    with db.write() as c:
        assert store.revoke_user_sessions(c, "usr_1", T0 + 80) == 1  # only b was still open
        assert store.revoke_user_sessions(c, "usr_1", T0 + 90) == 0
    assert store.session(db, "b" * 64)["revoked_at"] == T0 + 80


# ---------------------------------------------------------------- start-up checks

def test_credentials_checks(db):
    assert not store.any_user_or_api_token(db)
    assert not store.any_active_user(db) and not store.any_live_api_token(db, T0)
    add_token(db, "tok_1", expires=T0 + 10)
    assert store.any_user_or_api_token(db)
    assert store.any_live_api_token(db, T0 + 9) and not store.any_live_api_token(db, T0 + 10)
    add_token(db, "tok_2")  # no expiry
    with db.write() as c:
        store.revoke_token(c, "tok_2", T0)
    assert not store.any_live_api_token(db, T0 + 10)
    add_user(db, "usr_1", "qa.anna")
    assert store.any_active_user(db)
    with db.write() as c:
        store.update_user(c, "usr_1", full_name="Anna", role="qa", active=False, now=T0)
    assert not store.any_active_user(db)


# ---------------------------------------------------------------- the sign-in throttle's counts

def test_throttle_entries_put_forget_prune_and_size(db):
    assert store.throttle_entries(db, ["c:192.0.2.1", "u:anna"]) == []
    assert store.throttle_entries(db, []) == []
    with db.write() as c:
        store.throttle_put(c, "u:anna", 1, T0)
        store.throttle_put(c, "c:192.0.2.1", 1, T0)
        store.throttle_put(c, "u:anna", 2, T0 + 5)  # an upsert: one row per key
        store.throttle_put(c, "u:old", 9, T0 - 30 * MINUTE)  # at the bound: pruned
    assert store.throttle_entries(db, ["u:anna", "c:192.0.2.1", "u:nobody"]) == [
        ThrottleEntry("c:192.0.2.1", 1, T0), ThrottleEntry("u:anna", 2, T0 + 5)]
    assert store.throttle_size(db) == 3
    with db.write() as c:
        assert store.throttle_prune(c, T0 - 30 * MINUTE) == 1
        store.throttle_forget(c, ["u:anna", "u:nobody"])
        store.throttle_forget(c, [])
    assert store.throttle_entries(db, ["u:anna", "c:192.0.2.1", "u:old"]) == [ThrottleEntry("c:192.0.2.1", 1, T0)]
    assert store.throttle_size(db) == 1


# ---------------------------------------------------------------- another family's table

def test_registered_devices_for_the_broker_acl_leave_gateways_out(db):
    with db.write() as c:
        c.execute("INSERT INTO devices (id, kind, registered_at) VALUES ('LOG-2', 'logger', ?),"
                  " ('GW-1', 'gateway', ?), ('REF-1', 'reference', ?)", (T0, T0, T0))
    assert store.registered_device_ids(db) == ["LOG-2", "REF-1"]

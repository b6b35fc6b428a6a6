"""Audit anchoring against someone who holds the database file: keyed hashes (HMAC, key outside the
database) catch a tail rewritten and re-hashed; signed heads exported to a file outside the database catch
a truncated tail and a rewrite by someone who also has the HMAC key; the heads verify with the public key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import MINUTE
from coldtrace.services import audit, audit_anchor, audit_keys
from coldtrace.store.db import Database
from tests.support.stack import start_stack
from tests.support.store_reads import attacker_connection

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False,
                    audit={"head_file": tmp_path / "elsewhere" / "heads.jsonl"})
    yield s
    s.close()
    audit_keys.forget_cached_keys()


def _history(stack, n: int = 4, tag: str = "A") -> None:
    for i in range(n):
        r = stack.client.post("/api/v1/shipments", headers=stack.headers, json={
            "reference": f"SHP-{tag}{i}", "origin": "Basel", "destination": "Leeds", "product": "IMP-7", "lot": "L1"})
        assert r.status_code == 201, r.text


def _raw(stack):
    return attacker_connection(stack.services.db)


def _rewrite_tail(stack, from_id: int, rehash) -> None:
    """What someone with only the database file does: drop the triggers, change records from ``from_id``
    on and recompute every hash after them with ``rehash(row, prev_hash) -> (hash, key_id)``."""
    conn = _raw(stack)
    try:
        conn.execute("DROP TRIGGER audit_log_no_update")
        rows = conn.execute("SELECT * FROM audit_log WHERE id >= ? ORDER BY id", (from_id,)).fetchall()
        prev = conn.execute("SELECT hash FROM audit_log WHERE id = ?", (from_id - 1,)).fetchone()[0]
        for r in rows:
            d = dict(r)
            d["new_value"] = (d["new_value"] or "").replace("Leeds", "Lyon") or None
            d["prev_hash"] = prev
            h, key_id = rehash(d, prev)
            conn.execute("UPDATE audit_log SET new_value = ?, prev_hash = ?, hash = ?, key_id = ? WHERE id = ?",
                         (d["new_value"], prev, h, key_id, d["id"]))
            prev = h
    finally:
        conn.close()


def _content(d: dict) -> tuple:
    return (d["id"], d["ts"], d["actor"], d["action"], d["entity"], d["entity_id"], d["old_value"], d["new_value"],
            d["reason"], d["prev_hash"])


def test_keys_are_created_0600_outside_the_database_and_records_are_keyed(stack, tmp_path):
    _history(stack, 2)
    data = tmp_path / "data"
    for name in (audit_keys.HMAC_KEY_FILE, audit_keys.SIGNING_KEY_FILE):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    key = json.loads((data / audit_keys.HMAC_KEY_FILE).read_text())
    assert key["keyed_from"] == 1  # a new installation: every record is keyed
    raw_key = base64.b64decode(key["key"])
    if stack.services.db.dialect == "sqlite":  # not in the database's files
        db_bytes = (data / "coldtrace.db").read_bytes() + (data / "coldtrace.db-wal").read_bytes()
    else:  # PostgreSQL: in no stored row of the trail
        db_bytes = repr([tuple(r) for r in stack.services.db.query("SELECT * FROM audit_log")]).encode()
    assert raw_key not in db_bytes and key["key"].encode() not in db_bytes
    rows = stack.services.db.query("SELECT * FROM audit_log ORDER BY id")
    assert rows and {r["key_id"] for r in rows} == {key["key_id"]}
    r = dict(rows[-1])
    expected = hmac.new(raw_key, json.dumps([*_content(r), key["key_id"]], separators=(",", ":"),
                                            ensure_ascii=False).encode(), hashlib.sha256).hexdigest()
    assert r["hash"] == expected


def _cli_verify(tmp_path) -> subprocess.CompletedProcess:
    """`coldtrace audit verify` in its own process, as an auditor runs it on the server."""
    env = {**os.environ, "COLDTRACE_LOG_LEVEL": "WARNING",
           "COLDTRACE_AUDIT__HEAD_FILE": str(tmp_path / "elsewhere" / "heads.jsonl")}
    return subprocess.run([sys.executable, "-m", "coldtrace.cli", "audit", "verify", "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=60, env=env)


def test_a_tail_rewritten_and_rehashed_with_plain_sha256_is_detected(stack, tmp_path):
    _history(stack)
    assert stack.get("/api/v1/audit/verify")["ok"] is True
    victim = stack.get("/api/v1/audit", entity="shipment")["items"][1]["id"]
    _rewrite_tail(stack, victim, lambda d, prev: (audit.row_hash(*_content(d)), None))
    res = stack.get("/api/v1/audit/verify")
    assert res["ok"] is False and res["first_bad_id"] == victim
    assert "rewritten without the audit key" in res["problem"]
    cli = _cli_verify(tmp_path)  # no head exported yet: the HMAC alone catches it
    assert cli.returncode == 1 and f"BROKEN at record {victim}" in cli.stdout, cli.stdout + cli.stderr
    assert "rewritten without the audit key" in cli.stdout


def test_a_tail_rewritten_with_a_key_the_attacker_made_up_is_detected(stack, tmp_path):
    _history(stack)
    assert _cli_verify(tmp_path).returncode == 0
    victim = stack.get("/api/v1/audit", entity="shipment")["items"][2]["id"]
    real_key_id = stack.services.db.query_one("SELECT key_id FROM audit_log WHERE id = ?", (victim,))[0]
    guess = os.urandom(32)
    _rewrite_tail(stack, victim, lambda d, prev: (audit.keyed_hash(guess, real_key_id, *_content(d)), real_key_id))
    res = stack.get("/api/v1/audit/verify")
    assert res["ok"] is False and res["first_bad_id"] == victim and "keyed hash mismatch" in res["problem"]
    cli = _cli_verify(tmp_path)
    assert cli.returncode == 1 and f"BROKEN at record {victim}" in cli.stdout, cli.stdout + cli.stderr
    assert "keyed hash mismatch" in cli.stdout


def test_exported_heads_catch_a_truncated_tail_and_a_rewrite_with_the_hmac_key(stack, tmp_path):
    clock = stack.services.clock
    _history(stack, 3, "A")
    first = audit_anchor.tick(stack.services)  # the collector's clock tick
    assert first is not None and first["id"] == audit.head(stack.services.db)[0]
    _history(stack, 3, "B")
    assert audit_anchor.tick(stack.services) is None  # within audit.head_interval_s
    clock.advance(5 * MINUTE)
    second = audit_anchor.tick(stack.services)
    assert second is not None and second["id"] > first["id"]
    clock.advance(5 * MINUTE)
    assert audit_anchor.tick(stack.services) is None  # nothing new: no line
    heads = tmp_path / "elsewhere" / "heads.jsonl"
    assert len(heads.read_text().splitlines()) == 2
    ok = stack.get("/api/v1/audit/verify")
    assert ok["ok"] is True and ok["heads_checked"] == 2

    # someone who also holds the HMAC key (but not the signing key) rewrites the tail: HMAC fine, head not
    hk = audit_keys.hmac_key(stack.services.db.conn(), create=False)
    _rewrite_tail(stack, second["id"] - 1, lambda d, prev: (audit.keyed_hash(hk.key, hk.key_id, *_content(d)),
                                                             hk.key_id))
    res = stack.get("/api/v1/audit/verify")
    assert res["ok"] is False and res["first_bad_id"] == second["id"]
    assert "signed head exported at" in res["problem"] and "rewritten" in res["problem"]

    # the database alone cut at its end: a consistent chain, caught against the exported heads
    conn = _raw(stack)
    try:
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute("DELETE FROM audit_log WHERE id >= ?", (first["id"] + 1,))
    finally:
        conn.close()
    assert audit.verify(stack.services.db).ok  # consistent in itself: only the heads kept elsewhere show it
    cut = stack.get("/api/v1/audit/verify")
    assert cut["ok"] is False and cut["first_bad_id"] == second["id"]
    assert f"records {first['id'] + 1}..{second['id']} were removed" in cut["problem"]

    env = {**os.environ, "COLDTRACE_LOG_LEVEL": "WARNING", "COLDTRACE_AUDIT__HEAD_FILE": str(heads)}
    again = subprocess.run([sys.executable, "-m", "coldtrace.cli", "audit", "export-head", "--data-dir",
                            str(tmp_path / "data")], capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 0 and f"exported head {first['id']}:" in again.stdout  # the cut head, signed
    cli = subprocess.run([sys.executable, "-m", "coldtrace.cli", "audit", "verify", "--data-dir",
                          str(tmp_path / "data")], capture_output=True, text=True, timeout=60, env=env)
    assert cli.returncode == 1 and f"BROKEN at record {second['id']}" in cli.stdout


def test_signed_heads_verify_with_the_public_key_and_a_forged_line_is_refused(stack, tmp_path):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    _history(stack, 2)
    rec = audit_anchor.tick(stack.services)
    pub = stack.get("/api/v1/audit/public-key")
    key = load_pem_public_key(pub["pem"].encode())
    heads = tmp_path / "elsewhere" / "heads.jsonl"
    assert pub["head_file"] == str(heads)
    line = json.loads(heads.read_text().splitlines()[0])
    assert line == json.loads(json.dumps(rec)) and line["signer"] == pub["fingerprint"]
    msg = json.dumps({"v": 1, "id": line["id"], "hash": line["hash"], "time": line["time"],
                      "keyed_from": line["keyed_from"]}, sort_keys=True, separators=(",", ":")).encode()
    key.verify(base64.b64decode(line["sig"]), msg)  # raises InvalidSignature if it does not verify

    forged = {**line, "id": line["id"] - 1, "hash": stack.services.db.query_one(
        "SELECT hash FROM audit_log WHERE id = ?", (line["id"] - 1,))[0]}
    with open(heads, "a", encoding="utf-8") as f:
        f.write(json.dumps(forged) + "\n")
    res = stack.get("/api/v1/audit/verify")
    assert res["ok"] is False and "line 2: the signature does not verify" in res["problem"]


def test_an_unkeyed_chain_from_before_keying_keeps_verifying_and_cannot_be_extended(tmp_path, monkeypatch):
    monkeypatch.delenv(audit_keys.ENV_HMAC_KEY, raising=False)
    (tmp_path / "old").mkdir()
    db = Database(tmp_path / "old" / "coldtrace.db")
    prev = audit.GENESIS
    with db.write() as c:  # records as the version before keying wrote them
        for i in range(1, 4):
            content = (i, 1000 + i, "qa1", "shipment.create", "shipment", f"shp{i}", None, '{"x":1}', None, prev)
            h = audit.row_hash(*content)
            c.execute("INSERT INTO audit_log (id, ts, actor, action, entity, entity_id, old_value, new_value,"
                      " reason, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)", (*content, h))
            prev = h
    assert not (tmp_path / "old" / audit_keys.HMAC_KEY_FILE).exists()
    with db.write() as c:  # the first record of the new version creates the key: keyed from record 4
        audit.record_audit(c, actor="qa1", action="shipment.create", entity="shipment", entity_id="shp4",
                           new={"x": 2}, ts=2000)
        audit.record_audit(c, actor="qa1", action="shipment.create", entity="shipment", entity_id="shp5",
                           new={"x": 3}, ts=2001)
    res = audit.verify(db)
    assert res.ok and res.checked == 5 and res.keyed_from == 4
    conn = attacker_connection(db)
    try:  # the keyed records rewritten as old-style ones (plain SHA-256, no key id)
        conn.execute("DROP TRIGGER audit_log_no_update")
        prev = conn.execute("SELECT hash FROM audit_log WHERE id = 3").fetchone()[0]
        for rid in (4, 5):
            r = conn.execute("SELECT id, ts, actor, action, entity, entity_id, old_value, new_value, reason"
                             " FROM audit_log WHERE id = ?", (rid,)).fetchone()
            h = audit.row_hash(*r, prev)
            conn.execute("UPDATE audit_log SET key_id = NULL, hash = ?, prev_hash = ? WHERE id = ?", (h, prev, rid))
            prev = h
    finally:
        conn.close()
    bad = audit.verify(db)
    assert not bad.ok and bad.first_bad_id == 4 and "rewritten without the audit key" in bad.problem
    db.close()
    audit_keys.forget_cached_keys()


def test_a_key_from_the_environment_is_used_and_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv(audit_keys.ENV_HMAC_KEY, "ab" * 32)
    db = Database(tmp_path / "coldtrace.db")
    try:
        with db.write() as c:
            audit.record_audit(c, actor="a", action="x.y", entity="e", ts=1)
        assert not (tmp_path / audit_keys.HMAC_KEY_FILE).exists()
        assert db.query_one("SELECT key_id FROM audit_log")[0] == audit_keys.key_fingerprint(bytes.fromhex("ab" * 32))
        assert audit.verify(db).ok
        monkeypatch.setenv(audit_keys.ENV_HMAC_KEY, "cd" * 32)  # another installation's key
        res = audit.verify(db)
        assert not res.ok and "not this installation's key" in res.problem
    finally:
        db.close()


def test_the_collectors_clock_tick_exports_the_signed_head(mosquitto, tmp_path):
    from tests.support.stack import wait_for

    heads = tmp_path / "heads" / "audit-heads.jsonl"
    s = start_stack(tmp_path, mosquitto.url, audit={"head_file": heads, "head_interval_s": 0.2},
                    tick_interval_s=0.2)
    try:
        _history(s, 2)
        target = audit.head(s.services.db)[0]

        def exported() -> bool:
            lines = heads.read_text().splitlines() if heads.exists() else []
            return any(json.loads(line)["id"] >= target for line in lines)

        wait_for(exported, timeout=20, what="the collector's tick to export the audit head")
        res = audit_anchor.verify(s.services.db, s.services.settings)
        assert res.ok and res.heads_checked >= 1
    finally:
        s.close()
        audit_keys.forget_cached_keys()


def test_an_old_database_first_started_with_an_environment_key_asks_for_the_boundary(tmp_path, monkeypatch):
    from coldtrace.core.errors import ConfigError
    from coldtrace.settings import load_settings

    db = Database(tmp_path / "coldtrace.db")
    with db.write() as c:  # two records as the version before keying wrote them
        prev = audit.GENESIS
        for i in (1, 2):
            content = (i, i, "cli", "user.create", "user", f"u{i}", None, None, None, prev)
            prev = audit.row_hash(*content)
            c.execute("INSERT INTO audit_log (id, ts, actor, action, entity, entity_id, old_value, new_value,"
                      " reason, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)", (*content, prev))
    monkeypatch.setenv(audit_keys.ENV_HMAC_KEY, "ef" * 32)
    settings = load_settings(data_dir=tmp_path)
    try:
        with pytest.raises(ConfigError, match="COLDTRACE_AUDIT__KEYED_FROM=3"):
            audit_anchor.ensure_keys(db, settings)
        monkeypatch.setenv(audit_keys.ENV_KEYED_FROM, "3")
        audit_anchor.ensure_keys(db, settings)
        with db.write() as c:
            audit.record_audit(c, actor="cli", action="user.create", entity="user", entity_id="u3", ts=3)
        res = audit.verify(db)
        assert res.ok and res.keyed_from == 3 and res.checked == 3
    finally:
        db.close()
    monkeypatch.setenv(audit_keys.ENV_HMAC_KEY, "ef" * 8)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_settings(data_dir=tmp_path)


def test_signed_heads_are_posted_to_the_head_webhook_and_retried_until_accepted(tmp_path):
    from coldtrace.services import webhooks
    from tests.support.webhook_receiver import WebhookReceiver

    secret = webhooks.generate_secret()
    receiver = WebhookReceiver([secret]).start()
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False,
                    audit={"head_webhook_url": receiver.url, "head_webhook_secret": secret})
    try:
        receiver.now_s = lambda: s.services.clock.now_ms() // 1000
        _history(s, 1, "W")
        first = audit_anchor.tick(s.services)
        assert [r.webhook_id for r in receiver.requests] == [f"audit-head-{first['id']}"]
        assert receiver.requests[0].signature_ok and receiver.requests[0].status == 204
        assert json.loads(receiver.requests[0].body)["data"] == json.loads(json.dumps(first))

        receiver.mode = "error"  # the receiver is down: the head stays in the file and is posted later
        _history(s, 1, "X")
        s.services.clock.advance(5 * MINUTE)
        second = audit_anchor.tick(s.services)
        assert receiver.requests[-1].status == 500
        receiver.mode = "ok"
        s.services.clock.advance(5 * MINUTE)
        assert audit_anchor.tick(s.services) is None  # no new head, but the pending one goes out
        assert receiver.delivered() == {f"audit-head-{first['id']}": 1, f"audit-head-{second['id']}": 1}
        pub = audit_anchor.public_key_for(s.services.settings)
        data = json.loads(receiver.requests[-1].body)["data"]
        assert audit_keys.verify_signature(pub, base64.b64decode(data["sig"]), audit_anchor.head_message(
            data["id"], data["hash"], data["time"], data["keyed_from"]))
    finally:
        s.close()
        receiver.stop()
        audit_keys.forget_cached_keys()

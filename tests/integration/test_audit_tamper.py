"""Tampering with the audit trail directly in SQLite: /audit/verify names the first record that no longer matches."""

from __future__ import annotations

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.services import audit, auth
from coldtrace.store.db import is_integrity_error
from tests.support.stack import start_stack
from tests.support.store_reads import attacker_connection

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    yield s
    s.close()


def _make_history(stack) -> list[dict]:
    for i in range(4):
        r = stack.client.post("/api/v1/shipments", headers=stack.headers, json={
            "reference": f"SHP-{i}", "origin": "Basel", "destination": "Leeds", "product": "IMP-7", "lot": "L1"})
        assert r.status_code == 201
    return stack.get("/api/v1/audit", entity="shipment")["items"]


def _raw(stack):
    return attacker_connection(stack.services.db)


def test_sql_cannot_update_or_delete_audit_rows(stack):
    rows = _make_history(stack)
    conn = _raw(stack)
    try:
        with pytest.raises(Exception, match="append-only") as refused:  # noqa: B017 - each dialect's own error
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = ?", (rows[1]["id"],))
        assert is_integrity_error(refused.value), refused.value
        with pytest.raises(Exception, match="append-only") as refused:  # noqa: B017
            conn.execute("DELETE FROM audit_log WHERE id = ?", (rows[1]["id"],))
        assert is_integrity_error(refused.value), refused.value
    finally:
        conn.close()
    assert stack.get("/api/v1/audit/verify")["ok"] is True


def test_an_edited_row_is_named(stack):
    rows = _make_history(stack)
    before = stack.get("/api/v1/audit/verify")
    assert before["ok"] is True and before["first_bad_id"] is None
    victim = rows[2]
    conn = _raw(stack)  # someone with the file drops the trigger and rewrites history
    try:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET new_value = replace(new_value, 'Leeds', 'Lyon') WHERE id = ?",
                     (victim["id"],))
    finally:
        conn.close()
    after = stack.get("/api/v1/audit/verify")
    assert after["ok"] is False
    assert after["first_bad_id"] == victim["id"]
    assert "changed after it was written" in after["problem"]
    assert after["checked"] == victim["id"] - 1


def test_a_deleted_row_and_a_recomputed_hash_are_named(stack):
    rows = _make_history(stack)
    conn = _raw(stack)
    try:
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute("DELETE FROM audit_log WHERE id = ?", (rows[1]["id"],))
    finally:
        conn.close()
    res = audit.verify(stack.services.db)
    assert (res.ok, res.first_bad_id) == (False, rows[2]["id"])
    assert "missing" in res.problem


def test_recomputing_the_edited_rows_hash_still_breaks_the_chain(stack):
    rows = _make_history(stack)
    victim = rows[1]
    conn = _raw(stack)
    try:
        conn.execute("DROP TRIGGER audit_log_no_update")
        r = conn.execute("SELECT * FROM audit_log WHERE id = ?", (victim["id"],)).fetchone()
        cols = [d[0] for d in conn.execute("SELECT * FROM audit_log LIMIT 0").description]
        row = dict(zip(cols, r, strict=True))
        row["actor"] = "mallory"
        h = audit.row_hash(row["id"], row["ts"], row["actor"], row["action"], row["entity"], row["entity_id"],
                           row["old_value"], row["new_value"], row["reason"], row["prev_hash"])
        conn.execute("UPDATE audit_log SET actor = 'mallory', hash = ? WHERE id = ?", (h, victim["id"]))
    finally:
        conn.close()
    res = stack.get("/api/v1/audit/verify")
    # the record is keyed: a plain SHA-256 (or any hash made without the key) no longer matches it
    assert res["ok"] is False and res["first_bad_id"] == victim["id"]
    assert "keyed hash mismatch" in res["problem"]


def test_audit_pages_and_ranges(stack):
    db = stack.services.db
    for i in range(25):
        auth.create_token(db, role="viewer", name=f"t{i}", actor="admin", now_ms=stack.services.clock.now_ms())
    page1 = stack.get("/api/v1/audit", limit=10)
    assert len(page1["items"]) == 10 and page1["next_after_id"] == page1["items"][-1]["id"]
    page2 = stack.get("/api/v1/audit", limit=10, after_id=page1["next_after_id"])
    assert page2["items"][0]["id"] == page1["items"][-1]["id"] + 1
    r = stack.client.get("/api/v1/audit", params={"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
                         headers=stack.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "range_too_large"

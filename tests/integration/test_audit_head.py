"""A chain cut at its end is still a valid chain: a head kept elsewhere exposes it (API and CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from coldtrace.core.clock import ManualClock
from tests.support.stack import start_stack
from tests.support.store_reads import attacker_connection

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path):
    s = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    yield s
    s.close()


def test_a_truncated_tail_is_found_with_a_kept_head(stack, tmp_path):
    for i in range(4):
        r = stack.client.post("/api/v1/shipments", headers=stack.headers, json={
            "reference": f"SHP-H{i}", "origin": "Basel", "destination": "Leeds", "product": "IMP-7", "lot": "L1"})
        assert r.status_code == 201
    kept = stack.get("/api/v1/audit/head")
    assert kept["head"] == f"{kept['id']}:{kept['hash']}"
    assert stack.get("/api/v1/audit/verify", known_head=kept["head"])["ok"] is True

    conn = attacker_connection(stack.services.db)
    try:  # an attacker with the database file removes the newest records
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute("DELETE FROM audit_log WHERE id > ?", (kept["id"] - 2,))
    finally:
        conn.close()
    assert stack.get("/api/v1/audit/verify")["ok"] is True  # the shorter chain is consistent in itself
    broken = stack.get("/api/v1/audit/verify", known_head=kept["head"])
    assert broken["ok"] is False and broken["first_bad_id"] == kept["id"]
    assert f"records {kept['id'] - 1}..{kept['id']} were removed" in broken["problem"]
    bad = stack.client.get("/api/v1/audit/verify", params={"known_head": "nonsense"}, headers=stack.headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_head"

    cli = [sys.executable, "-m", "coldtrace.cli", "audit", "verify", "--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "COLDTRACE_LOG_LEVEL": "WARNING"}
    ok = subprocess.run(cli, capture_output=True, text=True, timeout=30, env=env)
    assert ok.returncode == 0 and "intact" in ok.stdout
    cut = subprocess.run([*cli, "--known-head", kept["head"]], capture_output=True, text=True, timeout=30, env=env)
    assert cut.returncode == 1 and f"BROKEN at record {kept['id']}" in cut.stdout
    head = subprocess.run([sys.executable, "-m", "coldtrace.cli", "audit", "head", "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=30, env=env)
    assert head.returncode == 0 and head.stdout.strip().startswith(f"{kept['id'] - 2}:")

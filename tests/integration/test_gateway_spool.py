"""The SQLite spool keeps every committed message through SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from gateway.spool import SqliteSpool

pytestmark = pytest.mark.integration

WRITER = textwrap.dedent("""
    import json, sys
    from gateway.spool import SqliteSpool
    s = SqliteSpool(sys.argv[1])
    i = 0
    while True:
        i += 1
        r = s.put("DEV", lambda seq: json.dumps({"seq": seq, "i": i}).encode(), 3, i)
        print(r.id, r.seq, flush=True)   # printed only after the put committed
""")


def test_committed_puts_survive_sigkill(tmp_path):
    path = tmp_path / "spool.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    confirmed = []
    try:
        for line in proc.stdout:
            confirmed.append(tuple(int(x) for x in line.split()))
            if len(confirmed) >= 300:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    s = SqliteSpool(path)  # the kernel released the dead writer's lock
    try:
        kept = {(e.id, e.seq) for e in s.peek(limit=100_000)}
        assert set(confirmed) <= kept
        assert s.status().entries == len(kept) and s.status().readings == 3 * len(kept)
        seqs = sorted(json.loads(e.payload)["seq"] for e in s.peek(limit=100_000))
        assert seqs == list(range(1, len(seqs) + 1))  # no hole, no duplicate
        assert s.put("DEV", lambda q: b"{}", 1, 0).seq == len(seqs) + 1
    finally:
        s.close()

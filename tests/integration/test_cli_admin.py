"""The people/token/export/dock commands as an administrator uses them: `coldtrace user list|disable|enable|
passwd`, `coldtrace token list|revoke`, `coldtrace audit verify`, `coldtrace export readings`, `coldtrace dock
dump` (a CTL1 logger on a real pseudo-terminal)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from coldtrace.cli import main
from coldtrace.core.model import Reading
from coldtrace.services import auth
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore

pytestmark = pytest.mark.integration

PW = "correct horse battery"


@pytest.fixture
def data(tmp_path, monkeypatch):
    d = tmp_path / "data"
    monkeypatch.delenv("COLDTRACE_DATA_DIR", raising=False)
    return d


def _cli(capsys, monkeypatch, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_list_disable_enable_passwd(data, capsys, monkeypatch):
    d = ["--data-dir", str(data)]
    assert _cli(capsys, monkeypatch, "user", "add", "asilva", "--full-name", "Dr Ana Silva", "--role", "qa",
                "--password-stdin", *d, stdin=PW + "\n")[0] == 0
    assert _cli(capsys, monkeypatch, "user", "add", "root", "--full-name", "Site Admin", "--role", "admin",
                "--password-stdin", *d, stdin=PW + "\n")[0] == 0
    code, out, _ = _cli(capsys, monkeypatch, "user", "list", *d)
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("asilva"))
    assert "Dr Ana Silva" in line and " qa " in line and "active" in line

    db = Database(data / "coldtrace.db")
    try:
        token = auth.create_token(db, user="asilva", name="laptop")
        assert auth.authenticate_bearer(db, token, auth._now(None)) is not None

        code, out, _ = _cli(capsys, monkeypatch, "user", "disable", "asilva", *d)
        assert code == 0 and "asilva disabled" in out
        assert auth.authenticate_password(db, "asilva", PW) is None
        assert auth.authenticate_bearer(db, token, auth._now(None)) is None, "a disabled user's token works"
        users = json.loads(_cli(capsys, monkeypatch, "user", "list", "--json", *d)[1])
        assert {u["username"]: u["active"] for u in users} == {"asilva": 0, "root": 1}

        code, _, err = _cli(capsys, monkeypatch, "user", "disable", "root", *d)
        assert code == 2 and "last active admin" in err

        assert _cli(capsys, monkeypatch, "user", "enable", "asilva", *d)[0] == 0
        assert auth.authenticate_password(db, "asilva", PW) is not None
        assert auth.authenticate_bearer(db, token, auth._now(None)) is not None

        code, out, _ = _cli(capsys, monkeypatch, "user", "passwd", "asilva", "--password-stdin", *d,
                            stdin="a new long passphrase\n")
        assert code == 0 and "password of asilva changed" in out
        assert auth.authenticate_password(db, "asilva", PW) is None
        assert auth.authenticate_password(db, "asilva", "a new long passphrase") is not None

        code, _, err = _cli(capsys, monkeypatch, "user", "disable", "nobody", *d)
        assert code == 2 and "no user 'nobody'" in err
        actions = [r[0] for r in db.query("SELECT action FROM audit_log WHERE entity = 'user' ORDER BY id")]
        assert actions[-3:] == ["user.disable", "user.enable", "user.password"]
    finally:
        db.close()
    code, out, _ = _cli(capsys, monkeypatch, "audit", "verify", *d)
    assert code == 0 and "audit trail intact" in out, out


def test_token_list_and_revoke(data, capsys, monkeypatch):
    d = ["--data-dir", str(data)]
    assert _cli(capsys, monkeypatch, "token", "create", "--role", "viewer", "--name", "grafana", *d)[0] == 0
    code, out, _ = _cli(capsys, monkeypatch, "token", "create", "--device", "LOG-7", "--name", "LOG-7 uplink", *d)
    device_secret = out.strip().splitlines()[-1]
    tokens = json.loads(_cli(capsys, monkeypatch, "token", "list", "--json", *d)[1])
    assert {(t["kind"], t["name"], t["state"]) for t in tokens} == {("api", "grafana", "active"),
                                                                    ("device", "LOG-7 uplink", "active")}
    assert next(t for t in tokens if t["kind"] == "device")["devices"] == ["LOG-7"]
    code, out, _ = _cli(capsys, monkeypatch, "token", "list", *d)
    assert "grafana" in out and "LOG-7" in out and "ct_" not in out and "ctd_" not in out  # never a secret

    dev_id = next(t["id"] for t in tokens if t["kind"] == "device")
    code, out, _ = _cli(capsys, monkeypatch, "token", "revoke", dev_id, *d)
    assert code == 0 and f"token {dev_id} revoked" in out
    db = Database(data / "coldtrace.db")
    try:
        assert auth.authenticate_bearer(db, device_secret, auth._now(None)) is None
    finally:
        db.close()
    active = json.loads(_cli(capsys, monkeypatch, "token", "list", "--json", *d)[1])
    assert [t["name"] for t in active] == ["grafana"]
    every = json.loads(_cli(capsys, monkeypatch, "token", "list", "--all", "--json", *d)[1])
    assert {t["name"]: t["state"] for t in every} == {"grafana": "active", "LOG-7 uplink": "revoked"}
    code, _, err = _cli(capsys, monkeypatch, "token", "revoke", dev_id, *d)
    assert code == 2 and "no active token" in err


T0 = 1_790_000_000_000


def _readings(data) -> list[Reading]:
    data.mkdir(parents=True, exist_ok=True)
    db = Database(data / "coldtrace.db")
    rs = [Reading("LOG-1", T0 + i * 60_000, round(4 + (i % 50) / 10, 2), i // 10) for i in range(60_000)]
    rs += [Reading("LOG-2", T0 + i * 300_000, 5.5, None) for i in range(100)]
    try:
        SqliteReadingStore(db).write(rs)
    finally:
        db.close()
    return rs


def test_export_readings_csv_and_parquet_with_progress(data, tmp_path, capsys, monkeypatch):
    rs = _readings(data)
    d = ["--data-dir", str(data)]
    frm, to = "2026-09-21T14:00:00Z", str(T0 + 50_000 * 60_000)  # RFC 3339 start, epoch ms end (exclusive)
    want = [r for r in rs if r.device_id == "LOG-1" and r.ts < T0 + 50_000 * 60_000]
    out_csv = tmp_path / "log1.csv"
    code, out, err = _cli(capsys, monkeypatch, "export", "readings", "--device", "LOG-1", "--from", "1790000000000",
                          "--to", to, "--out", str(out_csv), *d)
    assert code == 0, err
    assert "exported 50,000 readings" in out
    assert "LOG-1" in err and "50,000 readings" in err  # the progress bar's last state
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(want) == 50_000
    assert [(r["device_id"], int(r["ts_ms"]), float(r["temp_c"])) for r in rows[:3]] == \
        [(w.device_id, w.ts, w.temp_c) for w in want[:3]]
    assert rows[0]["ts"] == "2026-09-21T14:13:20.000Z" and rows[-1]["seq"] == str(want[-1].seq)
    assert not list(tmp_path.glob("*.part"))

    # CSV on stdout, two devices, an RFC 3339 range
    code, out, _ = _cli(capsys, monkeypatch, "export", "readings", "--device", "LOG-2", "--device", "LOG-1",
                        "--from", frm, "--to", "2026-09-21T15:00:00Z", "--quiet", *d)
    got = list(csv.DictReader(io.StringIO(out)))
    assert {r["device_id"] for r in got} == {"LOG-1", "LOG-2"}
    assert all("2026-09-21T14:13:20" <= r["ts"] < "2026-09-21T15:00:00" for r in got)
    assert len([r for r in got if r["device_id"] == "LOG-2"]) == 10 and got[0]["seq"] == ""

    import pyarrow.parquet as pq

    out_pq = tmp_path / "log1.parquet"
    code, out, err = _cli(capsys, monkeypatch, "export", "readings", "--device", "LOG-1", "--from", str(T0),
                          "--out", str(out_pq), *d)
    assert code == 0, err
    table = pq.read_table(out_pq)
    assert table.num_rows == 60_000
    assert str(table.schema.field("ts").type) == "timestamp[ms, tz=UTC]"
    first = table.slice(0, 1).to_pylist()[0]
    assert first["device_id"] == "LOG-1" and first["temp_c"] == 4.0 and first["seq"] == 0
    assert int(first["ts"].timestamp() * 1000) == T0

    code, _, err = _cli(capsys, monkeypatch, "export", "readings", "--device", "LOG-1", "--from", "yesterday", *d)
    assert code == 2 and "--from/--to" in err


def test_dock_dump_from_the_cli_stores_every_record_with_progress(tmp_path):
    from firmware_sim.serial_instruments import Ctl1Logger

    data = tmp_path / "data"
    link = tmp_path / "ttyDOCK0"
    with Ctl1Logger(link, "LOG-DOCK-1", records=5000) as sim:
        r = subprocess.run([sys.executable, "-m", "coldtrace.cli", "dock", "dump", "--port", str(link),
                            "--data-dir", str(data)], capture_output=True, text=True, timeout=120)
        expected = sim.readings()
    assert r.returncode == 0, r.stderr
    assert "LOG-DOCK-1: 5,000 of 5,000 records stored (complete" in r.stdout
    assert "dump LOG-DOCK-1" in r.stderr and "5,000 stored" in r.stderr  # the progress bar
    db = Database(data / "coldtrace.db")
    try:
        stored = SqliteReadingStore(db).query("LOG-DOCK-1")
    finally:
        db.close()
    assert [(x.ts, x.temp_c) for x in stored] == [(x.ts, x.temp_c) for x in expected]

    r = subprocess.run([sys.executable, "-m", "coldtrace.cli", "dock", "dump", "--port", str(tmp_path / "nothing"),
                        "--data-dir", str(data), "--timeout", "1", "--quiet"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "no CTL1 logger answered" in r.stderr and "Traceback" not in r.stderr


def test_export_from_influxdb(data, tmp_path, capsys, monkeypatch, influxd_server, influx_db):
    """The same export when the readings live in InfluxDB (store.backend=influx), paged through its API."""
    from coldtrace.store.influx import InfluxReadingStore

    store = InfluxReadingStore(influxd_server.url, influx_db)
    try:
        store.write([Reading("LOG-I", T0 + i * 60_000, 5.0 + i / 1000, i) for i in range(1200)])
    finally:
        store.close()
    monkeypatch.setenv("COLDTRACE_STORE__BACKEND", "influx")
    monkeypatch.setenv("COLDTRACE_STORE__INFLUX__URL", influxd_server.url)
    monkeypatch.setenv("COLDTRACE_STORE__INFLUX__DATABASE", influx_db)
    data.mkdir(parents=True)
    Database(data / "coldtrace.db").close()  # the metadata store exists beside InfluxDB
    calls = []
    real_query = InfluxReadingStore.query

    def counted(self, *a, **kw):
        calls.append(kw.get("limit"))
        return real_query(self, *a, **kw)

    monkeypatch.setattr(InfluxReadingStore, "query", counted)
    monkeypatch.setattr("coldtrace.cli_ops.EXPORT_PAGE", 500)
    code, out, err = _cli(capsys, monkeypatch, "export", "readings", "--device", "LOG-I", "--from", str(T0),
                          "--quiet", "--data-dir", str(data))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["ts_ms"]) for r in rows] == [T0 + i * 60_000 for i in range(1200)]
    assert rows[-1]["temp_c"] == repr(5.0 + 1199 / 1000) and rows[-1]["seq"] == "1199"
    assert calls == [500, 500, 500]  # paged: 500 + 500 + 200

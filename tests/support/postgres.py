"""A real PostgreSQL for tests: Debian's server binaries (initdb, pg_ctl) on a free loopback port.

One server per test session (``PostgresServer``), a fresh database per test (``create_database``), owned by
a role that is not a superuser (as a deployment's application role would be). The cluster lives in a
temporary directory; scram-sha-256 password authentication over 127.0.0.1 only, the unix socket in that
directory (never the system's /var/run/postgresql), fsync off (test data need not survive a power cut).
PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the ``postgres`` user (Debian's
package creates it) in a directory handed over to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support.services import find_binary, free_port, missing_service

ADMIN = "ct_admin"  # the cluster's superuser (creates and drops the test databases)
APP = "coldtrace"  # the role ColdTrace connects as: owns its database, no superuser


def _bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin, or wherever initdb is on PATH."""
    found = find_binary("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name)
                  if Path(d).parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


class PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1:<free port>; ``stop()`` shuts it down and removes the cluster."""

    def __init__(self) -> None:
        bindir = _bin_dir()
        if bindir is None:
            missing_service("PostgreSQL server (Debian package postgresql: initdb, pg_ctl)")
        self.bindir = bindir
        self.as_user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                missing_service("the postgres system user (Debian package postgresql creates it)")
            self.as_user = "postgres"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.admin_password = secrets.token_urlsafe(18)
        self.app_password = secrets.token_urlsafe(18)
        # not under pytest's tmp dir: /tmp/pytest-of-root is 0700 and the postgres user must reach its files
        self.workdir = Path(tempfile.mkdtemp(prefix="coldtrace-pg-"))
        self.data = self.workdir / "data"
        self.log = self.workdir / "server.log"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.workdir)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout[-1500:]}"
                               f" {proc.stderr[-1500:]}")
        return proc

    def start(self) -> None:
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        pwfile.chmod(0o600)
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            for p in (self.workdir, pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(self.bindir / "initdb", "-D", self.data, "-U", ADMIN, f"--pwfile={pwfile}",
                  "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# coldtrace test fixture\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.workdir}'\n"
                "password_encryption = 'scram-sha-256'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
                "log_min_messages = warning\nlog_min_error_statement = panic\n"
            )
        (self.data / "pg_hba.conf").write_text(
            "# TYPE DATABASE USER ADDRESS METHOD\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start", timeout=90)
        self.admin_sql(f"CREATE ROLE {APP} LOGIN PASSWORD '{self.app_password}'")

    def url(self, dbname: str, *, admin: bool = False) -> str:
        user, password = (ADMIN, self.admin_password) if admin else (APP, self.app_password)
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres", admin=True), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> tuple[str, str]:
        """A new empty database owned by the application role: (name, its postgresql:// URL)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin_sql(f"CREATE DATABASE {name} OWNER {APP}")
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

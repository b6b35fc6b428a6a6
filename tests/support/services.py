"""Real services for tests: Mosquitto, influxd, on free loopback ports. With CI=true a missing one fails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_service(what: str) -> None:
    """A needed service is not installed: fail in CI, skip on a developer machine (saying what to install)."""
    msg = f"{what} is not installed (README: run the test command as root, or apt-get install it)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def stop_processes(procs, timeout: float = 20) -> None:
    """SIGTERM every process still running, then wait for each (up to ``timeout`` s) and SIGKILL a stuck one:
    a process tree of collectors and APIs stopped as an operator stops it, never left behind by a test."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def find_binary(name: str, *extra: str) -> str | None:
    for cand in (shutil.which(name), *extra):
        if cand and Path(cand).exists():
            return cand
    return None


class Mosquitto:
    """A Mosquitto broker of our own on 127.0.0.1, stoppable and restartable (same port, same persistence)."""

    def __init__(self, workdir: Path, extra_conf: str = "", own_listener: bool = True) -> None:
        """``own_listener=False``: ``extra_conf`` brings every listener (e.g. `coldtrace mqtt-config`'s two);
        one of them must be on ``self.port`` (picked here), which start() waits for."""
        self.binary = find_binary("mosquitto", "/usr/sbin/mosquitto")
        if self.binary is None:
            missing_service("mosquitto")
        self.workdir = workdir
        self.port = free_port()
        self.host = "127.0.0.1"
        self.extra_conf = extra_conf
        self.own_listener = own_listener
        self.proc: subprocess.Popen | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def write_conf(self) -> None:
        self.conf.write_text(
            (f"listener {self.port} 127.0.0.1\nallow_anonymous true\n" if self.own_listener else "")
            + "persistence true\n"
            # as root, mosquitto drops to its own user, which cannot write the persistence file in our
            # private tmp dir: sessions would be lost across stop()/start(). Stay root (tests only).
            f"{'user root' + chr(10) if os.geteuid() == 0 else ''}"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 1000\n"
            "log_type error\nlog_type warning\n"
            f"{self.extra_conf}\n"
        )

    def start(self) -> None:
        self.write_conf()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=logf,
                                         stderr=subprocess.STDOUT)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Influxd:
    """Debian's influxd (1.6) of our own on free loopback ports (HTTP and the RPC bind-address), data in
    ``workdir``, reporting and self-monitoring off. stop()/start() keep ports and data, for outage tests.
    With ``auth=True`` the HTTP API needs a user; ``admin()`` creates the first admin (allowed by 1.x
    while no user exists)."""

    def __init__(self, workdir: Path, auth: bool = False) -> None:
        self.binary = find_binary("influxd", "/usr/bin/influxd")
        if self.binary is None:
            missing_service("influxd (Debian package influxdb)")
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.rpc_port = free_port()
        self.auth = auth
        self.proc: subprocess.Popen | None = None
        self.conf = workdir / "influxdb.conf"
        self.log = workdir / "influxd.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_conf(self) -> None:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "reporting-enabled = false\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            '  cache-snapshot-memory-size = 8388608\n'
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            "[retention]\n  enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            f"  auth-enabled = {'true' if self.auth else 'false'}\n"
            '[logging]\n  level = "warn"\n  suppress-logo = true\n'
        )

    def ping(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:
                return resp.status == 204
        except OSError:
            return False

    def start(self) -> None:
        self.write_conf()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "run", "-config", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"influxd did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def query(self, q: str, db: str | None = None, user: tuple[str, str] | None = None) -> dict:
        """Run InfluxQL (POST) straight over HTTP: for fixtures and assertions, not through our adapter."""
        import base64
        import json
        import urllib.parse
        import urllib.request

        data = {"q": q, "epoch": "ms", **({"db": db} if db else {})}
        req = urllib.request.Request(f"{self.url}/query", data=urllib.parse.urlencode(data).encode())
        if user:
            req.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

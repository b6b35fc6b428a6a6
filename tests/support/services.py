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

    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        self.binary = find_binary("mosquitto", "/usr/sbin/mosquitto")
        if self.binary is None:
            missing_service("mosquitto")
        self.workdir = workdir
        self.port = free_port()
        self.host = "127.0.0.1"
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def write_conf(self) -> None:
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 1000\n"
            "log_type error\nlog_type warning\n"
            f"{self.extra_conf}\n"
        )

    def start(self) -> None:
        self.write_conf()
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=open(self.log, "ab"),
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

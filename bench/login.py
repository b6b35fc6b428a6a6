"""Memory and answer times of the API under a flood of sign-ins (issue 14: 40 logins took it to 2.6 GB).

Starts the real `coldtrace api` (uvicorn, default argon2id: 64 MiB per check) in a child process, then fires
N simultaneous sign-ins, a mix of unknown usernames, wrong passwords and right passwords, each from its own
client address (X-Forwarded-For through the trusted proxy 127.0.0.1, so the per-client throttle does not
stop them: what is measured is the bounded hashing). The API's resident set size is sampled every 10 ms.
Then it times single sign-ins of a locked, an open and an unknown account (the lock-state oracle).

Prints: peak RSS, answers by status/code, answer-time percentiles, the lock-state timings.
Usage: python bench/login.py [--concurrent 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.services import auth  # noqa: E402
from coldtrace.store.db import Database  # noqa: E402
from tests.support.services import free_port, wait_port  # noqa: E402

PASSWORD = "cold-chain-2026!"
LIMIT_MB = 400
PROBES = 9


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, ValueError):
                return
            time.sleep(0.01)


def flood(url: str, n: int, users: int, round_no: int) -> tuple[Counter, list[float]]:
    barrier = threading.Barrier(n)
    codes: Counter = Counter()
    times: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        kind = i % 3
        username = f"ghost-{round_no}-{i}" if kind == 0 else f"user{i % users}"
        password = PASSWORD if kind == 2 else f"wrong-{i}"
        ip = f"10.{round_no}.{i // 250}.{i % 250 + 1}"
        with httpx.Client(base_url=url, timeout=120) as c:
            barrier.wait()
            t = time.perf_counter()
            r = c.post("/api/v1/auth/login", json={"username": username, "password": password},
                       headers={"X-Forwarded-For": ip})
            dt = time.perf_counter() - t
        code = r.json().get("error", {}).get("code", "ok") if r.status_code != 200 else "ok"
        with lock:
            codes[f"{r.status_code} {code}"] += 1
            times.append(dt)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return codes, times


def single(url: str, username: str, password: str, ip: str) -> float:
    with httpx.Client(base_url=url, timeout=60) as c:
        t = time.perf_counter()
        c.post("/api/v1/auth/login", json={"username": username, "password": password},
               headers={"X-Forwarded-For": ip})
        return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    logging.getLogger("coldtrace").setLevel(logging.ERROR)  # the seeded lockouts below are on purpose
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        db = Database(data / "coldtrace.db")
        users = 30
        for i in range(users):
            auth.create_user(db, f"user{i}", f"User {i}", PASSWORD, "qa")
        for i in range(PROBES):
            auth.create_user(db, f"locked{i}", f"Locked {i}", PASSWORD, "qa")
            auth.create_user(db, f"open{i}", f"Open {i}", PASSWORD, "qa")
            for k in range(auth.MAX_FAILED_LOGINS):
                auth.authenticate_password(db, f"locked{i}", f"guess-{k}")
        db.close()
        port = free_port()
        env = {**os.environ, "COLDTRACE_LOG_LEVEL": "WARNING", "COLDTRACE_MQTT__URL": ""}
        proc = subprocess.Popen([sys.executable, "-m", "coldtrace.cli", "api", "--data-dir", str(data),
                                 "--api-port", str(port)], env=env, cwd=Path(__file__).resolve().parents[1])
        try:
            wait_port(port, timeout=60)
            url = f"http://127.0.0.1:{port}"
            time.sleep(0.5)
            idle = rss_mb(proc.pid)
            sampler = Sampler(proc.pid)
            sampler.start()
            codes: Counter = Counter()
            times: list[float] = []
            t0 = time.perf_counter()
            for r in range(args.rounds):
                c, t = flood(url, args.concurrent, users, r)
                codes += c
                times += t
            wall = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
            q = statistics.quantiles(times, n=100)
            print(f"API RSS idle {idle:.0f} MB, peak {sampler.peak:.0f} MB under {args.concurrent} simultaneous"
                  f" sign-ins x {args.rounds} rounds (limit {LIMIT_MB} MB:"
                  f" {'OK' if sampler.peak < LIMIT_MB else 'EXCEEDED'}); {wall:.1f} s in all")
            print(f"password hashing: {auth.default_hash_slots()} at once (sized to this machine's memory and CPUs),"
                  f" argon2id {auth._hasher.memory_cost // 1024} MiB each")
            print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())))
            print(f"answer time p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
            timing: dict[str, list[float]] = {"locked": [], "open": [], "unknown": []}
            for i in range(PROBES):  # each account and client once: the throttle stays out of it
                timing["locked"].append(single(url, f"locked{i}", PASSWORD, f"10.200.{i}.1"))
                timing["open"].append(single(url, f"open{i}", "wrong", f"10.200.{i}.2"))
                timing["unknown"].append(single(url, f"nobody{i}", "x", f"10.200.{i}.3"))
            print(f"lock-state timing (median of {PROBES}; locked: right password): " + ", ".join(
                f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in timing.items()))
            return 0 if sampler.peak < LIMIT_MB else 1
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())

"""Where the collector's per-message time goes, each side on its own (cProfile).

``child``: the ingest child's work — ``ingest_messages`` (route, decode, validate, store, evaluate, device
state, commit) on batches as the MQTT side sends them, against a SQLite file. ``network``: paho's network
thread as the collector drives it — a real Mosquitto delivers a queued backlog to MqttCollector whose
ingest step is replaced by an instant "committed" answer, so only receiving, batching and acknowledging
are profiled.

    .venv/bin/python bench/profile_ingest.py child [--per-message 1] [--messages 40000] [--batch N] [--top 25]
    .venv/bin/python bench/profile_ingest.py network [--messages 40000] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.settings import load_settings  # noqa: E402
from coldtrace.wiring import build_services  # noqa: E402

DEVICES = 100


def items(n: int, per: int, t0: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        dev = f"B-{i % DEVICES:04d}"
        k = i // DEVICES
        rs = [{"ts": t0 + (k * per + j) * 1000, "temp_c": round(4.0 + ((k * per + j) % 41) / 10, 2)}
              for j in range(per)]
        out.append((f"coldtrace/v1/devices/{dev}/readings",
                    json.dumps({"v": 1, "device_id": dev, "seq": k, "readings": rs}).encode()))
    return out


def child(args) -> None:
    from collector.ingest import ingest_messages

    t0 = int(time.time() * 1000) - 30 * 24 * 3600_000
    msgs = items(args.messages, args.per_message, t0)
    batch = args.batch or (2000 if args.per_message == 1 else 20)
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(load_settings(data_dir=Path(tmp), log_level="WARNING"))
        ingest_messages(services.pipeline, msgs[:batch])  # first sight of each device out of the profile
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        for i in range(batch, len(msgs), batch):
            ingest_messages(services.pipeline, msgs[i:i + batch])
        prof.disable()
        dt = time.perf_counter() - t
        services.close()
    n = len(msgs) - batch
    print(f"child: {n:,} messages x {args.per_message} readings in {dt:.2f} s under cProfile"
          f" ({n / dt:,.0f} msg/s, {n * args.per_message / dt:,.0f} readings/s)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


def network(args) -> None:
    import threading

    from bench.ingest import create_session, publish_backlog
    from collector.mqtt import MqttCollector
    from tests.support.services import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "broker").mkdir()
        broker = Mosquitto(tmp / "broker")
        broker.start()
        try:
            create_session(broker.port, "prof", v5=True)
            publish_backlog(broker.port, args.messages, 1, int(time.time() * 1000))
            settings = load_settings(data_dir=tmp / "d", log_level="WARNING",
                                     mqtt={"url": f"mqtt://127.0.0.1:{broker.port}", "client_id": "prof"})
            services = build_services(settings)
            col = MqttCollector(services.pipeline, settings.mqtt, batch_max_messages=2000, batch_max_wait_ms=20)
            col.process = lambda batch: None  # committed at once: only paho's side is measured
            prof = cProfile.Profile()
            orig = threading.Thread.run

            def run(self):  # profile paho's network thread itself
                if self.name.startswith("paho"):
                    prof.enable()
                    try:
                        orig(self)
                    finally:
                        prof.disable()
                else:
                    orig(self)

            threading.Thread.run = run  # type: ignore[method-assign]
            t = time.perf_counter()
            col.start(connect_timeout=10)
            while col.processed < args.messages:
                time.sleep(0.02)
            dt = time.perf_counter() - t
            col.stop()
            services.close()
        finally:
            broker.stop()
    print(f"network thread: {args.messages:,} messages in {dt:.2f} s under cProfile ({args.messages / dt:,.0f} msg/s)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("side", choices=("child", "network"))
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--per-message", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--batch", type=int, default=0, help="messages per flush (default 2000; 20 of 500 readings)")
    args = ap.parse_args()
    child(args) if args.side == "child" else network(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

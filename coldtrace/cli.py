"""`coldtrace` command line: builds Settings, configures logging, wires the adapters, says what it does."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from coldtrace.core.errors import ColdTraceError, ConfigError, TransportError
from coldtrace.logs import setup_logging
from coldtrace.settings import Settings, is_loopback_host, load_settings

log = logging.getLogger("coldtrace")
# the laboratory's address on the demo's certificates (coldtrace run --simulate without COLDTRACE_LAB__ADDRESS)
DEMO_LAB_ADDRESS = "simulated demo laboratory (coldtrace run --simulate), no real address"

# Modules that add subcommands: each has add_commands(subparsers), whose parsers set_defaults(handler=f),
# f(args) -> exit code. Imported only when the parser is built.
COMMAND_MODULES: list[str] = ["coldtrace.cli_access", "coldtrace.cli_ops"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the database lives (COLDTRACE_DATA_DIR, default ./data)")
    p.add_argument("--store-url", help="postgresql://USER:PASSWORD@HOST:PORT/DB or sqlite:///PATH: the database"
                   " (COLDTRACE_STORE__URL; default the SQLite file in the data directory)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (COLDTRACE_LOG_LEVEL)")


def _mqtt_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt-url", help="mqtt://HOST:PORT of the broker (COLDTRACE_MQTT__URL)")


def _api_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-host", help="address to listen on (COLDTRACE_API__HOST, default 127.0.0.1)")
    p.add_argument("--api-port", type=int, help="port to listen on (COLDTRACE_API__PORT, default 8080)")


def _sim_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loggers", type=int, help="simulated loggers (COLDTRACE_SIM__LOGGERS, default 12)")
    p.add_argument("--scenario", help="simulation scenario (COLDTRACE_SIM__SCENARIO, default mixed)")
    p.add_argument("--interval", type=float, help="seconds between simulated readings (COLDTRACE_SIM__INTERVAL_S,"
                   " default 5)")


def _settings_from(args: argparse.Namespace) -> Settings:
    over: dict = {}
    if getattr(args, "data_dir", None):
        over["data_dir"] = args.data_dir
    if getattr(args, "log_level", None):
        over["log_level"] = args.log_level
    if getattr(args, "serial_config", None):
        over["serial_config"] = args.serial_config
    base = load_settings(**over)
    store = base.store
    if getattr(args, "store_url", None):
        from pydantic import ValidationError

        from coldtrace.settings import StoreSettings

        try:  # validates the URL (the message never repeats it: it may hold a password)
            store = StoreSettings.model_validate({**store.model_dump(), "url": args.store_url})
        except ValidationError as exc:
            raise ConfigError(f"--store-url {exc.errors()[0]['msg']}") from None
    mqtt = base.mqtt.model_copy()
    api = base.api.model_copy()
    if getattr(args, "mqtt_url", None):
        from coldtrace.settings import MqttSettings

        mqtt = MqttSettings(**{**mqtt.model_dump(), "url": args.mqtt_url})  # validates the URL
    if getattr(args, "mqtt_port", None) is not None:
        mqtt = mqtt.model_copy(update={"embedded_port": args.mqtt_port})
    sim = base.sim.model_copy(update={k: v for k, v in (
        ("enabled", getattr(args, "simulate", None)), ("loggers", getattr(args, "loggers", None)),
        ("scenario", getattr(args, "scenario", None)), ("interval_s", getattr(args, "interval", None)),
        ("history_hours", getattr(args, "history_hours", None))) if v is not None})
    if getattr(args, "api_host", None):
        api.host = args.api_host
    if getattr(args, "api_port", None) is not None:
        api.port = args.api_port
    return base.model_copy(update={"mqtt": mqtt, "api": api, "sim": sim, "store": store})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldtrace", description="Cold-chain temperature and calibration"
                                     " monitoring for clinical-trial supplies.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="collector + API (+ embedded broker, + simulator) in one process")
    _common(run), _mqtt_opts(run), _api_opts(run)
    run.add_argument("--mqtt-port", type=int, help="port of the embedded broker (COLDTRACE_MQTT__EMBEDDED_PORT,"
                     " default 1883)")
    run.add_argument("--simulate", action="store_true", default=None,
                     help="add simulated loggers with real excursions (COLDTRACE_SIM__ENABLED)")
    _sim_opts(run)

    col = sub.add_parser("collector", help="the MQTT collector and the notifier")
    _common(col), _mqtt_opts(col)
    for p in (run, col):
        p.add_argument("--serial-config", help="TOML with [[instruments]] read directly over serial"
                       " (COLDTRACE_SERIAL_CONFIG)")

    api = sub.add_parser("api", help="the HTTP API and QA pages")
    _common(api), _api_opts(api)

    sim = sub.add_parser("sim", help="simulated loggers publishing over MQTT")
    _mqtt_opts(sim)
    _sim_opts(sim)
    sim.add_argument("--history-hours", type=float, help="buffered past uploaded at start"
                     " (COLDTRACE_SIM__HISTORY_HOURS, default 6)")
    sim.add_argument("--log-level", default=None)

    gw = sub.add_parser("gateway", help="edge gateway: serial instruments -> disk spool -> MQTT")
    gw.add_argument("--config", required=True, help="gateway.toml")
    gw.add_argument("--log-level", default=None)

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).add_commands(sub)
    return parser


class _NotConnected:
    """Stands for the collector in /health while it is being started."""

    @staticmethod
    def wait_connected(timeout: float) -> bool:
        return False


class _StopRequested(Exception):
    """Ctrl-C / SIGTERM while starting: unwinds the start (its finally stops what was started), no traceback."""


class _Shutdown:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.running = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        first = not self.event.is_set()
        self.event.set()
        if first and not self.running:  # a second signal never interrupts the clean-up of the first
            raise _StopRequested

    def wait(self) -> None:
        self.running = True
        while not self.event.wait(0.5):
            pass


BOOTSTRAP_TOKEN_FILE = "bootstrap-admin-token"  # noqa: S105 - a file name, not a secret


def write_secret_file(path, text: str):
    """Write ``text`` to ``path`` readable and writable by the owner only (0600, also if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)
    return path


def _start_api(services, settings: Settings):
    import uvicorn

    from api.app import create_app

    app = create_app(settings, services=services)
    config = uvicorn.Config(app, host=settings.api.host, port=settings.api.port, log_level="warning",
                            access_log=False, proxy_headers=False)  # api.trusted_proxies decides (api/app.py)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    # uvicorn ends its thread (SystemExit) when it cannot bind: say so and stop, rather than run on without
    # an API (a process that looks alive but serves nothing)
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise TransportError(f"the API cannot listen on {settings.api.host}:{settings.api.port} (port taken"
                             " or address not available); pass --api-port or set COLDTRACE_API__PORT")
    return server, thread


def _check_exposure(settings: Settings, services) -> None:
    from coldtrace.services import auth

    auth.check_exposure(settings, services.db)


def cmd_run(args: argparse.Namespace, *, collector_only: bool = False, api_only: bool = False) -> int:
    from coldtrace.wiring import build_services

    settings = _settings_from(args)
    setup_logging(settings.log_level)
    shutdown = _Shutdown()  # from here Ctrl-C stops cleanly, even while starting (no traceback)
    broker = None
    sim = None
    if not api_only and not settings.mqtt.url:
        if args.command != "run":
            raise ConfigError("no MQTT broker: pass --mqtt-url mqtt://HOST:PORT or set COLDTRACE_MQTT__URL")
        from coldtrace.adapters.embedded_broker import DurableInbox, EmbeddedBroker

        port = settings.mqtt.embedded_port
        print(f"Starting the embedded MQTT broker on 127.0.0.1:{port} ...", flush=True)
        # what it acknowledges is committed to this inbox first; the pipeline drains it (no subscription)
        inbox = DurableInbox(settings.data_dir / "embedded-inbox.db", settings.store.sqlite_synchronous)
        broker = EmbeddedBroker("127.0.0.1", port, inbox=inbox)
        try:
            broker.start()
        except BaseException:
            inbox.close()
            raise
        settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(
            update={"url": broker.url, "protocol": "3.1.1"})})
    if args.command == "run" and settings.sim.enabled and not settings.lab.address:
        # the demo's simulated bench issues complete certificates; they say the laboratory is a simulation
        settings = settings.model_copy(update={"lab": settings.lab.model_copy(update={
            "address": DEMO_LAB_ADDRESS})})
    print(f"Opening the store in {settings.data_dir.resolve()} ...", flush=True)
    services = build_services(settings)
    if not collector_only:
        if not is_loopback_host(settings.api.host):
            _check_exposure(settings, services)
        elif args.command == "run":
            from coldtrace.services import auth

            token = auth.ensure_bootstrap_admin(services.db)
            if token:
                path = write_secret_file(settings.data_dir / BOOTSTRAP_TOKEN_FILE, token)
                print("\n  A bootstrap admin token was created (valid 24 h):\n"
                      f"    {token}\n  It is also in {path.resolve()} (readable by you only).\n"
                      "  Use it as 'Authorization: Bearer <token>'; create users with"
                      " `coldtrace user add`.\n", flush=True)
    workers: list = []
    try:
        if not api_only:
            services.extras["collector"] = _NotConnected()  # /health: degraded until the collector connects
        if not collector_only:  # the API first: it serves while the collector and its ingest child start
            server, _thread = _start_api(services, settings)
            workers.append(server)
            print(f"API and QA pages on http://{settings.api.host}:{settings.api.port}/ "
                  f"(OpenAPI at /docs)", flush=True)
        if not api_only:
            from collector.service import CollectorService

            source = None
            if broker is not None and broker.inbox is not None:
                from coldtrace.adapters.embedded_broker import InboxDrainer
                from collector.ingest import ingest_messages

                p = services.pipeline
                source = InboxDrainer(broker.inbox.path, lambda items: ingest_messages(p, items),
                                      broker.inbox.arrived, settings.store.sqlite_synchronous,
                                      on_poison=lambda topic, payload, detail: p.quarantine(
                                          source="mqtt", reason="internal_error", detail=detail, raw=payload,
                                          topic=topic))
            collector = CollectorService(services, source=source)
            services.extras["collector"] = collector.mqtt
            print(f"Connecting the collector to {settings.mqtt.url} ...", flush=True)
            collector.start()
            workers.append(collector)
        if args.command == "run" and settings.sim.enabled:
            from coldtrace.core.model import HOUR
            from coldtrace.sim_resume import fleet_anchor, resume_fleet
            from firmware_sim.mqtt_loggers import LoggerFleet, build_fleet

            now = services.clock.now_ms()
            so = settings.sim
            history_ms = int(so.history_hours * HOUR)
            anchor, _ = fleet_anchor(services.db, now)  # same values for the same timestamps on every start
            fleet = build_fleet(so.loggers, so.scenario, anchor, history_ms, int(so.interval_s * 1000))
            resumed = resume_fleet(services.db, fleet, now, history_ms)
            sim = LoggerFleet(settings.mqtt.url or "", fleet, history_ms=history_ms)
            sim.start()
            upload = (f"{resumed} carry on from their last stored reading" if resumed else
                      f"the last {so.history_hours:g} h are uploaded first")
            print(f"Simulating {so.loggers} loggers ({so.scenario}); {upload}, then a reading every"
                  f" {so.interval_s:g} s per logger.", flush=True)
            _simulate_bench(services, settings.mqtt.url or "")
        if args.command == "run":  # where this instance listens, for `coldtrace publish` and `doctor`
            from coldtrace import runtime_info

            api_url = f"http://{settings.api.host}:{settings.api.port}" if not collector_only else None
            runtime_info.write(settings.data_dir, runtime_info.RuntimeInfo(
                os.getpid(), settings.mqtt.url, api_url, services.clock.now_ms()))
        print("Running. Ctrl-C to stop.", flush=True)
        shutdown.wait()
        print("Stopping ...", flush=True)
    finally:
        if args.command == "run":
            from coldtrace import runtime_info

            runtime_info.remove(settings.data_dir, os.getpid())
        if sim is not None:
            sim.stop()
        for w in reversed(workers):
            if hasattr(w, "should_exit"):
                w.should_exit = True
            else:
                w.stop()
        services.close()
        if broker is not None:
            broker.stop()
    return 0


def _simulate_bench(services, mqtt_url: str) -> None:
    """A calibration bench for the demo: its session (reused on a restart), then the bench's readings."""
    from coldtrace.services.calibration_records import (
        device_calibration,
        set_session_conditions,
        upsert_device_calibration,
    )
    from coldtrace.sim_resume import bench_session
    from firmware_sim.bench import BenchSpec, register_bench_devices, run_bench

    spec = BenchSpec()
    now = services.clock.now_ms()
    with services.db.write() as c:  # the reference's certificate and traceability, the loggers' identity
        if device_calibration(c, spec.reference_id) is None:  # once: a restart keeps the recorded dates
            for dev, fields in spec.registrations(now).items():
                upsert_device_calibration(c, dev, now, **fields)
    register_bench_devices(services.db, spec, now)  # judged by calibration rules only
    session = bench_session(services, spec, now)
    if not session.reused:
        with services.db.write() as c:
            lab = services.settings.lab
            set_session_conditions(c, session.session_id, {
                "customer": lab.customer, "location": lab.location, "ambient_c": spec.ambient_c,
                "ambient_rh_pct": spec.ambient_rh_pct})

    def publish() -> None:
        try:
            run_bench(mqtt_url, spec=spec, start_ms=session.start_ms)
        except ColdTraceError as exc:
            log.warning("the simulated bench could not publish: %s", exc)

    threading.Thread(target=publish, name="sim-bench", daemon=True).start()
    print(f"Simulating a calibration bench (session {session.session_id}{', reused' if session.reused else ''}:"
          f" {spec.reference_id} and {len(spec.loggers)} loggers, one drifting, at"
          f" {', '.join(f'{x:g}' for x in spec.set_points)} °C).", flush=True)
    if services.settings.lab.address == DEMO_LAB_ADDRESS:
        print("Calibration certificates name a simulated laboratory: set COLDTRACE_LAB__NAME and"
              " COLDTRACE_LAB__ADDRESS to your own.", flush=True)


def cmd_sim(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    setup_logging(settings.log_level)
    mqtt, so = settings.mqtt, settings.sim
    url = mqtt.url
    if not url:
        raise ConfigError("no MQTT broker: pass --mqtt-url mqtt://HOST:PORT or set COLDTRACE_MQTT__URL")
    if so.scenario == "bench":
        from firmware_sim.bench import main as bench_main

        return bench_main(url)
    from firmware_sim.mqtt_loggers import run_fleet_forever

    try:
        run_fleet_forever(url, so.loggers, so.scenario, so.interval_s, so.history_hours,
                          username=mqtt.username,
                          password=mqtt.password.get_secret_value() if mqtt.password else None)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or os.environ.get("COLDTRACE_LOG_LEVEL", "INFO"))
    from gateway.service import main as gateway_main

    return gateway_main(["--config", args.config])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "collector":
            return cmd_run(args, collector_only=True)
        if args.command == "api":
            return cmd_run(args, api_only=True)
        if args.command == "sim":
            return cmd_sim(args)
        if args.command == "gateway":
            return cmd_gateway(args)
        if hasattr(args, "handler"):
            return int(args.handler(args))
        parser.error(f"unknown command {args.command}")
    except _StopRequested:
        print("Stopped while starting.", flush=True)
        return 0
    except ColdTraceError as exc:
        print(f"coldtrace: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. a bad --mqtt-url
        print(f"coldtrace: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

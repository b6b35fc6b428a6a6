"""`coldtrace publish`, `coldtrace doctor`, `coldtrace export readings`, `coldtrace dock dump`: operating a
site from the shell. Each reads the same settings as the service (COLDTRACE_*, --data-dir)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from coldtrace.core.errors import ConfigError, TransportError


def _settings(args: argparse.Namespace):
    from coldtrace.settings import load_settings

    over = {"data_dir": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_settings(**over)


def resolve_mqtt_url(args: argparse.Namespace, settings) -> str:
    """--mqtt-url, else COLDTRACE_MQTT__URL, else the running `coldtrace run` of the data directory."""
    from coldtrace import runtime_info

    if getattr(args, "mqtt_url", None):
        return args.mqtt_url
    if settings.mqtt.url:
        return settings.mqtt.url
    info = runtime_info.read(settings.data_dir)
    if info is None or not info.mqtt_url:
        raise ConfigError(f"no MQTT broker: no running `coldtrace run` found in {settings.data_dir.resolve()}"
                          " (start scripts/run.sh, or pass --data-dir of the running instance, or --mqtt-url)")
    if not info.alive:
        raise ConfigError(f"the `coldtrace run` recorded in {runtime_info.path_in(settings.data_dir)} (pid"
                          f" {info.pid}) is no longer running; start it again, or pass --mqtt-url")
    return info.mqtt_url


# ---------------------------------------------------------------- publish

def build_reading_payload(device: str, temps: list[float], ts_ms: int, interval_s: float, seq: int | None,
                          battery: float | None) -> bytes:
    """A native v1 message (PROTOCOLS.md): ``temps`` at ts, ts + interval, ... (the last one at ``ts_ms``)."""
    from coldtrace.core.clock import to_iso

    n = len(temps)
    step = int(interval_s * 1000)
    readings = [{"ts": to_iso(ts_ms - (n - 1 - i) * step), "temp_c": t} for i, t in enumerate(temps)]
    doc: dict = {"v": 1, "device_id": device, "readings": readings}
    if seq is not None:
        doc["seq"] = seq
    if battery is not None:
        doc["battery_pct"] = battery
    return json.dumps(doc).encode()


def mqtt_publish(url: str, topic: str, payload: bytes, *, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0, retain: bool = False) -> None:
    """Publish one message at QoS 1 and wait for the broker's PUBACK. Raises TransportError."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from coldtrace.settings import parse_mqtt_url

    host, port, tls = parse_mqtt_url(url)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="")
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set()
    try:
        client.connect(host, port, 30)
    except OSError as exc:
        raise TransportError(f"cannot reach the MQTT broker {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise TransportError(f"the broker {host}:{port} did not acknowledge within {timeout_s:g} s"
                                 " (refused by its ACL, or not connected)")
    finally:
        client.disconnect()
        client.loop_stop()


def cmd_publish(args: argparse.Namespace) -> int:
    from coldtrace.core.clock import SystemClock, parse_time
    from coldtrace.core.payload import valid_device_id

    settings = _settings(args)
    url = resolve_mqtt_url(args, settings)
    if args.topic:
        topic = args.topic
    elif args.device:
        if not valid_device_id(args.device):
            raise ConfigError("--device must match [A-Za-z0-9._-]{1,64}")
        topic = f"coldtrace/v1/devices/{args.device}/readings"
    else:
        raise ConfigError("give --device (a logger's readings topic) or --topic")
    if args.raw is not None:
        payload = args.raw.encode()
    elif args.file:
        payload = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    else:
        if not args.device or not args.temp:
            raise ConfigError("give --temp (one or more °C values), or --raw / --file with the message body")
        try:
            ts = SystemClock().now_ms() if args.ts in (None, "now") else parse_time(args.ts)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"--ts: {exc}") from None
        payload = build_reading_payload(args.device, args.temp, ts, args.interval, args.seq, args.battery)
    m = settings.mqtt
    mqtt_publish(url, topic, payload, username=args.username or m.username,
                 password=args.password or (m.password.get_secret_value() if m.password else None))
    print(f"published {len(payload)} bytes to {topic} on {url} (QoS 1, acknowledged by the broker)")
    return 0


# ---------------------------------------------------------------- progress

def progress_bar(quiet: bool = False):
    """A rich progress bar on stderr (plain when stderr is not a terminal; nothing with ``quiet``)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                    console=Console(stderr=True, width=None if sys.stderr.isatty() else 120), disable=quiet)


# ---------------------------------------------------------------- export

EXPORT_PAGE = 50_000


def _open_store(settings):
    from coldtrace.store import open_reading_store, open_store_database

    if settings.store_is_sqlite and not settings.store_sqlite_path.exists():
        raise ConfigError(f"no ColdTrace store in {settings.data_dir.resolve()} (pass --data-dir)")
    db = open_store_database(settings)
    return db, open_reading_store(settings, db)


def iter_readings(store, device: str, start: int, end: int, page: int | None = None):
    """Readings of ``device`` with start <= ts < end, in pages (the store is never asked for all at once)."""
    page = page or EXPORT_PAGE
    cursor = start
    while cursor < end:
        chunk = store.query(device, cursor, end, limit=page)
        if not chunk:
            return
        yield chunk
        if len(chunk) < page:
            return
        cursor = chunk[-1].ts + 1


class _CsvSink:
    def __init__(self, out) -> None:
        import csv

        self.w = csv.writer(out, lineterminator="\n")
        self.w.writerow(["device_id", "ts", "ts_ms", "temp_c", "seq"])

    def write(self, chunk) -> None:
        from coldtrace.core.clock import to_iso

        self.w.writerows((r.device_id, to_iso(r.ts), r.ts, repr(r.temp_c), "" if r.seq is None else r.seq)
                         for r in chunk)

    def close(self) -> None:
        pass


class _ParquetSink:
    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("Parquet needs pyarrow: pip install 'coldtrace[parquet]' (or use --format csv)"
                              ) from None
        self.pa = pa
        self.schema = pa.schema([("device_id", pa.string()), ("ts", pa.timestamp("ms", tz="UTC")),
                                 ("temp_c", pa.float64()), ("seq", pa.int64())])
        self.writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, chunk) -> None:
        pa = self.pa
        cols = list(zip(*chunk, strict=True))
        self.writer.write_table(pa.Table.from_arrays(
            [pa.array(cols[0], pa.string()), pa.array(cols[1], pa.timestamp("ms", tz="UTC")),
             pa.array(cols[2], pa.float64()), pa.array(cols[3], pa.int64())], schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def cmd_export_readings(args: argparse.Namespace) -> int:
    from coldtrace.core.clock import SystemClock, parse_time

    settings = _settings(args)
    try:
        start = parse_time(args.from_)
        end = SystemClock().now_ms() + 1 if args.to in (None, "now") else parse_time(args.to)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--from/--to: {exc} (RFC 3339, e.g. 2026-11-01T00:00:00Z, or epoch ms)") from None
    if end <= start:
        raise ConfigError("--to must be after --from")
    fmt = args.format or ("parquet" if args.out and args.out.endswith(".parquet") else "csv")
    if fmt == "parquet" and (not args.out or args.out == "-"):
        raise ConfigError("Parquet is written to a file: give --out FILE.parquet")
    db, store = _open_store(settings)
    out_path = None if not args.out or args.out == "-" else Path(args.out)
    tmp = None if out_path is None else out_path.with_name(out_path.name + ".part")
    written = 0
    try:
        if fmt == "parquet":
            sink = _ParquetSink(tmp)
        else:
            fh = sys.stdout if tmp is None else open(tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
            sink = _CsvSink(fh)
        try:
            with progress_bar(args.quiet or out_path is None and not sys.stderr.isatty()) as bar:
                for device in args.device:
                    task = bar.add_task(device, total=end - start, detail="0 readings")
                    n = 0
                    for chunk in iter_readings(store, device, start, end):
                        sink.write(chunk)
                        n += len(chunk)
                        bar.update(task, completed=chunk[-1].ts - start + 1, detail=f"{n:,} readings")
                    bar.update(task, completed=end - start, detail=f"{n:,} readings")
                    written += n
        finally:
            sink.close()
            if fmt == "csv" and tmp is not None:
                fh.close()
        if tmp is not None:
            tmp.replace(out_path)  # a reader never sees half a file
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        store.close()
        db.close()
    if out_path is not None:
        print(f"exported {written:,} readings of {len(args.device)} device(s) to {out_path} ({fmt})")
    return 0


# ---------------------------------------------------------------- dock dump

def cmd_dock_dump(args: argparse.Namespace) -> int:
    """Read one CTL1 logger's memory from a dock's serial port into the store, with a progress bar."""
    import threading

    from coldtrace.adapters.serial_readers import Ctl1Reader, InstrumentConfig
    from coldtrace.core import ctl1
    from coldtrace.wiring import build_services

    settings = _settings(args)
    cfg = InstrumentConfig.from_dict({"kind": "ctl1", "port": args.port, "mode": "dump",
                                      **({"baudrate": args.baudrate} if args.baudrate else {})})
    services = build_services(settings)
    done = threading.Event()
    expected: dict[str, int] = {}

    class DockDump(Ctl1Reader):
        def _on_frame(self, f):  # the header says how many records to expect
            if isinstance(f, ctl1.Header):
                expected["count"] = f.count
                expected.setdefault("device", f.device_id)
            super()._on_frame(f)

        def _end_attempt(self):
            super()._end_attempt()
            if self._asm is None:  # complete, or given up after the re-asks
                done.set()

    def deliver(batches):
        services.pipeline.ingest_batches(batches, source="serial")

    reader = DockDump(cfg, deliver, clock=services.clock, reopen_max_s=1.0)
    reader.start()
    try:
        with progress_bar(args.quiet) as bar:
            task = bar.add_task(f"dump {args.port}", total=None, detail="waiting for the logger")
            deadline = time.monotonic() + args.timeout
            while not done.wait(0.1):
                if time.monotonic() > deadline and not expected:
                    raise TransportError(f"no CTL1 logger answered $DUMP on {args.port} within {args.timeout:g} s"
                                         f" ({reader.stats.last_error or 'is it docked?'})")
                if expected:
                    bar.update(task, total=expected["count"], completed=reader.stats.records,
                               description=f"dump {expected['device']}",
                               detail=f"{reader.stats.delivered:,} stored")
            bar.update(task, total=expected.get("count"), completed=reader.stats.records,
                       description=f"dump {expected.get('device', '?')}", detail=f"{reader.stats.delivered:,} stored")
    finally:
        reader.stop()
        services.close()
    st = reader.stats
    complete = st.dumps_complete > 0
    print(f"{expected.get('device', '?')}: {st.delivered:,} of {expected.get('count', 0):,} records stored"
          f" ({'complete' if complete else 'INCOMPLETE'}; {st.reasks} re-asks, {st.bad_checksum} bad checksums,"
          f" {st.truncated} truncated lines)")
    return 0 if complete else 1


# ---------------------------------------------------------------- doctor

def cmd_doctor(args: argparse.Namespace) -> int:
    from coldtrace import doctor
    from coldtrace.core.clock import SystemClock

    settings = _settings(args)
    findings: list = []
    try:
        url = resolve_mqtt_url(args, settings)
    except ConfigError as exc:
        url = None
        findings.append(doctor.Finding("warn", "broker", f"not checked: {exc}"))
    if url:
        key = None
        try:
            from coldtrace.settings import parse_mqtt_url

            host, port, _ = parse_mqtt_url(url)
            key = f"broker.dropped.{host}:{port}"
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        stored = None
        if not settings.store_is_sqlite or settings.store_sqlite_path.exists():
            from coldtrace.store import open_store_database

            db = open_store_database(settings)
            try:
                row = db.query_one("SELECT value FROM meta WHERE key = ?", (key,))
                stored = int(row[0]) if row else None
            finally:
                db.close()
        findings += doctor.check_broker(url, settings, wait_s=args.wait, stored_dropped=stored,
                                        probe=args.probe_queue)
    findings += doctor.check_store(settings)
    findings += doctor.check_clock(settings, SystemClock().now_ms())
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "info": "    "}
    area = None
    for f in findings:
        if f.area != area:
            area = f.area
            print(f"{area}:")
        print(f"  {marks[f.level]}  {f.text}")
    fails = sum(f.level == "fail" for f in findings)
    warns = sum(f.level == "warn" for f in findings)
    print(f"\n{fails} problem(s), {warns} warning(s)")
    return 1 if fails else 0


def cmd_url(args: argparse.Namespace) -> int:
    """Print where the running `coldtrace run` of the data directory listens (for scripts and the tour)."""
    from coldtrace import runtime_info

    settings = _settings(args)
    info = runtime_info.read(settings.data_dir)
    if info is None or not info.alive:
        raise ConfigError(f"no running `coldtrace run` found in {settings.data_dir.resolve()}")
    url = info.api_url if args.which == "api" else info.mqtt_url
    if not url:
        raise ConfigError(f"the running instance has no {args.which} listener")
    print(url)
    return 0


def add_commands(sub) -> None:
    pub = sub.add_parser("publish", help="publish a reading (or any message) over MQTT, as a logger would",
                         description="Publishes at QoS 1 to the broker of the `coldtrace run` in --data-dir"
                         " (its runtime.json), or to --mqtt-url / COLDTRACE_MQTT__URL.")
    pub.add_argument("--data-dir", help="data directory of the running instance (default ./data)")
    pub.add_argument("--mqtt-url", help="mqtt://HOST:PORT (default: the running instance's broker)")
    pub.add_argument("--device", help="device id: publishes to coldtrace/v1/devices/{id}/readings")
    pub.add_argument("--temp", type=float, nargs="+", help="°C; several values are readings --interval apart")
    pub.add_argument("--ts", help="time of the (last) reading, RFC 3339 or epoch ms (default: now)")
    pub.add_argument("--interval", type=float, default=60.0, help="seconds between several --temp (default 60)")
    pub.add_argument("--seq", type=int, help="message sequence number")
    pub.add_argument("--battery", type=float, help="battery_pct")
    pub.add_argument("--topic", help="another topic (e.g. a LoRaWAN network server's uplink topic)")
    pub.add_argument("--raw", help="the message body as given (e.g. malformed JSON, to see the quarantine)")
    pub.add_argument("--file", help="the message body from a file ('-': stdin)")
    pub.add_argument("--username", help="MQTT user (default COLDTRACE_MQTT__USERNAME)")
    pub.add_argument("--password", help="MQTT password (default COLDTRACE_MQTT__PASSWORD)")
    pub.set_defaults(handler=cmd_publish)

    ex = sub.add_parser("export", help="export data").add_subparsers(dest="export_command", required=True)
    er = ex.add_parser("readings", help="readings of devices over a time range as CSV or Parquet")
    er.add_argument("--device", action="append", required=True, help="device id (repeatable)")
    er.add_argument("--from", dest="from_", required=True, help="start, RFC 3339 or epoch ms (inclusive)")
    er.add_argument("--to", help="end, RFC 3339 or epoch ms (exclusive; default now)")
    er.add_argument("--format", choices=["csv", "parquet"], help="default: from --out's suffix, else csv")
    er.add_argument("--out", help="file to write (default: CSV on stdout)")
    er.add_argument("--quiet", action="store_true", help="no progress bar")
    er.add_argument("--data-dir")
    er.set_defaults(handler=cmd_export_readings)

    dock = sub.add_parser("dock", help="a CTL1 logger on a dock station's serial port")
    dock = dock.add_subparsers(dest="dock_command", required=True)
    dd = dock.add_parser("dump", help="read a docked logger's whole memory ($DUMP) into the store")
    dd.add_argument("--port", required=True, help="serial port, e.g. /dev/serial/by-id/usb-FTDI_dock1-if00-port0")
    dd.add_argument("--baudrate", type=int, help="default 115200")
    dd.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the logger to answer")
    dd.add_argument("--quiet", action="store_true", help="no progress bar")
    dd.add_argument("--data-dir")
    dd.set_defaults(handler=cmd_dock_dump)

    doc = sub.add_parser("doctor", help="what can be verified about the broker, the store and the clock")
    doc.add_argument("--mqtt-url", help="the broker to check (default: COLDTRACE_MQTT__URL, else the running"
                     " instance of --data-dir)")
    doc.add_argument("--wait", type=float, default=3.0, help="seconds to wait for the broker's $SYS topics")
    doc.add_argument("--probe-queue", type=int, default=0, metavar="N",
                     help="publish N small QoS 1 messages to a probe session to measure the broker's queue limit")
    doc.add_argument("--data-dir")
    doc.set_defaults(handler=cmd_doctor)

    u = sub.add_parser("url", help="print the API or MQTT URL of the running `coldtrace run` (its runtime.json)")
    u.add_argument("which", choices=["api", "mqtt"], nargs="?", default="api")
    u.add_argument("--data-dir")
    u.set_defaults(handler=cmd_url)

"""`coldtrace publish`, `coldtrace doctor`, `coldtrace export readings`, `coldtrace dock dump`: operating a
site from the shell. Each reads the same settings as the service (COLDTRACE_*, --data-dir)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError, TransportError


def _settings(args: argparse.Namespace):
    from .settings import load_settings

    over = {"data_dir": args.data_dir} if getattr(args, "data_dir", None) else {}
    return load_settings(**over)


def resolve_mqtt_url(args: argparse.Namespace, settings) -> str:
    """--mqtt-url, else COLDTRACE_MQTT__URL, else the running `coldtrace run` of the data directory."""
    from . import runtime_info

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
    from .clock import to_iso

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

    from .settings import parse_mqtt_url

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
    from .clock import SystemClock, parse_time
    from .payload import valid_device_id

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

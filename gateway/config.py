"""gateway.toml: which instruments to read, which broker to publish to, how large the spool may grow.

Validated once at start, with messages a person can act on (gateway.example.toml documents every key).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldtrace.errors import ConfigError
from coldtrace.serial_readers import InstrumentConfig
from coldtrace.settings import parse_mqtt_url

from .spool import POLICIES

_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass
class GatewayConfig:
    gateway_id: str
    mqtt_url: str
    spool_path: Path
    instruments: list[InstrumentConfig] = field(default_factory=list)
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    spool_max_bytes: int | None = 256 * 1024 * 1024
    spool_max_readings: int | None = None
    spool_policy: str = "reject-new"
    spool_synchronous: str = "FULL"
    max_batch_readings: int = 1000  # readings per MQTT message (PROTOCOLS: <= 10,000 and <= 256 KiB)
    inflight: int = 100  # QoS 1 messages awaiting PUBACK
    status_interval_s: float = 10.0
    backoff_min_s: float = 0.2
    backoff_max_s: float = 30.0

    @property
    def host_port_tls(self) -> tuple[str, int, bool]:
        return parse_mqtt_url(self.mqtt_url)


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    sec = doc.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"[{name}] must be a table")
    return sec


def _check_keys(where: str, d: dict[str, Any], known: set[str]) -> None:
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")


def parse_config(doc: dict[str, Any], base_dir: Path = Path(".")) -> GatewayConfig:
    _check_keys("gateway.toml", doc, {"gateway_id", "mqtt", "spool", "publish", "instruments"})
    gid = doc.get("gateway_id")
    if not isinstance(gid, str) or not _ID.fullmatch(gid):
        raise ConfigError("gateway_id must match [A-Za-z0-9._-]{1,64} (it is the device id of its status)")
    mqtt, spool, pub = _section(doc, "mqtt"), _section(doc, "spool"), _section(doc, "publish")
    _check_keys("[mqtt]", mqtt, {"url", "client_id", "username", "password", "keepalive_s"})
    _check_keys("[spool]", spool, {"path", "max_bytes", "max_readings", "policy", "synchronous"})
    _check_keys("[publish]", pub, {"max_batch_readings", "inflight", "status_interval_s", "backoff_min_s",
                                   "backoff_max_s"})
    url = mqtt.get("url")
    if not isinstance(url, str):
        raise ConfigError("[mqtt] url is required, e.g. url = \"mqtt://broker.example:1883\"")
    try:
        parse_mqtt_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    policy = spool.get("policy", "reject-new")
    if policy not in POLICIES:
        raise ConfigError(f"[spool] policy must be one of {POLICIES}, not {policy!r}")
    path = Path(spool.get("path", f"{gid}-spool.db"))
    if not path.is_absolute():
        path = base_dir / path
    raw = doc.get("instruments", [])
    if not isinstance(raw, list):
        raise ConfigError("instruments must be an array of tables: [[instruments]]")
    instruments = [InstrumentConfig.from_dict(i) for i in raw]
    cfg = GatewayConfig(
        gateway_id=gid, mqtt_url=url, spool_path=path, instruments=instruments,
        client_id=mqtt.get("client_id"), username=mqtt.get("username"), password=mqtt.get("password"),
        keepalive_s=int(mqtt.get("keepalive_s", 30)),
        spool_max_bytes=spool.get("max_bytes", 256 * 1024 * 1024), spool_max_readings=spool.get("max_readings"),
        spool_policy=policy, spool_synchronous=str(spool.get("synchronous", "FULL")),
        max_batch_readings=int(pub.get("max_batch_readings", 1000)), inflight=int(pub.get("inflight", 100)),
        status_interval_s=float(pub.get("status_interval_s", 10.0)),
        backoff_min_s=float(pub.get("backoff_min_s", 0.2)), backoff_max_s=float(pub.get("backoff_max_s", 30.0)),
    )
    if not 1 <= cfg.max_batch_readings <= 5000:
        raise ConfigError("[publish] max_batch_readings must be 1..5000 (a message must stay under 256 KiB)")
    if cfg.inflight < 1 or cfg.status_interval_s <= 0 or not 0 < cfg.backoff_min_s <= cfg.backoff_max_s:
        raise ConfigError("[publish] inflight >= 1, status_interval_s > 0, 0 < backoff_min_s <= backoff_max_s")
    return cfg


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read gateway config {p}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"gateway config {p} is not valid TOML: {exc}") from exc
    return parse_config(doc, p.resolve().parent)

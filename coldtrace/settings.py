"""One Settings object, validated once at start (pydantic-settings, env prefix COLDTRACE_, nested with __).

Example: COLDTRACE_MQTT__URL=mqtt://broker:1883, COLDTRACE_API__PORT=8080, COLDTRACE_DATA_DIR=/var/lib/coldtrace.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError


class MqttSettings(BaseModel):
    url: str | None = None  # None: `coldtrace run` starts an embedded broker on 127.0.0.1:embedded_port
    embedded_port: int = Field(1883, ge=1, le=65535)
    client_id: str = "coldtrace-collector"
    shared_group: str | None = None  # e.g. "coldtrace" -> $share/coldtrace/coldtrace/v1/devices/+/readings
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 5000  # MQTT 5: how many unacknowledged messages the broker may send us
    # MQTT 3.1.1 has no Receive Maximum: the broker's own window applies (Mosquitto: max_inflight_messages,
    # default 20). The collector commits at half the window so the broker never waits on us.
    broker_inflight_v311: int = 20
    keepalive_s: int = 30

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parse_mqtt_url(v)
        return v


class InfluxSettings(BaseModel):
    """InfluxDB for readings (store.backend=influx): 1.x user/password or a 2.x/3.x token."""

    url: str | None = None  # e.g. http://influxdb:8086
    database: str = "coldtrace"  # 2.x: the database name of a DBRP mapping; 3.x: the database
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    batch_size: int = Field(5000, ge=1, le=100_000)
    flush_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    retry_budget_s: float = Field(60.0, ge=0)  # a write rides out an outage this long, then StoreError
    create_database: bool = True


class StoreSettings(BaseModel):
    backend: Literal["sqlite", "influx"] = "sqlite"
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    influx: InfluxSettings = InfluxSettings()


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_range_days: int = 400
    page_limit: int = 10_000


class IngestSettings(BaseModel):
    require_registration: bool = False  # True: readings of unknown devices are quarantined (unknown_device)
    batch_max_messages: int = 2000
    # decode/store/evaluate MQTT messages in a child process (a core of its own); False: in the collector's
    # process (tests that move a ManualClock need that)
    worker_process: bool = True
    batch_max_wait_ms: int = 20


class WebhookSettings(BaseModel):
    allow_private_targets: bool = False
    # webhook notifier and alert lifecycle (coldtrace.webhooks, collector.notifier, coldtrace.alerts)
    timeout_s: float = Field(10.0, gt=0, le=60)
    workers: int = Field(8, ge=1, le=64)
    rotation_overlap_hours: float = Field(24.0, ge=0)  # the old secret keeps signing this long
    escalate_critical_min: float | None = 15.0  # unacknowledged critical alert -> alert.escalated
    escalate_alarm_min: float | None = 30.0
    repeat_critical_min: float | None = 30.0
    repeat_alarm_min: float | None = 60.0
    max_escalations: int | None = Field(None, ge=1)  # None: repeat until acknowledged (ISA-18.2)
    auto_resolve_after_min: float | None = 60.0  # a cleared self-clearing (info/warning) alert resolves after this


class SimSettings(BaseModel):
    """Simulated loggers (`coldtrace run --simulate`, `coldtrace sim`)."""

    enabled: bool = False  # COLDTRACE_SIM__ENABLED=true is `coldtrace run --simulate`
    loggers: int = Field(12, ge=1, le=100_000)
    scenario: str = "mixed"
    interval_s: float = Field(5.0, gt=0)
    history_hours: float = Field(6.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLDTRACE_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("./data")
    # A TOML file with [[instruments]] (the gateway.toml format) read by the collector directly: a bench PC
    # attached to the server. None: no serial instruments.
    serial_config: Path | None = None
    log_level: str = "INFO"
    default_profile: str = "2-8C"
    tick_interval_s: float = 10.0
    mqtt: MqttSettings = MqttSettings()
    store: StoreSettings = StoreSettings()
    api: ApiSettings = ApiSettings()
    ingest: IngestSettings = IngestSettings()
    webhooks: WebhookSettings = WebhookSettings()
    sim: SimSettings = SimSettings()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "coldtrace.db"


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus explicit overrides; errors become one readable ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """mqtt://host:port or mqtts://host:port -> (host, port, tls). Raises ValueError with a clear message."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"MQTT URL {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"MQTT URL {url!r} has no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError(f"MQTT URL {url!r} has an invalid port") from None
    return parts.hostname, port, tls


def is_loopback_host(host: str) -> bool:
    """Whether an address to listen on or connect to stays on this machine (127.0.0.0/8, ::1, localhost)."""
    h = (host or "").strip().strip("[]")
    if h in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False

"""One Settings object, validated once at start (pydantic-settings, env prefix COLDTRACE_, nested with __).

Example: COLDTRACE_MQTT__URL=mqtt://broker:1883, COLDTRACE_API__PORT=8080, COLDTRACE_DATA_DIR=/var/lib/coldtrace.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from coldtrace.core.errors import ConfigError
from coldtrace.core.listvalue import comma_or_json_list
from coldtrace.core.lorawan import LorawanSettings


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
    # subscribe to the broker's $SYS counters (Mosquitto: messages dropped, messages stored) and raise
    # broker.messages_dropped when the dropped counter grows (coldtrace/services/data_loss.py)
    watch_broker_sys: bool = True

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
    # Where the metadata (and, unless backend=influx, the readings) live: postgresql://user:pass@host:port/db
    # or sqlite:///path (sqlite:////absolute/path); None: <data_dir>/coldtrace.db (the embedded default).
    # Env COLDTRACE_STORE__URL, CLI --store-url. Secret: it may hold the password (shown redacted).
    url: SecretStr | None = None
    pool_size: int = Field(10, ge=1, le=500)  # PostgreSQL connections per process (psycopg_pool max_size)
    # "sqlite": the readings table of the metadata database (SQLite or PostgreSQL, whichever url names)
    backend: Literal["sqlite", "influx"] = "sqlite"
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "FULL"
    influx: InfluxSettings = InfluxSettings()

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        text = v.get_secret_value().strip()
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme not in ("postgresql", "postgres", "sqlite"):  # the message never repeats the URL (password)
            raise ValueError("must be postgresql://user:password@host:port/database or sqlite:///path")
        if scheme != "sqlite":
            try:
                parts = urlsplit(text)
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError("is not a valid postgresql:// URL (a port that is not a number?)") from None
            if not parts.hostname or not parts.path.strip("/"):
                raise ValueError("needs a host and a database: postgresql://user:password@host:port/database")
        return SecretStr(text)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_range_days: int = 400
    page_limit: int = 10_000
    # argon2 computations at once (64 MiB each); None: sized to the available memory and CPUs (auth.py)
    password_hash_slots: int | None = Field(None, ge=1, le=64)
    # proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (CIDRs or addresses; "*" trusts anyone).
    # Env: COLDTRACE_API__TRUSTED_PROXIES='["10.0.0.0/8"]' or a comma-separated list
    trusted_proxies: Annotated[list[str], NoDecode] = ["127.0.0.1/32", "::1/128"]
    cookie_secure: bool = False  # True: the session cookie is always Secure (TLS ends at a proxy)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, v: object) -> object:
        return comma_or_json_list(v)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: list[str]) -> list[str]:
        for item in v:
            if item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"trusted proxy {item!r} is not an address or CIDR") from None
        return v


class AuditSettings(BaseModel):
    """Audit anchoring (coldtrace/services/audit_keys.py, coldtrace/services/audit_anchor.py, docs/SECURITY.md).
    The keys are read by coldtrace.services.audit_keys from the same environment variables
    (COLDTRACE_AUDIT__HMAC_KEY, ...)."""

    hmac_key: SecretStr | None = None  # hex/base64, >= 32 bytes; None: <data_dir>/audit-hmac.key (made 0600)
    keyed_from: int | None = Field(None, ge=1)  # with hmac_key: first record id that must be keyed (default 1)
    signing_key: SecretStr | None = None  # Ed25519 (PEM or base64 raw); None: <data_dir>/audit-signing.key
    # signed heads, one JSON line each, appended; None: <data_dir>/audit-heads.jsonl. Put it elsewhere
    # (another disk, a mount only appended to, a log shipper's input): it is what catches a truncated tail.
    head_file: Path | None = None
    head_interval_s: float = Field(300.0, gt=0)  # export the head at most this often (when it changed)
    public_key_file: Path | None = None  # check heads with this key instead of <data_dir>'s (an auditor's copy)
    # also POST each signed head (Standard Webhooks, signed with head_webhook_secret "whsec_...") to this URL,
    # set by the operator: another system keeps a copy. The file stays the record; failed posts are retried.
    head_webhook_url: str | None = None
    head_webhook_secret: SecretStr | None = None

    @field_validator("hmac_key")
    @classmethod
    def _check_hmac_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            raw = v.get_secret_value().strip()
            hex_ok = all(c in "0123456789abcdefABCDEF" for c in raw)
            if (len(raw) // 2 if hex_ok else len(raw) * 3 // 4) < 32:
                raise ValueError("the audit HMAC key needs at least 32 bytes (64 hex digits or 43+ base64)")
        return v


class IngestSettings(BaseModel):
    require_registration: bool = False  # True: readings of unknown devices are quarantined (unknown_device)
    batch_max_messages: int = 2000
    # decode/store/evaluate MQTT messages in a child process (a core of its own); False: in the collector's
    # process (tests that move a ManualClock need that)
    worker_process: bool = True
    batch_max_wait_ms: int = 20
    # a batch is handed on once its payloads reach this many bytes (~13,000 readings of the native format,
    # ~30 ms of the ingest child): a burst of large messages never makes one long transaction for an alarm
    # to wait behind (issue 18)
    batch_max_bytes: int = Field(default=512 * 1024, ge=1024)


class WebhookSettings(BaseModel):
    # Internal webhook targets that may be called (public ones always may): CIDRs, addresses or host names,
    # as a JSON list or comma-separated, e.g. COLDTRACE_WEBHOOKS__ALLOWED_PRIVATE_TARGETS='["10.20.0.0/16"]'.
    # Link-local and cloud metadata addresses are never allowed (coldtrace.services.webhooks.NEVER_ALLOWED).
    allowed_private_targets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Replaced by allowed_private_targets. true no longer allows every internal address: it is read as
    # loopback only (127.0.0.0/8, ::1), with a warning naming the new setting (docs/PROTOCOLS.md "Webhooks").
    allow_private_targets: bool = False
    # webhook notifier and alert lifecycle (coldtrace.services.webhooks, collector.notifier, coldtrace.services.alerts)
    timeout_s: float = Field(10.0, gt=0, le=60)
    # attempts in flight per subscription (its delivery lane); a hanging receiver holds only its own lane
    lane_concurrency: int = Field(4, ge=1, le=32)
    rotation_overlap_hours: float = Field(24.0, ge=0)  # the old secret keeps signing this long
    escalate_critical_min: float | None = 15.0  # unacknowledged critical alert -> alert.escalated
    escalate_alarm_min: float | None = 30.0
    repeat_critical_min: float | None = 30.0
    repeat_alarm_min: float | None = 60.0
    max_escalations: int | None = Field(None, ge=1)  # None: repeat until acknowledged (ISA-18.2)
    auto_resolve_after_min: float | None = 60.0  # a cleared self-clearing (info/warning) alert resolves after this

    @field_validator("allowed_private_targets", mode="before")
    @classmethod
    def _split_targets(cls, v: object) -> object:
        return comma_or_json_list(v)  # from an env var: a JSON list, or "10.0.0.0/8, hooks.site.lan"

    @field_validator("allowed_private_targets")
    @classmethod
    def _check_targets(cls, v: list[str]) -> list[str]:
        from coldtrace.services.webhooks import TargetPolicy  # here: keeps settings free of import cycles

        TargetPolicy.parse(v)  # raises ValueError naming the bad entry
        return v

    @model_validator(mode="after")
    def _legacy_switch(self) -> WebhookSettings:
        if self.allow_private_targets:
            logging.getLogger(__name__).warning(
                "webhooks.allow_private_targets (COLDTRACE_WEBHOOKS__ALLOW_PRIVATE_TARGETS) was replaced by"
                " webhooks.allowed_private_targets (COLDTRACE_WEBHOOKS__ALLOWED_PRIVATE_TARGETS), a list of"
                " CIDRs/hosts; it now allows loopback only (127.0.0.0/8, ::1). List your internal receivers there.")
            for loopback in ("127.0.0.0/8", "::1/128"):
                if loopback not in self.allowed_private_targets:
                    self.allowed_private_targets.append(loopback)
            self.allow_private_targets = False
        return self


class SimSettings(BaseModel):
    """Simulated loggers (`coldtrace run --simulate`, `coldtrace sim`)."""

    enabled: bool = False  # COLDTRACE_SIM__ENABLED=true is `coldtrace run --simulate`
    loggers: int = Field(12, ge=1, le=100_000)
    scenario: str = "mixed"
    interval_s: float = Field(5.0, gt=0)
    history_hours: float = Field(6.0, ge=0)


class ShipmentSettings(BaseModel):
    """Release of shipments (docs/RULES.md "Release checklist")."""

    # A logger with no calibration record: "refuse" it at attachment (default), or "warn" (attach; the
    # release checklist shows it as a warning)
    uncalibrated_loggers: Literal["refuse", "warn"] = "refuse"


class LabSettings(BaseModel):
    """The calibration laboratory named on certificates (ISO/IEC 17025:2017 7.8.2.1 b)."""

    name: str = "ColdTrace calibration laboratory"
    address: str | None = None  # None: certificates stay drafts until it is configured (not issued)
    location: str = "calibration bench"  # where calibrations are performed, when not at the customer's site
    customer: str = "internal (own equipment)"  # default customer of a session


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
    audit: AuditSettings = AuditSettings()
    webhooks: WebhookSettings = WebhookSettings()
    sim: SimSettings = SimSettings()
    shipments: ShipmentSettings = ShipmentSettings()
    lab: LabSettings = LabSettings()
    lorawan: LorawanSettings = LorawanSettings()  # LoRaWAN network servers over MQTT (coldtrace/core/lorawan.py)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "coldtrace.db"

    @property
    def store_url(self) -> str:
        """The database to open: store.url, or the SQLite file in the data directory."""
        if self.store.url is not None:
            return self.store.url.get_secret_value()
        return f"sqlite:///{self.db_path}"

    @property
    def store_is_sqlite(self) -> bool:
        return self.store_url.lower().startswith("sqlite:")

    @property
    def store_sqlite_path(self) -> Path | None:
        """The SQLite file of the store (None on PostgreSQL)."""
        url = self.store_url
        return Path(url[len("sqlite:///"):]) if self.store_is_sqlite else None

    @property
    def store_display(self) -> str:
        """The store for messages and logs: the password redacted."""
        if self.store_is_sqlite:
            return str(self.store_sqlite_path)
        from coldtrace.store.urls import redact_url

        return redact_url(self.store_url)


def env_decoding_error(exc: SettingsError, prefix: str = "COLDTRACE_") -> str:
    """pydantic-settings could not JSON-decode a variable of a list/object setting: which variable, and what
    such a setting takes (its own message names only the top-level field)."""
    m = re.search(r'field "([^"]+)"', str(exc))
    field = m.group(1) if m else ""
    head = (prefix + field).upper()

    def not_json(v: str) -> bool:
        try:
            json.loads(v)
        except ValueError:
            return True
        return False

    suspects = sorted(k for k, v in os.environ.items()
                      if (k.upper() == head or k.upper().startswith(head + "__")) and not_json(v))
    where = (f"the environment variable {suspects[0]}" if len(suspects) == 1 else
             f"one of the environment variables {', '.join(suspects)}" if suspects else f"a {head}* variable")
    return (f"{field or 'a setting'}: {where} is not valid JSON; a list or object setting takes JSON, e.g."
            ' \'["a", "b"]\' or \'{"key": "value"}\'')


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment plus explicit overrides; errors become one readable ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {env_decoding_error(exc)}") from None
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

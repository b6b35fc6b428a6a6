"""gateway.toml: which instruments to read, which broker to publish to, how large the spool may grow.

A pydantic-settings model: the TOML file, with ``COLDTRACE_*`` environment variables overriding it (``__``
between sections, as for the service: ``COLDTRACE_MQTT__URL``, ``COLDTRACE_MQTT__USERNAME``,
``COLDTRACE_MQTT__PASSWORD``, ``COLDTRACE_SPOOL__MAX_BYTES``, ``COLDTRACE_GATEWAY_ID``...), so a container
gets its broker and credentials from the environment and keeps its instruments in the file. Validated once at
start; every error names the key (and the variable, when the value came from the environment).
gateway.example.toml and deploy/gateway/gateway.toml document every key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from coldtrace.adapters.serial_readers import InstrumentConfig
from coldtrace.core.errors import ConfigError
from coldtrace.settings import env_decoding_error, parse_mqtt_url

from .spool import POLICIES

ENV_PREFIX = "COLDTRACE_"


class MqttSection(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the service's COLDTRACE_MQTT__* (e.g. EMBEDDED_PORT) may be set

    url: str
    client_id: str | None = None  # default coldtrace-gw-{gateway_id}
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_mqtt_url(v)  # ValueError with a readable message
        return v


class SpoolSection(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: Path | None = None  # default {gateway_id}-spool.db beside the config file
    max_bytes: int | None = Field(256 * 1024 * 1024, ge=1024 * 1024)
    max_readings: int | None = Field(None, ge=1)
    policy: str = "reject-new"
    synchronous: Literal["FULL", "NORMAL"] = "FULL"

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"must be one of {', '.join(POLICIES)}")
        return v


class PublishSection(BaseModel):
    model_config = ConfigDict(extra="ignore")

    max_batch_readings: int = Field(1000, ge=1, le=5000)  # a message must stay under 256 KiB
    inflight: int = Field(100, ge=1, le=65535)  # QoS 1 messages awaiting PUBACK
    status_interval_s: float = Field(10.0, gt=0)
    backoff_min_s: float = Field(0.2, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _backoff(self) -> PublishSection:
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError("backoff_min_s must not exceed backoff_max_s")
        return self


class GatewaySettings(BaseSettings):
    """The whole gateway.toml. Sources, strongest first: COLDTRACE_* environment, then the file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore",
                                      case_sensitive=False)

    gateway_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    mqtt: MqttSection
    spool: SpoolSection = SpoolSection()
    publish: PublishSection = PublishSection()
    instruments: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the file (given as init values)


# the keys a gateway.toml may hold (the file is checked strictly: a misspelt key is an error, not ignored)
_KNOWN: dict[str, set[str]] = {
    "": {"gateway_id", "mqtt", "spool", "publish", "instruments"},
    "mqtt": set(MqttSection.model_fields),
    "spool": set(SpoolSection.model_fields),
    "publish": set(PublishSection.model_fields),
}


@dataclass
class GatewayConfig:
    """The validated configuration, as the gateway uses it."""

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


def _check_keys(doc: dict[str, Any]) -> None:
    unknown = sorted(set(doc) - _KNOWN[""])
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(_KNOWN[''])}")
    for sec in ("mqtt", "spool", "publish"):
        if sec not in doc:
            continue
        if not isinstance(doc[sec], dict):
            raise ConfigError(f"[{sec}] must be a table")
        unknown = sorted(set(doc[sec]) - _KNOWN[sec])
        if unknown:
            raise ConfigError(f"[{sec}]: unknown setting(s) {unknown}; known: {sorted(_KNOWN[sec])}")
    if "instruments" in doc and not isinstance(doc["instruments"], list):
        raise ConfigError("instruments must be an array of tables: [[instruments]]")


def _env_name(loc: tuple) -> str:
    return ENV_PREFIX + "__".join(str(p) for p in loc if not isinstance(p, int)).upper()


def _explain(exc: ValidationError, env: Mapping[str, str]) -> str:
    problems = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "gateway.toml"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            hint = {"gateway_id": 'gateway_id = "GW-DOCK-01"', "mqtt": '[mqtt] url = "mqtt://broker:1883"',
                    "mqtt.url": 'url = "mqtt://broker:1883" in [mqtt]'}.get(key)
            msg = f"is required (e.g. {hint}, or {_env_name(loc)})" if hint else f"is required ({_env_name(loc)})"
        elif e["type"] == "string_pattern_mismatch" and key == "gateway_id":
            msg = "must match [A-Za-z0-9._-]{1,64} (it is the device id of its status)"
        name = _env_name(loc)
        src = f" (from the environment variable {name})" if name in env else ""
        problems.append(f"{key}: {msg}{src}")
    return "; ".join(problems)


def parse_config(doc: dict[str, Any], base_dir: Path = Path(".")) -> GatewayConfig:
    """A gateway.toml document, overridden by the COLDTRACE_* environment -> GatewayConfig."""
    _check_keys(doc)
    try:
        s = GatewaySettings(**doc)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, os.environ)) from None
    except SettingsError as exc:
        raise ConfigError(env_decoding_error(exc, ENV_PREFIX)) from None
    instruments = []
    for i, raw in enumerate(s.instruments):
        try:
            instruments.append(InstrumentConfig.from_dict(raw))
        except ConfigError as exc:
            raise ConfigError(f"instruments[{i}] ({raw.get('port', '?')}): {exc}") from None
    path = s.spool.path or Path(f"{s.gateway_id}-spool.db")
    if not path.is_absolute():
        path = base_dir / path
    return GatewayConfig(
        gateway_id=s.gateway_id, mqtt_url=s.mqtt.url, spool_path=path, instruments=instruments,
        client_id=s.mqtt.client_id, username=s.mqtt.username,
        password=s.mqtt.password.get_secret_value() if s.mqtt.password else None, keepalive_s=s.mqtt.keepalive_s,
        spool_max_bytes=s.spool.max_bytes, spool_max_readings=s.spool.max_readings, spool_policy=s.spool.policy,
        spool_synchronous=s.spool.synchronous, max_batch_readings=s.publish.max_batch_readings,
        inflight=s.publish.inflight, status_interval_s=s.publish.status_interval_s,
        backoff_min_s=s.publish.backoff_min_s, backoff_max_s=s.publish.backoff_max_s)


def load_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read gateway config {p}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"gateway config {p} is not valid TOML: {exc}") from exc
    try:
        return parse_config(doc, p.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"gateway config {p}: {exc}") from None

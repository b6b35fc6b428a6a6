"""The project's exception tree. Adapters translate foreign exceptions into these (``raise ... from exc``)."""

from __future__ import annotations


class ColdTraceError(Exception):
    """Base of every error ColdTrace raises on purpose."""

    code = "error"


class ConfigError(ColdTraceError):
    """A setting is missing or invalid; the message says what to change."""

    code = "config"


class PayloadError(ColdTraceError):
    """An incoming message cannot be decoded; ``code`` is the quarantine reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class StoreError(ColdTraceError):
    """A store (SQLite, InfluxDB) failed to read or write."""

    code = "store"


class TransportError(ColdTraceError):
    """A network or serial link failed (MQTT broker, HTTP receiver, serial port)."""

    code = "transport"


class NotFound(ColdTraceError):
    code = "not_found"


class Conflict(ColdTraceError):
    code = "conflict"


class Forbidden(ColdTraceError):
    code = "forbidden"


class RateLimited(ColdTraceError):
    """Too many requests of one kind right now (sign-in throttle, password hashing full): try again after
    ``retry_after_s`` seconds. Over HTTP: 429 with a Retry-After header."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))
        if code is not None:
            self.code = code

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}

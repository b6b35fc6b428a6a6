"""The reference thermometer's SCPI subset (PROTOCOLS.md): pure parsing of its answers, no port I/O.

A reference thermometer is the standard a calibration is traced to, so its answers are parsed strictly:
an answer that is not a finite number in the physical range is an error, never a guessed value. SCPI
instruments report "no reading" as 9.9E37 (overrange / open sensor) and -9.9E37; both are errors too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from coldtrace.core.errors import PayloadError
from coldtrace.core.model import TEMP_MAX_C, TEMP_MIN_C

IDN = "*IDN?"
ERR = "SYST:ERR?"
SCPI_OVERRANGE = 9.9e37


def meas_temp(channel: int = 1) -> str:
    return f"MEAS:TEMP? (@{int(channel)})"


class ScpiError(PayloadError):
    """An answer that cannot be used (``code``: scpi_empty, scpi_number, scpi_overrange, scpi_idn...)."""


@dataclass(frozen=True, slots=True)
class Identity:
    manufacturer: str
    model: str
    serial: str
    firmware: str

    @property
    def device_id(self) -> str:
        """Model and serial number make the reference's device id (``REF-1524-SN0001``)."""
        return _safe_id(f"{self.model}-{self.serial}")


_ID_OK = re.compile(r"[^A-Za-z0-9._-]")


def _safe_id(text: str) -> str:
    return _ID_OK.sub("_", text)[:64] or "REF"


def _clean(answer: str | bytes) -> str:
    if isinstance(answer, bytes):
        try:
            answer = answer.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ScpiError("scpi_noise", f"non-ASCII answer {answer[:32]!r}") from exc
    text = answer.strip()
    if not text:
        raise ScpiError("scpi_empty", "empty answer")
    if any(ord(c) < 0x20 for c in text):
        raise ScpiError("scpi_noise", f"control characters in answer {text[:32]!r}")
    return text


def parse_idn(answer: str | bytes) -> Identity:
    """``COLDTRACE-SIM,REF-1524,SN0001,1.0`` -> Identity (IEEE 488.2: four comma-separated fields)."""
    parts = [p.strip() for p in _clean(answer).split(",")]
    if len(parts) != 4 or not parts[1] or not parts[2]:
        raise ScpiError("scpi_idn", f"*IDN? answer needs 4 fields: {answer!r}")
    return Identity(*parts)


def parse_temperature(answer: str | bytes) -> float:
    """``+4.5231E+00`` -> 4.5231 (°C). Overrange, non-finite and out-of-range answers raise ScpiError."""
    text = _clean(answer)
    try:
        value = float(text)
    except ValueError as exc:
        raise ScpiError("scpi_number", f"not a number: {text[:32]!r}") from exc
    if not math.isfinite(value) or abs(value) >= SCPI_OVERRANGE * 0.99:
        raise ScpiError("scpi_overrange", f"instrument reports no reading: {text!r}")
    if not (TEMP_MIN_C <= value <= TEMP_MAX_C):
        raise ScpiError("scpi_range", f"{value} °C is outside [{TEMP_MIN_C}, {TEMP_MAX_C}]")
    return value


def parse_error(answer: str | bytes) -> tuple[int, str]:
    """``-113,"Undefined header"`` -> (-113, 'Undefined header'); (0, 'No error') when the queue is empty."""
    text = _clean(answer)
    code, sep, msg = text.partition(",")
    try:
        number = int(code)
    except ValueError as exc:
        raise ScpiError("scpi_number", f"bad error code in {text[:40]!r}") from exc
    return number, msg.strip().strip('"') if sep else ""


def format_temperature(value: float) -> str:
    """The instrument's own format (used by the simulator): ``+4.5231E+00``."""
    return f"{value:+.4E}"

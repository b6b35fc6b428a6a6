"""Webhook subscription filters: which events a subscriber receives (pure; docs/PROTOCOLS.md, webhooks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coldtrace.core.model import SEVERITIES


def matches(filters: Mapping[str, Any], event_type: str, severity: str | None, device_id: str | None
            ) -> bool:
    """Does an event pass a subscription's filters? Empty filter lists mean 'all'."""
    types = filters.get("event_types") or ()
    if types and not any(_type_match(t, event_type) for t in types):
        return False
    min_sev = filters.get("min_severity")
    if min_sev and severity in SEVERITIES and SEVERITIES.index(severity) < SEVERITIES.index(min_sev):
        return False
    devices = filters.get("device_ids") or ()
    return not (devices and device_id not in devices)


def _type_match(pattern: str, event_type: str) -> bool:
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type

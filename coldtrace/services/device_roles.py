"""Device roles: a shipment logger is judged by its shipment profile, a device on a calibration bench by the
calibration rules only (docs/RULES.md "Device roles").

A bench ramps its bath from 22 to -20 °C and on to 25 °C on purpose: judged by the 2-8 °C profile, every
ramp would be a critical excursion, and the bath's 20 °C/min slope a sensor fault. So the readings of a
calibration reference or a device under calibration raise no excursion and no rate-of-change alert; the
calibration session judges them (stability, paired errors, live drift). Everything else of device health
(battery, stuck value, out-of-range readings, offline when monitored) still applies.

The role of a device is, in order: the role a person (or the simulator) set; the role it has in a running
calibration session (its reference, or one of its devices under test); else what its kind implies (a
``reference`` is a calibration reference, anything else a shipment logger). When a device leaves the bench
(its role is changed, or the session it was judged by ends) its readings up to then are marked as bench
readings (``devices.judged_from``): a later re-evaluation never judges them by a profile.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coldtrace.services.audit import record_audit
from coldtrace.store import calibration as calibration_store
from coldtrace.store import devices as device_store

SHIPMENT_LOGGER = "shipment_logger"
CALIBRATION_REFERENCE = "calibration_reference"
DEVICE_UNDER_CALIBRATION = "device_under_calibration"
ROLES = (SHIPMENT_LOGGER, CALIBRATION_REFERENCE, DEVICE_UNDER_CALIBRATION)
BENCH_ROLES = frozenset({CALIBRATION_REFERENCE, DEVICE_UNDER_CALIBRATION})

def default_role(kind: str | None) -> str:
    return CALIBRATION_REFERENCE if kind == "reference" else SHIPMENT_LOGGER


def session_roles(c: Any) -> dict[str, str]:
    """Devices taking part in a running calibration session -> their role there."""
    return calibration_store.session_roles(c)


def effective_role(role: str | None, kind: str | None, session_role: str | None = None) -> tuple[str, str]:
    """(role, source): source is 'set' (by a person), 'session' (a running calibration session) or 'kind'."""
    if role:
        return role, "set"
    if session_role:
        return session_role, "session"
    return default_role(kind), "kind"


def on_bench(role: str | None, kind: str | None, session_role: str | None = None) -> bool:
    return effective_role(role, kind, session_role)[0] in BENCH_ROLES


def set_role(c: Any, device_id: str, role: str | None, *, actor: str, now: int,
             reason: str | None = None) -> dict[str, Any]:
    """Set (or, with None, clear) a device's role in the caller's transaction, with an audit record.

    A device that leaves the bench is judged by its profile from its next reading on. A role set to what it
    already is changes nothing and records nothing (a restarted simulator registers its bench again)."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    device_store.ensure_device(c, device_id, now)
    row = device_store.role_state(c, device_id)
    assert row is not None  # registered just above, in this transaction
    if row.role == role:
        return {"device_id": device_id, "role": role, "previous": row.role}
    sroles = session_roles(c)
    was = on_bench(row.role, row.kind, sroles.get(device_id))
    will = on_bench(role, row.kind, sroles.get(device_id))
    if was and not will and row.last_ts is not None:
        device_store.set_role(c, device_id, role, judged_from=max(row.judged_from or 0, row.last_ts + 1))
    else:
        device_store.set_role(c, device_id, role)
    record_audit(c, actor=actor, action="device.role", entity="device", entity_id=device_id,
                 old={"role": row.role}, new={"role": role}, reason=reason, ts=now)
    return {"device_id": device_id, "role": role, "previous": row.role}


def leave_bench(c: Any, device_ids: Iterable[str], bench_until_ms: int | None = None) -> None:
    """A calibration session ended: its devices without a role of their own leave the bench; their readings
    so far, and up to ``bench_until_ms`` (the bath's tail after the last capture: the devices are still in
    it), stay bench readings, never judged by a profile. Call after the session's state changed."""
    sroles = session_roles(c)
    for dev in device_ids:
        row = device_store.role_state(c, dev)
        if row is None or row.role is not None or row.last_ts is None or on_bench(None, row.kind, sroles.get(dev)):
            continue
        device_store.set_judged_from(c, dev, max(row.judged_from or 0, row.last_ts + 1, bench_until_ms or 0))

"""QA decisions with an electronic signature (21 CFR 11.50, 11.70, 11.200; EU GMP Annex 11 §14).

A signature is executed by the signed-in person re-entering their password at the moment of signing. The
record shows the printed name, the date and time, the meaning (released / rejected / quarantined) and the
reason. It is bound to what was signed: ``record_hash`` is the hash of the shipment's evaluation at that
instant and ``signature_hash`` covers the whole manifest, so a copied or altered signature does not verify.
A decision is never edited (the table's triggers refuse it); a later decision supersedes it with a reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from typing import Any

from coldtrace.core.errors import Conflict, Forbidden
from coldtrace.core.model import Alert, stable_id
from coldtrace.ports import ReadingStore
from coldtrace.services import shipments
from coldtrace.services.audit import record_audit
from coldtrace.services.auth import ROLE_RANK, Principal, get_user, verify_password
from coldtrace.store import shipments as store
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

MEANINGS = ("released", "rejected", "quarantined")


class SignatureError(Forbidden):
    """The password re-entered for a signature is wrong (or the account is locked)."""

    code = "signature_failed"

def authenticate_signer(db: Database, principal: Principal, password: str, now_ms: int, *, signing: str,
                        failed_action: str, entity: str, entity_id: str, attempt: dict[str, Any],
                        error: type[Forbidden] = SignatureError) -> Any:
    """An electronic signature's identity check (21 CFR 11.200(a)(1)): a person (not a service or device
    token) with the qa role or above, active, re-entering their password. A wrong password is recorded as
    ``failed_action`` in the audit trail and counts toward the account lockout. Returns the user row."""
    if principal.user_id is None or principal.role == "device":
        raise Forbidden("only a person can sign: use your own session or personal token")
    if ROLE_RANK.get(principal.role, 0) < ROLE_RANK["qa"]:
        raise Forbidden(f"signing {signing} needs the qa role")
    user = get_user(db, principal.user_id)
    if user is None or not user["active"]:
        raise Forbidden("the signer's account is not active")
    if not verify_password(db, principal.user_id, password, now_ms=now_ms):
        with db.write() as c:
            record_audit(c, actor=principal.name, action=failed_action, entity=entity, entity_id=entity_id,
                         new=attempt, reason="wrong password", ts=now_ms)
        raise error("signature failed: the password is not correct")
    return user



def _manifest(d: dict[str, Any]) -> str:
    keys = ("id", "shipment_id", "meaning", "reason", "signer_user_id", "signer_username", "printed_name",
            "signed_at", "supersedes_id", "supersede_reason", "record_hash")
    raw = json.dumps({k: d.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def verify_decision(d: dict[str, Any]) -> bool:
    """Whether a stored decision still matches its signature manifest."""
    return _manifest(d) == d.get("signature_hash")


def sign_decision(db: Database, readings: ReadingStore, shipment_id: str, *, principal: Principal,
                  password: str, meaning: str, reason: str, now_ms: int,
                  supersede_reason: str | None = None, emit: shipments.Emit | None = None,
                  checklist: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sign a decision on a shipment under review, or supersede the decision in force. ``checklist``: the
    release checklist the signer saw (its summary goes into the audit record of the decision)."""
    if meaning not in MEANINGS:
        raise ValueError(f"meaning must be one of {', '.join(MEANINGS)}")
    if not reason or not reason.strip():
        raise ValueError("a decision needs a reason")
    user = authenticate_signer(db, principal, password, now_ms, signing="a release decision",
                               failed_action="decision.signature_failed", entity="shipment",
                               entity_id=shipment_id, attempt={"meaning": meaning})
    with db.write() as c:
        sh = store.get_shipment(c, shipment_id)
        prior = store.decisions(c, shipment_id)
        current = prior[-1] if prior else None
        if sh["state"] == "under_review" and current is None:
            if supersede_reason:
                raise ValueError("there is no decision to supersede")
        elif sh["state"] in shipments.DECIDED and current is not None:
            if not supersede_reason or not supersede_reason.strip():
                raise Conflict(f"shipment is already {sh['state']}: a new decision must give supersede_reason")
        else:
            raise Conflict(f"shipment is {sh['state']}: move it to under_review before deciding")
        ev = shipments.evaluate(c, readings, shipment_id)
        shipments.persist_excursions(c, ev, now_ms)
        d = {"id": stable_id("dec", shipment_id, now_ms, secrets.token_hex(4)), "shipment_id": shipment_id,
             "meaning": meaning, "reason": reason.strip(), "signer_user_id": user["id"],
             "signer_username": user["username"], "printed_name": user["full_name"], "signed_at": now_ms,
             "supersedes_id": current["id"] if current else None,
             "supersede_reason": supersede_reason.strip() if current and supersede_reason else None,
             "record_hash": ev.record_hash()}
        d["signature_hash"] = _manifest(d)
        store.insert_decision(c, d)
        store.update_shipment(c, shipment_id, state=meaning, updated_at=now_ms)
        record_audit(c, actor=user["username"], action="decision.sign", entity="shipment", entity_id=shipment_id,
                     old={"state": sh["state"], "decision_id": current["id"] if current else None},
                     new={"state": meaning, "decision_id": d["id"], "printed_name": d["printed_name"],
                          "signature_hash": d["signature_hash"],
                          **({"checklist": checklist} if checklist is not None else {})},
                     reason=d["reason"] if not current else f"{d['reason']} (supersedes: {d['supersede_reason']})",
                     ts=now_ms)
        if emit is not None:
            emit(c, [Alert(id=stable_id("alert", "decision", d["id"]), type="shipment.decided",
                           severity="info", device_id=None, ts=now_ms, shipment_id=shipment_id,
                           data={"decision_id": d["id"], "meaning": meaning, "reason": d["reason"],
                                 "printed_name": d["printed_name"], "signed_at": now_ms,
                                 "supersedes_id": d["supersedes_id"]})], now_ms)
    log.info("shipment %s %s by %s", shipment_id, meaning, user["username"])
    return d

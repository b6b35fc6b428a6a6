"""Signing and issuing calibration certificates (ISO/IEC 17025:2017 7.8; 21 CFR 11.50/11.200 signatures).

Two electronic signatures, each executed by a person re-entering their password:

- "performed by": the person responsible for the measurements signs the completed session (once); the
  signature is bound to the session's results by a hash of them.
- "approved by": an authorised signatory (another person than the performer) approves one device's
  certificate, which issues it: everything the certificate states is frozen into a new revision with its
  issue date, so the PDF of a revision never changes. A re-issue is a new revision that must say what
  changed (the fields that differ are listed automatically as well).

Both are audited (``calibration.sign_performed``, ``calibration.certificate.issue``, and a failed password as
``calibration.signature_failed``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from typing import Any

from coldtrace.adapters.certificate import CertificateData
from coldtrace.core.errors import Conflict, Forbidden, NotFound
from coldtrace.core.model import stable_id
from coldtrace.services.audit import record_audit
from coldtrace.services.auth import Principal
from coldtrace.services.calibration_records import certificate_data, certificate_ref, session_results, session_row
from coldtrace.services.signature import authenticate_signer
from coldtrace.store import calibration as store
from coldtrace.store.db import Database

log = logging.getLogger(__name__)

PERFORMED_MEANING = "Performed the calibration and is responsible for the measurement results"
APPROVED_MEANING = "Reviewed and approved the certificate for issue (authorised signatory)"
# what may differ between revisions without being a change of the certificate's content
VOLATILE = ("issued_at_ms", "revision", "changes", "previous", "approved_by")


class CalibrationSignatureError(Forbidden):
    code = "signature_failed"


class CertificateIncomplete(Conflict):
    """The certificate would lack an element ISO/IEC 17025:2017 7.8 requires: it is not issued."""

    code = "certificate_incomplete"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _signer(db: Database, principal: Principal, password: str, now_ms: int, *, entity_id: str,
            what: str) -> dict[str, Any]:
    return dict(authenticate_signer(db, principal, password, now_ms, signing="a calibration",
                                    failed_action="calibration.signature_failed", entity="calibration_session",
                                    entity_id=entity_id, attempt={"signature": what},
                                    error=CalibrationSignatureError))


def results_hash(db: Database, session_id: str) -> str:
    keys = ("device_id", "point_index", "set_point_c", "n", "error_c", "s_c", "expanded_u_c", "decision",
            "ref_mean_c", "dut_mean_c")
    return _digest([{k: r[k] for k in keys} for r in session_results(db, session_id)])


def performed_signature(db: Database, session_id: str) -> dict[str, Any] | None:
    r = store.performed_signature(db, session_id)
    return None if r is None else dict(r)


def sign_performed(db: Database, session_id: str, *, principal: Principal, password: str,
                   now_ms: int) -> dict[str, Any]:
    """The "performed by" signature of a completed session."""
    s = session_row(db, session_id)
    if s["state"] != "completed":
        raise Conflict(f"session {session_id} is {s['state']}: only a completed session is signed as performed")
    user = _signer(db, principal, password, now_ms, entity_id=session_id, what="performed")
    with db.write() as c:
        if store.performed_signature(c, session_id) is not None:
            raise Conflict(f"session {session_id} is already signed as performed")
        d = {"id": stable_id("csig", session_id, now_ms, secrets.token_hex(4)), "session_id": session_id,
             "role": "performed", "meaning": PERFORMED_MEANING, "signer_user_id": user["id"],
             "signer_username": user["username"], "printed_name": user["full_name"], "signed_at": now_ms,
             "record_hash": results_hash(db, session_id)}
        d["signature_hash"] = _digest(d)
        if not store.insert_signature(c, d):
            raise Conflict(f"session {session_id} is already signed as performed")
        record_audit(c, actor=user["username"], action="calibration.sign_performed", entity="calibration_session",
                     entity_id=session_id, new={"printed_name": d["printed_name"], "meaning": d["meaning"],
                                                "signature_hash": d["signature_hash"]}, ts=now_ms)
    log.info("calibration session %s signed as performed by %s", session_id, user["username"])
    return d


def revisions(db: Database, session_id: str, device_id: str) -> list[dict[str, Any]]:
    """The issued revisions of a certificate, oldest first (without their bodies)."""
    return [dict(r) for r in store.certificate_revisions(db, session_id, device_id)]


def issued_data(db: Database, session_id: str, device_id: str, revision: int | None = None
                ) -> CertificateData | None:
    """An issued revision exactly as issued (the latest when ``revision`` is None); None if never issued."""
    body = store.certificate_body(db, session_id, device_id, revision)
    if body is None:
        if revision is not None:
            raise NotFound(f"certificate {certificate_ref(session_id, device_id)} has no revision {revision}")
        return None
    return CertificateData.from_dict(json.loads(body))


def changed_fields(old: CertificateData, new: CertificateData) -> list[str]:
    a, b = old.to_dict(), new.to_dict()
    return sorted(k for k in a if k not in VOLATILE and a[k] != b.get(k))


def issue(db: Database, session_id: str, device_id: str, *, principal: Principal, password: str, now_ms: int,
          lab: dict[str, str], changes: str | None = None) -> dict[str, Any]:
    """Approve and issue the next revision of a device's certificate; returns the revision's row."""
    s = session_row(db, session_id)
    if s["state"] != "completed":
        raise Conflict(f"session {session_id} is {s['state']}: a certificate is issued for a completed session")
    performed = performed_signature(db, session_id)
    if performed is None:
        raise Conflict("the session is not signed as performed yet: the person who performed it signs first")
    if performed["record_hash"] != results_hash(db, session_id):
        raise Conflict("the session's results changed after the performed-by signature")
    draft = certificate_data(db, session_id, device_id, lab=lab)
    missing = draft.missing()
    if missing:
        raise CertificateIncomplete(f"certificate {draft.certificate_id} cannot be issued: record "
                                    + "; ".join(missing) + " first")
    user = _signer(db, principal, password, now_ms, entity_id=session_id, what="approved")
    if user["id"] == performed["signer_user_id"]:
        raise Forbidden("the certificate is approved by another person than the one who performed the calibration")
    number = certificate_ref(session_id, device_id)
    prior = revisions(db, session_id, device_id)
    text = (changes or "").strip()
    if prior:
        last = issued_data(db, session_id, device_id)
        assert last is not None
        diff = changed_fields(last, draft)
        if not text:
            raise ValueError("a re-issue must say what changed and why (changes)")
        if diff:
            text = f"{text} (fields changed: {', '.join(diff)})"
    elif text:
        raise ValueError("the first issue of a certificate has no changes to state")
    rev = (prior[-1]["revision"] + 1) if prior else 1
    approved = {"printed_name": user["full_name"], "username": user["username"], "signed_at": now_ms,
                "meaning": APPROVED_MEANING}
    data = CertificateData.from_dict({
        **draft.to_dict(), "issued_at_ms": now_ms, "revision": rev, "changes": text or None,
        "approved_by": approved, "previous": [{"revision": p["revision"], "issued_at": p["issued_at"]} for p in prior]})
    body = json.dumps(data.to_dict(), sort_keys=True, separators=(",", ":"))
    body_hash = hashlib.sha256(body.encode()).hexdigest()
    row = {"number": number, "revision": rev, "session_id": session_id, "device_id": device_id, "issued_at": now_ms,
           "approver_user_id": user["id"], "approver_username": user["username"], "approver_name": user["full_name"],
           "changes": text or None, "body": body, "body_hash": body_hash}
    row["signature_hash"] = _digest({k: v for k, v in row.items() if k != "body"})
    with db.write() as c:
        if not store.insert_certificate(c, row):
            raise Conflict(f"certificate {number} revision {rev} was issued meanwhile")
        record_audit(c, actor=user["username"], action="calibration.certificate.issue", entity="calibration_session",
                     entity_id=session_id, new={"certificate": number, "revision": rev, "device_id": device_id,
                                                "meaning": APPROVED_MEANING, "body_hash": body_hash,
                                                "signature_hash": row["signature_hash"]},
                     reason=text or None, ts=now_ms)
    log.info("certificate %s revision %d issued by %s", number, rev, user["username"])
    return {k: v for k, v in row.items() if k != "body"}

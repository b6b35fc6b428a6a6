"""HTTP ingest (PROTOCOLS.md): devices POST the native payload or SenML with a device token.

The token is bound to devices: a payload for a device the token does not hold is refused (403) before
anything is stored. Everything else goes through the one ingest path, ``Pipeline.ingest_raw``.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from coldtrace.core.payload import MAX_BYTES, SENML_CONTENT_TYPE, claimed_device
from coldtrace.services.auth import Principal
from coldtrace.services.pipeline import RawMessage

from ..deps import CurrentPrincipal, ServicesDep
from ..errors import ApiError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["ingest"])
CONTENT_TYPES = ("application/json", SENML_CONTENT_TYPE)


class RejectedOut(BaseModel):
    index: int | None
    reason: str


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedOut]


def device_principal(principal: CurrentPrincipal) -> Principal:
    if principal.kind != "device":
        raise ApiError(403, "forbidden", "ingest needs a device token (ctd_...)")
    return principal


DeviceDep = Annotated[Principal, Depends(device_principal)]


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > MAX_BYTES:
                raise ApiError(413, "too_large", f"the body is larger than {MAX_BYTES} bytes")
        except ValueError:
            raise ApiError(400, "bad_request", "invalid Content-Length") from None
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > MAX_BYTES:
            raise ApiError(413, "too_large", f"the body is larger than {MAX_BYTES} bytes")
    return bytes(buf)


@router.post("/ingest", status_code=202, response_model=IngestOut,
             responses={400: {"description": "bad payload"}, 401: {"description": "no or unknown token"},
                        403: {"description": "token not bound to the payload's device"},
                        409: {"description": "every reading conflicts with a stored one (conflicting_duplicate)"},
                        413: {"description": "body larger than 256 KiB"},
                        422: {"description": "every reading of the message was rejected (code: the first reason)"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}},
                 SENML_CONTENT_TYPE: {"schema": {"type": "array", "items": {"type": "object"}}}}}})
async def ingest(request: Request, services: ServicesDep, device: DeviceDep,
                 content_type: Annotated[str | None, Header()] = None) -> IngestOut:
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype not in CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type", f"send one of {', '.join(CONTENT_TYPES)}")
    data = await _read_body(request)
    msg = RawMessage(data, "http", None, ctype)
    probe = services.pipeline.decode(msg)  # decoded once: the pipeline ingests this very result
    if probe.batch is not None:
        dev = probe.batch.device_id
    else:  # rejected whole: quarantine it under the device it claims if the token holds it, or the token's one
        dev = claimed_device(data)
        if dev not in device.device_ids:
            dev = next(iter(device.device_ids)) if len(device.device_ids) == 1 else None
    if probe.batch is not None and dev not in device.device_ids:
        log.warning("HTTP ingest refused: %s is not bound to device %s", device.name, dev)
        raise ApiError(403, "device_not_allowed", f"this token may not send for device {dev!r}")
    msg.topic_device_id = dev
    # the commit (fsync) must not block the event loop: run it in the thread pool
    try:
        result = await run_in_threadpool(services.pipeline.ingest_raw_many, [msg], [probe])
    except sqlite3.OperationalError as exc:  # the store is busy or failing (not the message): retry later
        log.error("HTTP ingest: the store failed: %s", exc)
        raise ApiError(503, "unavailable", "the store is unavailable; send the message again later",
                       headers={"Retry-After": "5"}) from None
    if probe.batch is None:
        first = probe.rejections[0] if probe.rejections else None
        raise ApiError(400, first.reason if first else "bad_request",
                       first.detail if first else "the payload cannot be read")
    if result.poisoned:  # decoded, but storing or evaluating it raised: it is in quarantine, never a 500
        rej = result.rejected[-1]
        raise ApiError(400, rej.reason, f"the message could not be ingested and is quarantined: {rej.detail}")
    if result.rejected and not result.accepted and not result.duplicates:
        # nothing of the message was stored: an error with the first reason (every one is in `rejected`)
        first = result.rejected[0]
        status = 409 if first.reason == "conflicting_duplicate" else 422
        raise ApiError(status, first.reason, f"no reading of the message was stored; all are quarantined:"
                       f" {first.detail}", extra={"rejected": [
                           {"index": r.index, "reason": r.reason, "detail": r.detail} for r in result.rejected]})
    return IngestOut(accepted=result.accepted, duplicates=result.duplicates,
                     rejected=[RejectedOut(index=r.index, reason=r.reason) for r in result.rejected])

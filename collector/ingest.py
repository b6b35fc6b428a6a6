"""One batch of MQTT messages (topic, payload) through the ingest pipeline: readings, status messages, bad
topics. Transport-independent: the MQTT client (in process), the ingest child (collector/ingest_worker.py) and
the embedded broker's inbox drainer all hand their batches here."""

from __future__ import annotations

import json
import logging

from coldtrace.core.payload import valid_device_id
from coldtrace.services.pipeline import Pipeline, RawMessage, is_transient, poison_reason

log = logging.getLogger(__name__)

TOPIC_PREFIX = "coldtrace/v1/devices/"


def topic_device(topic: str) -> tuple[str | None, str | None]:
    """coldtrace/v1/devices/{id}/{kind} -> (id, kind); (None, None) when the topic is not ours."""
    if not topic.startswith(TOPIC_PREFIX):
        return None, None
    dev, sep, kind = topic[len(TOPIC_PREFIX):].partition("/")
    if not sep or "/" in kind:
        return None, None
    return dev, kind


def ingest_messages(pipeline: Pipeline, items: list[tuple[str, bytes]]) -> int:
    """One batch of (topic, payload) through the pipeline: readings, status messages, bad topics.

    Returns the number of alerts raised. Raises ColdTraceError only when the store failed (nothing is
    acknowledged then, and the batch is retried): whatever else one message makes any step raise ends with
    that message quarantined (``Pipeline.ingest_raw_many`` for readings, here for status messages and
    topics), so no message can stop, or be retried ahead of, the others."""
    raws: list[RawMessage] = []
    decoded: list | None = None  # set when a message of another source (LoRaWAN) is decoded by that source
    for topic, payload in items:
        try:
            src = next((s for s in pipeline.topic_sources if s.matches(topic)), None) \
                if pipeline.topic_sources else None
            if src is not None:  # another source's topic (LoRaWAN): decoded by that source
                raw = RawMessage(payload, src.name, src.device_hint(topic), None, topic)
                pr = src.decode(topic, payload, pipeline.clock.now_ms())
            else:
                raw, pr = _route(pipeline, topic, payload), None
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("MQTT message on %r quarantined: %s: %s", topic[:200], type(exc).__name__, exc)
            pipeline.quarantine(source="mqtt", reason=poison_reason(exc), topic=topic, raw=payload,
                                detail=f"{type(exc).__name__} while ingesting: {exc}")
            continue
        if raw is None:
            continue
        if pr is not None and decoded is None:
            decoded = [pipeline.decode(m) for m in raws]
        raws.append(raw)
        if decoded is not None:
            decoded.append(pr if pr is not None else pipeline.decode(raw))
    return pipeline.ingest_raw_many(raws, decoded).alerts if raws else 0


def _route(pipeline: Pipeline, topic: str, payload: bytes) -> RawMessage | None:
    """A readings message to decode, or None once a status message or a bad topic has been dealt with."""
    dev, kind = topic_device(topic)
    if kind not in ("readings", "status") or not dev or not valid_device_id(dev):
        pipeline.quarantine(source="mqtt", reason="schema", topic=topic, raw=payload,
                            detail=f"topic {topic[:200]!r} is not coldtrace/v1/devices/{{id}}/readings|status"
                                   " with an id of [A-Za-z0-9._-]{1,64}")
        return None
    if kind == "status":
        _status(pipeline, dev, payload, topic)
        return None
    return RawMessage(payload, "mqtt", dev, None, topic)


def _status(pipeline: Pipeline, dev: str, payload: bytes, topic: str) -> None:
    """A birth message or last will: a JSON object, ``online`` a boolean when present (PROTOCOLS.md)."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        pipeline.quarantine(source="mqtt", reason="bad_status", topic=topic, raw=payload, device_id=dev,
                            detail=f"status message is not UTF-8 JSON: {type(exc).__name__}: {str(exc)[:200]}")
        return
    if not isinstance(doc, dict):
        pipeline.quarantine(source="mqtt", reason="bad_status", topic=topic, raw=payload, device_id=dev,
                            detail="a status message is a JSON object")
        return
    online = doc.get("online")
    pipeline.record_status(dev, online if isinstance(online, bool) else None,
                           payload.decode("utf-8", "replace"), topic=topic)

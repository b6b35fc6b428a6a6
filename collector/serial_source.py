"""Serial instruments on the server itself (a bench PC): readers -> ``Pipeline.ingest_batches``.

The readers (``coldtrace.adapters.serial_readers``) decode and deliver batches; this source screens each reading the
way the payload decoder screens MQTT/HTTP readings (physical range, clock skew) so a serial reading is held
to the same rules, and hands the rest to the one ingest pipeline. A screened-out reading is quarantined with
its reason, never dropped silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from coldtrace.adapters.serial_readers import InstrumentConfig, ReaderGroup, build_reader
from coldtrace.core.clock import Clock, SystemClock
from coldtrace.core.model import TEMP_MAX_C, TEMP_MIN_C, Batch, Rejection
from coldtrace.core.payload import FUTURE_TOLERANCE_MS
from coldtrace.services.pipeline import Pipeline

log = logging.getLogger(__name__)


def screen(batches: Sequence[Batch], now_ms: int) -> tuple[list[Batch], list[tuple[str, Rejection]]]:
    """Split readings into storable batches and (device_id, Rejection) pairs. Pure."""
    kept: list[Batch] = []
    rejected: list[tuple[str, Rejection]] = []
    for b in batches:
        good = []
        for i, r in enumerate(b.readings):
            if not (math.isfinite(r.temp_c) and TEMP_MIN_C <= r.temp_c <= TEMP_MAX_C):
                rejected.append((b.device_id, Rejection("out_of_range", f"{r.temp_c} °C at ts={r.ts}", i)))
            elif r.ts > now_ms + FUTURE_TOLERANCE_MS:
                rejected.append((b.device_id, Rejection(
                    "future_timestamp", f"ts={r.ts} is {(r.ts - now_ms) // 1000} s ahead", i)))
            else:
                good.append(r)
        if good:
            kept.append(b if len(good) == len(b.readings) else
                        Batch(b.device_id, tuple(good), b.seq, b.sent_at, b.battery_pct, b.source))
    return kept, rejected


class SerialSource:
    """Starts one reader per configured instrument; each delivery is one pipeline transaction."""

    def __init__(self, pipeline: Pipeline, instruments: Sequence[InstrumentConfig | dict[str, Any]],
                 clock: Clock | None = None) -> None:
        self.pipeline = pipeline
        self.clock = clock or SystemClock()
        cfgs = [i if isinstance(i, InstrumentConfig) else InstrumentConfig.from_dict(i) for i in instruments]
        self.group = ReaderGroup([build_reader(c, self.ingest, clock=self.clock) for c in cfgs])

    def ingest(self, batches: list[Batch]) -> None:
        """The readers' callback. An exception (store down) makes the reader offer the batches again."""
        kept, rejected = screen(batches, self.clock.now_ms())
        result = self.pipeline.ingest_batches(kept, rejected, source="serial")
        log.debug("serial ingest: %d accepted, %d duplicates, %d rejected", result.accepted,
                  result.duplicates, len(result.rejected))

    def start(self) -> None:
        self.group.start()

    def stop(self) -> None:
        self.group.stop()

    def status(self) -> list[dict[str, Any]]:
        return self.group.status()

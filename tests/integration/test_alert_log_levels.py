"""Log levels of the alert path (issue 13 item 3): per-excursion and per-alert lines are DEBUG.

A refrigerator sampled every 5 s whose door is opened every 20 minutes for three hours (six openings outside
the warm spell, each: the high-warn and high excursions of 8 °C opened and closed, four information alerts)
and that warms up once for long enough to alarm, through the real Pipeline, the alert lifecycle's clock tick
every simulated minute and the webhook notifier delivering every alert to a real receiver. In the field this
made 1,594 alert log lines in 16 min and buried the bootstrap token; here nothing about a single excursion,
alert or delivery reaches INFO: the INFO lines left are the tick's summaries of what people must know of
(escalations, audited resolutions), at most one per tick that did such a thing.
"""

from __future__ import annotations

import json
import logging

import pytest

from coldtrace.core.model import MINUTE
from coldtrace.services import alerts as lifecycle
from coldtrace.services import webhooks as wh
from coldtrace.store import webhooks as store
from collector.notifier import Notifier
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

DEV = "LOG-FRIDGE-7"
SAMPLE_MS = 5_000


def _temp(t: int) -> float:
    """5 °C; the door open 3 min every 20 min (9.5 °C); warm from 100 to 150 min (a real excursion)."""
    m = t // MINUTE
    if 100 <= m < 150:
        return 9.5
    return 9.5 if m % 20 < 3 else 5.0


def test_excursions_alerts_and_deliveries_log_at_debug_only(pipeline_env, caplog):
    clock, db, pipeline = pipeline_env
    secret = wh.generate_secret()
    receiver = WebhookReceiver([secret], now_s=lambda: clock.now_ms() // 1000).start()
    notifier = Notifier(db, clock, allow_private_targets=True, timeout_s=2)
    t0 = clock.now_ms() // MINUTE * MINUTE
    store.create_subscription(db, url=receiver.url, secret=secret, now=t0)
    caplog.set_level(logging.DEBUG)
    ticks_that_matter = 0
    try:
        for minute in range(1, 4 * 60 + 1):  # nearly three hours of readings, then ticks for one more
            now = t0 + minute * MINUTE
            clock.set(now)
            if minute <= 175:  # (a door opening at 180 min would be open at the end)
                readings = [{"ts": ts, "temp_c": _temp(ts - t0)}
                            for ts in range(now - MINUTE + SAMPLE_MS, now + 1, SAMPLE_MS)]
                body = {"v": 1, "device_id": DEV, "readings": readings}
                assert not pipeline.ingest_raw(json.dumps(body).encode(), topic_device_id=DEV).rejected
                pipeline.tick(now)  # the deadman (not after the last reading: "offline" is not the point here)
            r = lifecycle.tick(db, now)
            ticks_that_matter += bool(r.escalated or r.unshelved or len(r.resolved) > r.quiet)
            if minute % 10 == 0:
                notifier.run_once(now)
    finally:
        notifier.close()
        receiver.stop()

    alerts = db.query("SELECT type, severity FROM alerts WHERE device_id = ?", (DEV,))
    info = [a for a in alerts if a["severity"] == "info"]
    assert len(info) >= 4 * 7  # six door openings and the warm spell, opened and closed per limit
    assert {a["type"] for a in alerts if a["severity"] != "info"} == {"excursion.alarm"}
    assert len(receiver.delivered()) >= len(alerts)  # every alert delivered (and escalations, resolutions)
    resolved_info = db.query_one("SELECT COUNT(*) FROM alert_events WHERE action = 'auto_resolved' AND alert_id IN"
                                 " (SELECT id FROM alerts WHERE severity = 'info')")[0]
    assert resolved_info >= 4 * 6  # the door openings' events cleared themselves in the hour

    ours = [r for r in caplog.records if r.name.split(".")[0] in ("coldtrace", "collector")]
    # (the audit key's creation: once per installation, at the first audit record)
    loud = [r for r in ours if r.levelno >= logging.INFO and r.name != "coldtrace.services.audit_keys"]
    assert all(r.name == "coldtrace.services.alerts" and r.getMessage().startswith("alert tick:") for r in loud), \
        [(r.name, r.levelname, r.getMessage()) for r in loud if not r.getMessage().startswith("alert tick:")]
    assert 1 <= len(loud) == ticks_that_matter  # the escalations of the unacknowledged alarm, the warning's end
    assert ticks_that_matter < 15  # a handful of lines, not one per door opening or per event
    per_alert = [r for r in ours if r.levelno == logging.DEBUG and r.getMessage().startswith("alert excursion.")]
    assert len(per_alert) == len(alerts)  # each alert is still logged, at DEBUG
    assert any(r.getMessage().startswith("delivered ") for r in ours if r.levelno == logging.DEBUG)

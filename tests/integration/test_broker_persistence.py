"""deploy/mosquitto/mosquitto.conf is true to its claim: with its persistence settings a Mosquitto killed
with SIGKILL loses at most `autosave_interval` changes of what it had acknowledged (measured: a few), and a
clean stop loses nothing."""

from __future__ import annotations

import pytest

from tests.support.broker_backlog import backlog_across_restart, shipped_settings, sigkill
from tests.support.services import Mosquitto

pytestmark = pytest.mark.integration

N = 3000


def test_sigkill_loses_at_most_autosave_interval_acknowledged_messages(tmp_path):
    extra, interval = shipped_settings()
    broker = Mosquitto(tmp_path, extra_conf=extra)
    broker.start()

    try:
        received, _ = backlog_across_restart(broker, N, lambda: sigkill(broker))
    finally:
        broker.stop()
    assert N - interval <= received <= N, f"lost {N - received} acknowledged messages"


def test_clean_stop_loses_nothing(tmp_path):
    extra, _ = shipped_settings()
    broker = Mosquitto(tmp_path, extra_conf=extra)
    broker.start()
    try:
        assert backlog_across_restart(broker, N, broker.stop)[0] == N
    finally:
        broker.stop()

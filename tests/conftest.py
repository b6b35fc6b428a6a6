from __future__ import annotations

import pytest

from tests.support.services import Mosquitto


@pytest.fixture
def mosquitto(tmp_path):
    """A fresh Mosquitto on a free loopback port for one test."""
    d = tmp_path / "mosquitto"
    d.mkdir()
    broker = Mosquitto(d)
    broker.start()
    yield broker
    broker.stop()

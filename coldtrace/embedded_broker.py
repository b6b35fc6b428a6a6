"""An embedded MQTT broker (amqtt, pure Python) for `coldtrace run` without a broker URL. Loopback only.

It exists so that one command runs the whole thing on a laptop; sites use Mosquitto (docker-compose.yml).
amqtt speaks MQTT 3.1.1, so the collector uses 3.1.1 with a persistent session (clean_session=false) here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from .errors import TransportError

log = logging.getLogger(__name__)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise TransportError("the embedded broker listens on loopback only; use Mosquitto for anything else")
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if not _port_free(self.host, self.port):
            raise TransportError(f"port {self.port} on {self.host} is taken; is another broker running? Pass"
                                 f" --mqtt-url mqtt://{self.host}:{self.port} to use it, or --mqtt-port N")
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TransportError("the embedded MQTT broker did not start in time")
        if self._error is not None:
            raise TransportError(f"the embedded MQTT broker failed to start: {self._error}") from self._error
        log.info("embedded MQTT broker (amqtt) listening on %s", self.url)

    def _run(self) -> None:
        from amqtt.broker import Broker

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 10000}},
            "timeout_disconnect_delay": 0,
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(10)
        except Exception as exc:  # noqa: BLE001
            log.warning("embedded broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

"""Every `coldtrace run` option is also a COLDTRACE_* variable; a flag given wins over the variable."""

from __future__ import annotations

import pytest

from coldtrace.cli import _settings_from, build_parser
from coldtrace.core.errors import ConfigError


def settings(argv, monkeypatch, **env):
    for k in list(__import__("os").environ):
        if k.startswith("COLDTRACE_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return _settings_from(build_parser().parse_args(argv))


def test_environment_variables_for_every_run_option(monkeypatch, tmp_path):
    s = settings(["run"], monkeypatch, COLDTRACE_SIM__ENABLED="true", COLDTRACE_SIM__LOGGERS="5",
                 COLDTRACE_SIM__SCENARIO="failing-cooler", COLDTRACE_SIM__INTERVAL_S="2.5",
                 COLDTRACE_MQTT__EMBEDDED_PORT="1999", COLDTRACE_MQTT__URL="mqtt://broker:1884",
                 COLDTRACE_DATA_DIR=str(tmp_path), COLDTRACE_API__PORT="9001", COLDTRACE_API__HOST="127.0.0.2",
                 COLDTRACE_SERIAL_CONFIG=str(tmp_path / "serial.toml"))
    assert (s.sim.enabled, s.sim.loggers, s.sim.scenario, s.sim.interval_s) == (True, 5, "failing-cooler", 2.5)
    assert (s.mqtt.embedded_port, s.mqtt.url) == (1999, "mqtt://broker:1884")
    assert (s.data_dir, s.api.port, s.api.host) == (tmp_path, 9001, "127.0.0.2")
    assert s.serial_config == tmp_path / "serial.toml"


def test_flags_win_over_variables(monkeypatch, tmp_path):
    s = settings(["run", "--simulate", "--loggers", "7", "--mqtt-port", "2000", "--api-port", "9002",
                  "--data-dir", str(tmp_path)], monkeypatch, COLDTRACE_SIM__LOGGERS="5",
                 COLDTRACE_MQTT__EMBEDDED_PORT="1999", COLDTRACE_API__PORT="9001")
    assert (s.sim.enabled, s.sim.loggers, s.mqtt.embedded_port, s.api.port) == (True, 7, 2000, 9002)


def test_a_bad_variable_is_one_clear_error(monkeypatch):
    with pytest.raises(ConfigError, match="api.port"):
        settings(["run"], monkeypatch, COLDTRACE_API__PORT="not-a-port")

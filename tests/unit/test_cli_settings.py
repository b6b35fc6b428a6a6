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


@pytest.mark.parametrize("command", ["run", "collector", "api"])
def test_store_url_from_the_variable_or_the_flag_which_wins(monkeypatch, tmp_path, command):
    pg = "postgresql://ct:pw-from-env@db.internal:5433/coldtrace"
    s = settings([command, "--data-dir", str(tmp_path)], monkeypatch, COLDTRACE_STORE__URL=pg)
    assert s.store_url == pg and not s.store_is_sqlite and s.store_sqlite_path is None
    assert s.store_display == "postgresql://ct:***@db.internal:5433/coldtrace"
    assert "pw-from-env" not in repr(s) and "pw-from-env" not in str(s.model_dump())
    s = settings([command, "--store-url", "sqlite:////srv/ct/meta.db"], monkeypatch, COLDTRACE_STORE__URL=pg)
    assert s.store_is_sqlite and str(s.store_sqlite_path) == "/srv/ct/meta.db"


def test_without_a_store_url_the_store_is_the_sqlite_file_in_the_data_directory(monkeypatch, tmp_path):
    s = settings(["run", "--data-dir", str(tmp_path)], monkeypatch)
    assert s.store_url == f"sqlite:///{tmp_path}/coldtrace.db" and s.store_sqlite_path == tmp_path / "coldtrace.db"


@pytest.mark.parametrize("url, says", [
    ("mysql://u:hunter2@h/db", "must be postgresql://"),
    ("postgresql://u:hunter2@h:port/db", "not a valid postgresql:// URL"),
    ("postgresql://u:hunter2@h:5432/", "needs a host and a database"),
])
def test_a_bad_store_url_is_one_clear_error_without_the_password(monkeypatch, url, says):
    for argv, env in ((["api", "--store-url", url], {}), (["api"], {"COLDTRACE_STORE__URL": url})):
        with pytest.raises(ConfigError, match=says) as err:
            settings(argv, monkeypatch, **env)
        assert "hunter2" not in str(err.value)


def test_the_lorawan_variables_as_the_docs_write_them(monkeypatch, tmp_path):
    """The COLDTRACE_LORAWAN__* assignments of README.md and docs/deployment.md, copied as written (a plain
    decoded-field name, a field with its unit, a JSON map of DevEUIs), configure `coldtrace run`."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    docs = (root / "README.md").read_text() + (root / "docs" / "deployment.md").read_text()
    written = dict(re.findall(r"(COLDTRACE_LORAWAN__[A-Z_]+)=('[^']*'|[^\s`)]+)", docs))
    assert {"COLDTRACE_LORAWAN__TEMPERATURE_FIELDS", "COLDTRACE_LORAWAN__BATTERY_FIELDS",
            "COLDTRACE_LORAWAN__DEVICES", "COLDTRACE_LORAWAN__TTS"} <= set(written), written
    lw = settings(["run", "--data-dir", str(tmp_path)], monkeypatch,
                  **{k: v.strip("'") for k, v in written.items()}).lorawan
    assert lw.tts is True and lw.temperature_fields == ["TempC_SHT"] and lw.battery_fields == ["BatV:volt"]
    assert lw.devices == {"A84041000181C2D3": "FRIDGE-1"}
    # several fields: comma-separated or a JSON list
    for value in ("TempC_SHT, temp_f:F", '["TempC_SHT", "temp_f:F"]'):
        lw = settings(["run"], monkeypatch, COLDTRACE_LORAWAN__TEMPERATURE_FIELDS=value).lorawan
        assert lw.temperature_fields == ["TempC_SHT", "temp_f:F"]
    with pytest.raises(ConfigError, match="temperature_fields"):
        settings(["run"], monkeypatch, COLDTRACE_LORAWAN__TEMPERATURE_FIELDS="temp:X")


def test_a_list_or_object_variable_that_is_not_json_names_the_variable(monkeypatch):
    with pytest.raises(ConfigError) as err:
        settings(["run"], monkeypatch, COLDTRACE_LORAWAN__TTS="true", COLDTRACE_LORAWAN__DEVICES="A840=FRIDGE-1")
    assert "lorawan: the environment variable COLDTRACE_LORAWAN__DEVICES is not valid JSON" in str(err.value)
    assert "Traceback" not in str(err.value)

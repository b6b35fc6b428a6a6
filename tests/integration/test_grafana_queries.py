"""Every Grafana panel's InfluxQL, with Grafana's macros and variables filled in as Grafana does, runs against
a real influxd seeded through ColdTrace's own InfluxDB store with simulated loggers and a simulated bench,
and returns rows. The provisioning files must agree with the dashboards and docker-compose.yml."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from coldtrace.core.model import HOUR, MINUTE, Reading
from coldtrace.store.influx import InfluxReadingStore
from firmware_sim.thermal import CoolerFailure, ThermalModel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "dashboards" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

T0 = 1_795_478_400_000  # 2026-11-24T00:00:00Z
FLEET_END = T0 + 48 * HOUR
BENCH_START, BENCH_END = FLEET_END, FLEET_END + 18 * HOUR
FLEET = ["LOG-0001", "LOG-0002", "LOG-0003", "LOG-0004"]
DUTS = {"DUT-0001": 0.15, "DUT-0002": -0.08}


def fleet_models() -> dict[str, ThermalModel]:
    return {
        "LOG-0001": ThermalModel(5.0, seed=1, door_openings_per_hour=0.5),
        "LOG-0002": ThermalModel(5.0, seed=2, failures=[CoolerFailure(T0 + 20 * HOUR, 90 * MINUTE)]),
        "LOG-0003": ThermalModel(4.0, seed=3, failures=[CoolerFailure(T0 + 30 * HOUR, 40 * MINUTE, -8.0, 30 * MINUTE)]),
        "LOG-0004": ThermalModel(5.5, seed=4, door_openings_per_hour=1.0),
    }


def bench_temperature(t: int) -> float:
    """The bath of a bench stepping through set points -20, 5, 25 °C (6 h each), first-order approach."""
    k = min(2, (t - BENCH_START) // (6 * HOUR))
    setpoints = (-20.0, 5.0, 25.0)
    prev = 22.0 if k == 0 else setpoints[k - 1]
    dt = t - (BENCH_START + k * 6 * HOUR)
    return setpoints[k] + (prev - setpoints[k]) * 2.718281828 ** (-dt / (20 * MINUTE))


def seed_readings() -> list[Reading]:
    out: list[Reading] = []
    for dev, model in fleet_models().items():
        out += [Reading(dev, t, model.temperature(t), i) for i, t in enumerate(range(T0, FLEET_END, MINUTE))]
    noise = ThermalModel(0.0, noise_c=0.01, seed=9)
    for i, t in enumerate(range(BENCH_START, BENCH_END, MINUTE)):
        out.append(Reading("REF-0001", t, round(bench_temperature(t) + noise.temperature(t), 3), i))
        for j, (dev, offset) in enumerate(DUTS.items()):
            ts = t + 5_000 * (j + 1)  # DUTs sample a few seconds after the reference, as on a real bench
            out.append(Reading(dev, ts, round(bench_temperature(ts) + offset + noise.temperature(ts + j), 2)))
    return out


@pytest.fixture(scope="module")
def seeded(influxd_server):
    name = "grafana_seed"
    store = InfluxReadingStore(influxd_server.url, name)
    readings = seed_readings()
    assert store.write(readings).accepted == len(readings)
    yield influxd_server, name, readings
    store.close()
    influxd_server.query(f'DROP DATABASE "{name}"')


def regex_value(values: list[str]) -> str:
    """Grafana's formatting of a variable inside an InfluxQL regex: escaped, several values as (a|b)."""
    escaped = [re.sub(r"([\\/^$.|?*+()\[\]{}-])", r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(query: str, variables: dict[str, str], start: int, end: int, interval: str) -> str:
    q = query.replace("$timeFilter", f"time >= {start}ms and time <= {end}ms")
    q = q.replace("$__interval_ms", str(_ms(interval))).replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):
        q = q.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    leftover = re.findall(r"\$\{?[A-Za-z_]\w*", q)
    assert not leftover, f"unknown Grafana variable or macro {leftover} in {query}"
    return q


def _ms(interval: str) -> int:
    n, unit = int(interval[:-1]), interval[-1]
    return n * {"s": 1000, "m": MINUTE, "h": HOUR}[unit]


def panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return [p for p in out if p.get("type") != "row"]


def run(server, db: str, q: str) -> list[dict]:
    doc = server.query(q, db=db)
    result = doc["results"][0]
    assert "error" not in result, f"{result['error']} in {q}"
    series = result.get("series", [])
    assert series and any(s["values"] for s in series), f"no rows for {q}"
    return series


def dashboard_context(uid: str) -> tuple[dict[str, list[str]], int, int, str]:
    """Variable values a QA person would pick, the time range and $__interval Grafana would compute."""
    if uid == "coldtrace-calibration":
        return {"reference": ["REF-0001"], "dut": list(DUTS)}, BENCH_START, BENCH_END, "1m"
    return {"device": FLEET, "high_c": ["8"], "low_c": ["2"]}, T0, FLEET_END, "5m"


def test_dashboards_are_valid_and_use_the_provisioned_datasource():
    assert [p.stem for p in DASHBOARDS] == ["calibration", "fleet", "shipment"]
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())["datasources"][0]
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/coldtrace.yaml").read_text())["providers"][0]
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"./dashboards/grafana/dashboards:{provider['options']['path']}" in compose
    uids = set()
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        uids.add(d["uid"])
        for p in panels(d):
            assert p["datasource"]["uid"] == ds["uid"], (path.name, p["title"])
            assert p["targets"], f"{path.name}: panel {p['title']!r} has no query"
            for t in p["targets"]:
                assert t["rawQuery"] and 'FROM "reading"' in t["query"] or "FROM (" in t["query"]
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"]["uid"] == ds["uid"]
    assert len(uids) == len(DASHBOARDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_rows(seeded, path):
    server, db, readings = seeded
    d = json.loads(path.read_text())
    chosen, start, end, interval = dashboard_context(d["uid"])
    for v in d["templating"]["list"]:  # the variable queries themselves (drop-down lists) return the ids
        if v["type"] == "query":
            values = {row[1] for s in run(server, db, v["query"]) for row in s["values"]}
            assert set(chosen[v["name"]]) <= values
    ran = 0
    for p in panels(d):
        repeat = p.get("repeat")
        for value in chosen[repeat] if repeat else [None]:
            variables = {k: (v[0] if k in ("high_c", "low_c") else regex_value(v)) for k, v in chosen.items()}
            if repeat:
                variables[repeat] = regex_value([value])
            for t in p["targets"]:
                series = run(server, db, interpolate(t["query"], variables, start, end, interval))
                ran += 1
                check_meaning(d["uid"], p["title"], series, readings, value)
    assert ran >= 5


def check_meaning(uid: str, title: str, series: list[dict], readings: list[Reading], dut: str | None) -> None:
    """Beyond "returns rows": a few panels are checked against the seeded data itself."""
    if title.startswith("Readings above"):
        got = {s["tags"]["device_id"]: s["values"][0][1] for s in series}
        expect = {d: sum(1 for r in readings if r.device_id == d and r.temp_c > 8) for d in FLEET}
        assert got == {d: n for d, n in expect.items() if n}
        assert got.get("LOG-0002", 0) > 30  # the cooler failure
    elif title.startswith("Readings below"):
        got = {s["tags"]["device_id"]: s["values"][0][1] for s in series}
        assert got.get("LOG-0003", 0) > 10  # the cooler stuck on: freezing
    elif title == "Loggers reporting":
        assert series[0]["values"][0][1] == len(FLEET)
    elif title.startswith("Error of"):
        errors = [row[1] for row in series[0]["values"]]
        # away from the set-point changes the bath is stable and the error is the DUT's offset
        assert sorted(errors)[len(errors) // 2] == pytest.approx(DUTS[dut], abs=0.03)

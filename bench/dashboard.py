"""Dashboard benchmark: a year of one-minute readings of one logger (525,600), ingested through the real
Pipeline into SQLite, then
  1. the API's time to serve a downsampled chart of the whole year (GET /api/v1/devices/{id}/chart, over
     HTTP on loopback, 1,000 points; target < 100 ms), next to the store's raw GROUP BY without the rollup;
  2. the device page's time to first chart in headless Chromium (navigation start -> the first uPlot draw,
     the performance mark "ct:first-chart" set by api/static/js/chart.js), 1-year range.

Run: .venv/bin/python -m bench.dashboard [--days 365] [--runs 20]
Figures are wall-clock on a shared machine: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldtrace.services import auth  # noqa: E402
from coldtrace.store import rollup  # noqa: E402
from tests.e2e.live_app import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    DAY,
    MINUTE,
    QA_PASSWORD,
    QA_USER,
    ingest_series,
    start_app,
)

DEVICE = "LOG-YEAR-0001"


def year_of_readings(now: int, days: int) -> tuple[list[int], list[float]]:
    """2-8 °C with a daily swing, noise-free but irregular, and a 2-hour excursion every 30 days."""
    start = now - days * DAY - now % MINUTE
    n = days * 24 * 60
    ts = [start + i * MINUTE for i in range(n)]
    temps = []
    for i in range(n):
        day_phase = 2 * math.pi * (i % 1440) / 1440
        v = 5.0 + 1.2 * math.sin(day_phase) + 0.3 * math.sin(i / 37.0)
        if i % (30 * 1440) < 120 and i > 1440:
            v += 5.0
        temps.append(round(v, 2))
    return ts, temps


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--points", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ct-bench-dash-") as tmp:
        app = start_app(Path(tmp) / "data")
        try:
            s = app.services
            now = s.clock.now_ms()
            ts, temps = year_of_readings(now, args.days)
            t = time.perf_counter()
            ingest_series(s, DEVICE, ts, temps)
            ingest_s = time.perf_counter() - t
            print(f"ingested {len(ts):,} one-minute readings ({args.days} days) through the Pipeline in"
                  f" {ingest_s:.1f} s ({len(ts) / ingest_s:,.0f} readings/s)")
            frm, to = ts[0], now + MINUTE
            with app.api() as c:
                def chart() -> dict:
                    r = c.get(f"/api/v1/devices/{DEVICE}/chart", params={"from": frm, "to": to, "points": args.points})
                    r.raise_for_status()
                    return r.json()

                body = chart()  # warm-up
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    chart()
                    times.append((time.perf_counter() - t) * 1000)
            n_b = len(body["buckets"])
            assert sum(b["count"] for b in body["buckets"]) == len(ts)
            print(f"API chart of {args.days} days, {args.points} points -> {n_b} buckets of"
                  f" {body['interval_ms'] / 60000:.0f} min: median {statistics.median(times):.1f} ms,"
                  f" p95 {pct(times, 95):.1f} ms, max {max(times):.1f} ms over {args.runs} requests (target < 100 ms)")
            start, interval = rollup.chart_grid(frm, to, args.points)
            raw = []
            for _ in range(3):  # the same buckets by grouping the raw readings (start off the 10-min grid)
                t = time.perf_counter()
                s.readings.downsample(DEVICE, start + 1, to, interval)
                raw.append((time.perf_counter() - t) * 1000)
            fast = []
            for _ in range(3):
                t = time.perf_counter()
                s.readings.downsample(DEVICE, start, to, interval)
                fast.append((time.perf_counter() - t) * 1000)
            print(f"store only: rollup {statistics.median(fast):.1f} ms"
                  f" vs raw GROUP BY {statistics.median(raw):.1f} ms")
            browser_time(app)
        finally:
            app.stop()


def browser_time(app) -> None:
    if not Path(CHROMIUM).exists():
        print(f"time to first chart: skipped ({CHROMIUM} is missing)")
        return
    from playwright.sync_api import sync_playwright

    auth.create_user(app.services.db, QA_USER, "Bench QA", QA_PASSWORD, "qa", actor="bench")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = b.new_context(viewport={"width": 1366, "height": 860})
        page = ctx.new_page()
        page.goto(f"{app.base_url}/ui/login")
        page.fill("#username", QA_USER)
        page.fill("#password", QA_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/fleet")
        results, summary_ms = [], []
        for i in range(6):
            page.goto(f"{app.base_url}/ui/devices/{DEVICE}?range=1y")
            page.wait_for_function("() => performance.getEntriesByName('ct:first-chart').length > 0", timeout=30_000)
            ms = page.evaluate("() => performance.getEntriesByName('ct:first-chart')[0].startTime")
            t = time.perf_counter()
            page.wait_for_selector(".card-sub dl", timeout=60_000)  # the range summary under the chart
            summary_ms.append((time.perf_counter() - t) * 1000 + ms)
            if i:  # the first load fills the browser's cache of the static files
                results.append(ms)
        b.close()
    print(f"device page, 1 year: time to first chart (navigation start -> first draw) median"
          f" {statistics.median(results):.0f} ms, max {max(results):.0f} ms over {len(results)} loads;"
          f" the year's summary (MKT, time in range over every reading) follows at"
          f" ~{statistics.median(summary_ms):.0f} ms")


if __name__ == "__main__":
    main()

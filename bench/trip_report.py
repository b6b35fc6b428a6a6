"""Trip report costs: evaluate a shipment, render its PDF/HTML, export its CSV, verify a long audit trail.

Prints figures (no assertions). Usage: .venv/bin/python bench/trip_report.py [--loggers 4] [--days 14]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from coldtrace.core.model import DAY, MINUTE, Reading
from coldtrace.services import audit, report, shipments
from coldtrace.store.db import Database
from coldtrace.store.sqlite import SqliteReadingStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loggers", type=int, default=4)
    ap.add_argument("--days", type=float, default=14)
    ap.add_argument("--audit-records", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db = Database(Path(d) / "b.db", synchronous="NORMAL")
        store = SqliteReadingStore(db)
        t0 = 1_795_687_200_000
        n = int(args.days * DAY / MINUTE)
        rng = np.random.default_rng(1)
        sh = shipments.create_shipment(db, reference="BENCH", origin="A", destination="B", product="P", lot="L",
                                       profile_id="2-8C", actor="bench", now_ms=t0)
        for i in range(args.loggers):
            dev = f"LOG-{i}"
            temps = 5 + rng.normal(0, 0.3, n) + np.where((np.arange(n) % 2000) < 40, 4.0, 0.0)
            store.write([Reading(dev, t0 + k * MINUTE, float(v)) for k, v in enumerate(temps)])
            shipments.attach_logger(db, sh["id"], dev, actor="bench", now_ms=t0, uncalibrated="warn")
        shipments.transition(db, store, sh["id"], "in_transit", actor="bench", now_ms=t0, at_ts=t0)
        end = t0 + n * MINUTE
        shipments.transition(db, store, sh["id"], "delivered", actor="bench", now_ms=end, at_ts=end)
        total = n * args.loggers
        print(f"shipment: {args.loggers} loggers x {n} readings = {total:,} readings")

        def timed(label, fn):
            t = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t
            print(f"  {label:<28} {dt * 1000:9.1f} ms")
            return out

        ev = timed("evaluate", lambda: shipments.evaluate(db, store, sh["id"]))
        print(f"    excursions found: {sum(len(lg.excursions) for lg in ev.loggers)}")
        data = timed("build report data", lambda: report.build(db, store, sh["id"], end))
        pdf = timed("render PDF", lambda: report.render_pdf(data))
        html = timed("render HTML", lambda: report.render_html(data))
        csv_bytes = timed("CSV export", lambda: sum(len(x) for x in report.csv_rows(db, store, sh["id"])))
        print(f"    PDF {len(pdf) / 1024:.0f} KiB, HTML {len(html) / 1024:.0f} KiB, CSV {csv_bytes / 1e6:.1f} MB")
        with db.write() as c:
            for i in range(args.audit_records):
                audit.record_audit(c, actor="bench", action="bench.write", entity="bench", entity_id=str(i),
                                   new={"i": i}, ts=end)
        res = timed(f"audit verify ({args.audit_records:,})", lambda: audit.verify(db))
        print(f"    ok={res.ok} checked={res.checked}")
        db.close()


if __name__ == "__main__":
    main()

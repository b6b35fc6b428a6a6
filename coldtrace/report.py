"""Trip report of a shipment (HTML and PDF) and the CSV export of its raw readings.

``build`` gathers everything the report shows into one dict; ``render_html`` and ``render_pdf`` only lay it
out, so both formats state the same numbers. Temperatures are printed with two decimals, durations in
minutes with one, times in UTC (RFC 3339), because an inspector compares them with the raw CSV.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from html import escape
from typing import Any

from . import audit, shipments
from .clock import to_iso
from .ports import ReadingStore
from .report_chart import build_chart, to_drawing, to_svg
from .shipment_stats import in_range_bounds
from .signature import verify_decision
from .store import shipments as store
from .store.db import Database

CSV_PAGE = 50_000


def fmt_c(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} °C"


def fmt_min(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 60_000:.1f} min"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} %"


def _acks(db: Database, alert: dict[str, Any]) -> list[str]:
    """Acknowledgements of an alert: the alert's own columns when the lifecycle adds them, and the audit
    trail's records about the alert (who, when, comment)."""
    out = []
    if alert.get("acknowledged_by"):
        out.append(f"acknowledged by {alert['acknowledged_by']} at {to_iso(alert.get('acknowledged_at'))}"
                   + (f": {alert['ack_comment']}" if alert.get("ack_comment") else ""))
    for r in db.query("SELECT ts, actor, action, reason, new_value FROM audit_log WHERE entity = 'alert'"
                      " AND entity_id = ? ORDER BY id", (alert["id"],)):
        comment = r["reason"]
        if not comment and r["new_value"]:
            nv = json.loads(r["new_value"])
            comment = nv.get("comment") if isinstance(nv, dict) else None
        line = f"{r['action'].split('.')[-1]} by {r['actor']} at {to_iso(r['ts'])}" + (f": {comment}" if comment
                                                                                          else "")
        if line not in out:
            out.append(line)
    return out


def build(db: Database, readings: ReadingStore, shipment_id: str, now_ms: int) -> dict[str, Any]:
    ev = shipments.evaluate(db, readings, shipment_id)
    sh = ev.shipment
    limits = [lim.to_dict() for lim in ev.profile.limits]
    band = in_range_bounds(ev.profile)
    loggers = []
    for lg in ev.loggers:
        ts, v = readings.arrays(lg.device_id, lg.start, lg.end) if lg.start is not None else ([], [])
        excs = [e.to_dict() for e in lg.excursions]
        loggers.append({"device_id": lg.device_id, "start": lg.start, "end": lg.end, "stats": lg.stats,
                        "excursions": excs,
                        "calibration": shipments.calibration_status(db, lg.device_id, now_ms),
                        "chart": build_chart(ts, v, lg.start, lg.end, limits, band, excs)})
    windows = [(d, s or 0, e if e is not None else now_ms + 1) for d, s, e in
               shipments.windows(sh, store.loggers(db, shipment_id)) if s is not None]
    alerts = store.shipment_alerts(db, shipment_id, windows)
    for a in alerts:
        a["acks"] = _acks(db, a)
        a["data"] = json.loads(a["data"]) if isinstance(a.get("data"), str) else a.get("data")
    decisions = store.decisions(db, shipment_id)
    for d in decisions:
        d["signature_valid"] = verify_decision(d)
    try:
        budget = shipments.lot_budget(db, readings, sh["product"], sh["lot"])
    except Exception:  # noqa: BLE001 - the report still shows the shipment itself
        budget = []
    return {"shipment": sh, "profile": ev.profile.to_dict(), "in_range": band, "mkt_c": ev.mkt_c,
            "mkt_exceeded": ev.mkt_exceeded, "loggers": loggers, "alerts": alerts, "decisions": decisions,
            "budget": budget, "record_hash": ev.record_hash(), "generated_at": now_ms,
            "audit_head": "{}:{}".format(*audit.head(db))}


# ---------------------------------------------------------------- tables shared by HTML and PDF

def summary_rows(data: dict[str, Any]) -> list[list[str]]:
    sh = data["shipment"]
    return [["Reference", sh["reference"]], ["Product / lot", f"{sh['product']} / {sh['lot']}"],
            ["Route", f"{sh['origin']} -> {sh['destination']}"], ["Profile", data["profile"]["name"]],
            ["Departure", to_iso(sh["start_ts"]) or "-"], ["Delivery", to_iso(sh["end_ts"]) or "-"],
            ["State", sh["state"]],
            ["Shipment MKT", fmt_c(data["mkt_c"]) + (" (exceeds profile MKT limit)" if data["mkt_exceeded"]
                                                     else "")]]


def stats_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Logger", "Readings", "Min", "Max", "Mean", "MKT", "Time in range", "Gaps", "Calibration"]]
    for lg in data["loggers"]:
        s = lg["stats"]
        rows.append([lg["device_id"], str(s["count"]), fmt_c(s["min_c"]), fmt_c(s["max_c"]), fmt_c(s["mean_c"]),
                     fmt_c(s["mkt_c"]), fmt_pct(s["time_in_range_pct"]),
                     f"{len(s['gaps'])} ({fmt_min(s['gap_ms'])})", lg["calibration"]["status"]])
    return rows


def excursion_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Logger", "Limit", "Start", "End", "Duration", "Peak", "Degree-min", "Alarm"]]
    for lg in data["loggers"]:
        for e in lg["excursions"]:
            rows.append([lg["device_id"], f"{e['limit_id']} ({e['direction']} {e['threshold_c']:g} °C)",
                         to_iso(e["start_ts"]) or "", to_iso(e["end_ts"]) or "open", fmt_min(e["duration_ms"]),
                         fmt_c(e["peak_c"]), f"{e['degree_minutes']:.1f}",
                         f"{e['alarm_kind']} at {to_iso(e['alarm_ts'])}" if e["alarm_ts"] else "no"])
    return rows


def alert_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Time", "Type", "Severity", "Logger", "State", "Acknowledgements"]]
    for a in data["alerts"]:
        rows.append([to_iso(a["ts"]) or "", a["type"], a["severity"], a["device_id"] or "-", a["state"],
                     "; ".join(a["acks"]) or "-"])
    return rows


def decision_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Signed at", "Printed name", "Meaning", "Reason", "Supersedes", "Signature"]]
    for d in data["decisions"]:
        rows.append([to_iso(d["signed_at"]) or "", f"{d['printed_name']} ({d['signer_username']})",
                     d["meaning"].upper(), d["reason"],
                     f"{d['supersedes_id']}: {d['supersede_reason']}" if d["supersedes_id"] else "-",
                     ("valid " if d["signature_valid"] else "INVALID ") + d["signature_hash"][:16]])
    return rows


def budget_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Band", "Budget", "Used (lot)", "Remaining", "Status"]]
    for b in data["budget"]:
        rows.append([f"{b['band']} ({b['direction']} {b['threshold_c']:g} °C)", fmt_min(b["budget_ms"]),
                     fmt_min(b["used_ms"]), f"{fmt_min(b['remaining_ms'])} ({b['remaining_pct']:.1f} %)",
                     b["status"]])
    return rows


SECTIONS = (("Statistics per logger", stats_rows), ("Excursions", excursion_rows), ("Alerts", alert_rows),
            ("Lot stability budget", budget_rows), ("Decision and electronic signature", decision_rows))


# ---------------------------------------------------------------- HTML

def _table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body or '<tr><td>none</td></tr>'}</tbody></table>"


def render_html(data: dict[str, Any]) -> str:
    sh = data["shipment"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Trip report {escape(sh['reference'])}"
             "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px;text-align:left}</style></head><body>",
             f"<h1>Trip report {escape(sh['reference'])}</h1>", _table([["Field", "Value"], *summary_rows(data)])]
    for lg in data["loggers"]:
        parts.append(f"<h2>Logger {escape(lg['device_id'])}</h2>{to_svg(lg['chart'])}")
    for title, fn in SECTIONS:
        parts.append(f"<h2>{escape(title)}</h2>{_table(fn(data))}")
    parts.append(f"<p>Evaluation record hash {data['record_hash']}; generated {to_iso(data['generated_at'])}."
                 f" Audit trail head {data['audit_head']} (check with <code>coldtrace audit verify --known-head"
                 f"</code>).</p></body></html>")
    return "".join(parts)


# ---------------------------------------------------------------- PDF

def render_pdf(data: dict[str, Any]) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    cell = styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
    sh = data["shipment"]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm,
                            topMargin=12 * mm, bottomMargin=12 * mm, title=f"Trip report {sh['reference']}",
                            author="ColdTrace")

    def table(rows: list[list[str]]) -> Table:
        t = Table([[Paragraph(escape(c), cell) for c in r] for r in rows], repeatRows=1, hAlign="LEFT")
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return t

    story: list[Any] = [Paragraph(escape(f"Trip report {sh['reference']}"), styles["Title"]),
                        table([["Field", "Value"], *summary_rows(data)])]
    for lg in data["loggers"]:
        story += [Paragraph(escape(f"Logger {lg['device_id']}"), styles["Heading3"]), to_drawing(lg["chart"])]
    for title, fn in SECTIONS:
        story += [Spacer(1, 4 * mm), Paragraph(escape(title), styles["Heading2"]), table(fn(data))]
    story.append(Paragraph(escape(f"Evaluation record hash {data['record_hash']}; generated "
                                  f"{to_iso(data['generated_at'])}. Audit trail head {data['audit_head']}"
                                  " (check with `coldtrace audit verify --known-head`)."), cell))
    doc.build(story)
    return buf.getvalue()


# ---------------------------------------------------------------- CSV

def csv_rows(db: Database, readings: ReadingStore, shipment_id: str) -> Iterator[str]:
    """The raw stored readings of every logger inside its window, paged so memory stays flat."""
    yield "device_id,ts,ts_ms,temp_c,seq\r\n"
    sh = store.get_shipment(db, shipment_id)
    for dev, start, end in shipments.windows(sh, store.loggers(db, shipment_id)):
        if start is None:
            continue
        cursor = start
        while True:
            page = readings.query(dev, cursor, end, limit=CSV_PAGE)
            for r in page:
                yield f"{r.device_id},{to_iso(r.ts)},{r.ts},{r.temp_c!r},{'' if r.seq is None else r.seq}\r\n"
            if len(page) < CSV_PAGE:
                break
            cursor = page[-1].ts + 1

"""Trip report of a shipment (HTML and PDF) and the CSV export of its raw readings.

``build`` gathers everything the report shows into one dict; ``render_html`` and ``render_pdf`` only lay it
out, so both formats state the same numbers. Temperatures are printed with two decimals, durations in
minutes with one, times in UTC (RFC 3339), because an inspector compares them with the raw CSV.

What an inspector looks for, in order: the acceptance criteria the shipment was judged against (the
profile's thresholds, delays, cumulative budgets, hysteresis, MKT limit), the release checklist, the
statistics and excursions per logger, the alarms with who acknowledged them when and why (from the alert
lifecycle's ``alert_events``; the info events of an excursion summarised in one line), each logger's
calibration certificate and due date, the lot's stability budget, the signature manifest (21 CFR 11.50:
printed name, date and time, meaning) and the audit trail head. Every PDF page carries a running header
(shipment, lot, report id, generated at) and "page x of y". The report id is derived from what the report
states and when it was generated, so two downloads of the same state at the same instant have the same id.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from html import escape
from typing import Any

from coldtrace.adapters.pdf_pages import numbered_canvas
from coldtrace.core.clock import to_iso
from coldtrace.core.report_chart import build_chart, to_drawing, to_svg
from coldtrace.core.shipment_stats import in_range_bounds
from coldtrace.ports import ReadingStore
from coldtrace.services import audit, release_checklist, shipments
from coldtrace.services.signature import verify_decision
from coldtrace.store import alerts as alert_store
from coldtrace.store import shipments as store
from coldtrace.store.db import Database

CSV_PAGE = 50_000


def fmt_c(x: float | None) -> str:
    return "no data" if x is None else f"{x:.2f} °C"


def fmt_min(ms: int | None) -> str:
    return "no data" if ms is None else f"{ms / 60_000:.1f} min"


def fmt_pct(x: float | None) -> str:
    return "no data" if x is None else f"{x:.1f} %"


ALARM_SEVERITIES = ("warning", "alarm", "critical")
HANDLING_ACTIONS = ("acknowledged", "commented", "assigned", "shelved", "unshelved", "escalated", "resolved",
                    "returned_to_normal", "auto_resolved")


def handling(db: Database, alert_id: str) -> list[dict[str, Any]]:
    """How people (and escalation) handled an alert, oldest first: alert_events rows (who, when, comment)."""
    return alert_store.events_with_actions(db, alert_id, HANDLING_ACTIONS)


def _handling_event(e: dict[str, Any]) -> str:
    if e["action"] == "returned_to_normal":  # its comment repeats the acknowledgement listed before it
        return f"returned to normal at {to_iso(e['at'])}"
    return (f"{e['action'].replace('_', ' ')} by {e['actor']} at {to_iso(e['at'])}"
            + (f": {e['comment']}" if e["comment"] else ""))


def _handling_text(events: list[dict[str, Any]]) -> str:
    """Who acknowledged the alarm, when and why, then the rest of its handling; an alarm nobody acknowledged
    says so first, whatever else happened to it (escalations, a resolution by a person). A self-clearing
    warning that resolved itself needed no acknowledgement (RULES.md; the release checklist counts it handled),
    and the report says that instead of NOT ACKNOWLEDGED."""
    parts = [_handling_event(e) for e in events]
    if not any(e["action"] == "acknowledged" for e in events):
        if any(e["action"] == "auto_resolved" for e in events):
            parts.insert(0, "resolved itself (self-clearing; no acknowledgement needed)")
        else:
            parts.insert(0, "NOT ACKNOWLEDGED")
    return "; ".join(parts)


def info_lines(alerts: list[dict[str, Any]]) -> list[str]:
    """Info events in one line per excursion (opened / closed / revised), and one per other info event."""
    by_exc: dict[str, list[dict[str, Any]]] = {}
    others = []
    for a in alerts:
        if a["severity"] in ALARM_SEVERITIES:
            continue
        if a.get("excursion_id"):
            by_exc.setdefault(a["excursion_id"], []).append(a)
        else:
            others.append(a)
    out = []
    for evs in by_exc.values():
        d = evs[0]["data"] or {}
        parts = []
        for a in evs:
            verb = a["type"].split(".")[-1]
            parts.append(f"{verb} {to_iso(a['ts'])}")
        closed = next((a["data"] for a in evs if a["type"] == "excursion.closed"), None)
        tail = (f" ({fmt_min(closed.get('duration_ms'))}, peak {fmt_c(closed.get('peak_c'))}"
                f"{', alarmed' if closed.get('alarmed') else ', no alarm'})" if closed else "")
        out.append(f"{evs[0]['device_id'] or 'shipment'} {d.get('limit_id', 'limit')} ({d.get('direction', '')} "
                   f"{d.get('threshold_c', 0):g} °C): " + ", ".join(parts) + tail)
    for a in others:
        d = a["data"] or {}
        what = ", ".join(str(x) for x in (d.get("meaning"), d.get("printed_name") and f"by {d['printed_name']}",
                                          d.get("stage"), d.get("band")) if x)
        out.append(f"{to_iso(a['ts'])} {a['type']}" + (f" {a['device_id']}" if a["device_id"] else "")
                   + (f" ({what})" if what else ""))
    return out


def report_id(data: dict[str, Any]) -> str:
    raw = json.dumps([data["shipment"]["id"], data["record_hash"], [d["signature_hash"] for d in data["decisions"]],
                      data["audit_head"], data["generated_at"]])
    return "TR-" + hashlib.sha256(raw.encode()).hexdigest()[:12].upper()


def build(db: Database, readings: ReadingStore, shipment_id: str, now_ms: int, *,
          uncalibrated_policy: str = "refuse") -> dict[str, Any]:
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
    alerts = alert_store.shipment_alerts(db, shipment_id, windows)
    for a in alerts:
        a["data"] = json.loads(a["data"]) if isinstance(a.get("data"), str) else a.get("data")
        a["handling"] = handling(db, a["id"]) if a["severity"] in ALARM_SEVERITIES else []
    decisions = store.decisions(db, shipment_id)
    for d in decisions:
        d["signature_valid"] = verify_decision(d)
    try:
        budget = shipments.lot_budget(db, readings, sh["product"], sh["lot"])
    except Exception:  # noqa: BLE001 - the report still shows the shipment itself
        budget = []
    checklist = release_checklist.build(db, readings, shipment_id, now_ms, uncalibrated_policy=uncalibrated_policy,
                                        ev=ev)
    data = {"shipment": sh, "profile": ev.profile.to_dict(), "in_range": band, "mkt_c": ev.mkt_c,
            "mkt_exceeded": ev.mkt_exceeded, "loggers": loggers, "alerts": alerts,
            "info_lines": info_lines(alerts), "decisions": decisions, "checklist": checklist,
            "budget": budget, "record_hash": ev.record_hash(), "generated_at": now_ms,
            "audit_head": "{}:{}".format(*audit.head(db))}
    data["report_id"] = report_id(data)
    return data


# ---------------------------------------------------------------- tables shared by HTML and PDF

def summary_rows(data: dict[str, Any]) -> list[list[str]]:
    sh = data["shipment"]
    return [["Reference", sh["reference"]], ["Product / lot", f"{sh['product']} / {sh['lot']}"],
            ["Route", f"{sh['origin']} -> {sh['destination']}"], ["Profile", data["profile"]["name"]],
            ["Departure", to_iso(sh["start_ts"]) or "not departed"],
            ["Delivery", to_iso(sh["end_ts"]) or "not delivered"],
            ["State", sh["state"]],
            ["Shipment MKT", fmt_c(data["mkt_c"]) + (" (exceeds profile MKT limit)" if data["mkt_exceeded"]
                                                     else "")]]


def running_header(data: dict[str, Any]) -> str:
    sh = data["shipment"]
    return (f"Trip report {sh['reference']} | lot {sh['product']} / {sh['lot']} | report {data['report_id']}"
            f" | generated {to_iso(data['generated_at'])}")


def criteria_rows(data: dict[str, Any]) -> list[list[str]]:
    """The acceptance criteria: the profile's limits and its MKT limit, as the evaluation applied them."""
    p = data["profile"]
    rows = [["Criterion", "Direction", "Threshold", "Severity", "Alarm delay", "Cumulative budget",
             "Hysteresis"]]
    for lim in p["limits"]:
        rows.append([lim["id"], lim["direction"], f"{lim['threshold_c']:g} °C", lim["severity"],
                     "none (immediate)" if not lim["delay_ms"] else fmt_min(lim["delay_ms"]),
                     "none" if lim["cumulative_ms"] is None else fmt_min(lim["cumulative_ms"]) + " (lot, all legs)",
                     f"{lim['hysteresis_c']:g} °C"])
    if p["mkt_max_c"] is not None:
        rows.append(["MKT", "above", f"{p['mkt_max_c']:g} °C", "alarm", "judged from 24 h covered, and at delivery",
                     "not applicable", f"none (activation energy {p['activation_energy_kj']:g} kJ/mol)"])
    else:
        rows.append(["MKT", "not judged", "no MKT limit in the profile", "not applicable", "not applicable",
                     "not applicable", f"activation energy {p['activation_energy_kj']:g} kJ/mol"])
    rows.append(["Data gap", "no reading", f"for longer than {fmt_min(p['max_gap_ms'])}",
                 "coverage check of the release checklist", "not applicable", "not applicable", "not applicable"])
    return rows


def checklist_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Check", "Result", "Detail"]]
    for i in data["checklist"]["items"]:
        rows.append([i["title"], i["status"].upper(), i["detail"]])
    rows.append(["Overall:", data["checklist"]["overall"].upper(), _overall_text(data["checklist"])])
    return rows


def _overall_text(checklist: dict[str, Any]) -> str:
    bad = [i["title"] for i in checklist["items"] if i["status"] != "pass"]
    return "every check passes" if not bad else "not passing: " + "; ".join(bad)


def stats_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Logger", "Readings", "Min", "Max", "Mean", "MKT", "Time in range", "Gaps", "Calibration"]]
    limit = data["profile"]["mkt_max_c"]
    for lg in data["loggers"]:
        s = lg["stats"]
        over = limit is not None and s["mkt_c"] is not None and s["mkt_c"] > limit
        rows.append([lg["device_id"], str(s["count"]), fmt_c(s["min_c"]), fmt_c(s["max_c"]), fmt_c(s["mean_c"]),
                     fmt_c(s["mkt_c"]) + (" (over the MKT limit)" if over else ""), fmt_pct(s["time_in_range_pct"]),
                     f"{len(s['gaps'])} ({fmt_min(s['gap_ms'])})", _cal_status(lg["calibration"])])
    return rows


def _cal_status(cal: dict[str, Any]) -> str:
    """A logger's calibration status as printed: 'unknown' means no record (policy "warn" lets it attach)."""
    if cal["status"] == "unknown":
        return "no calibration on record"
    return cal.get("summary") or cal["status"].replace("_", " ")


def calibration_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Logger", "Status", "Certificate", "Issued by", "Last calibrated", "Due", "Checklist"]]
    item = next((i for i in data["checklist"]["items"] if i["id"] == "calibration"), {"rows": []})
    by_dev = {r["device_id"]: r for r in item["rows"]}
    for lg in data["loggers"]:
        cal = lg["calibration"]
        chk = by_dev.get(lg["device_id"], {})
        rows.append([lg["device_id"], _cal_status(cal), cal.get("certificate_ref") or "none on record",
                     cal.get("calibrated_by") or "not stated", to_iso(cal.get("last_calibrated_at")) or "never",
                     to_iso(cal.get("due_at")) or "no due date",
                     f"{chk['result'].upper()}: {chk['reason']}" if chk else "not judged"])
    return rows


def excursion_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Logger", "Limit", "Start", "End", "Duration", "Peak", "Degree-min", "Alarm"]]
    for lg in data["loggers"]:
        for e in lg["excursions"]:
            rows.append([lg["device_id"], f"{e['limit_id']} ({e['direction']} {e['threshold_c']:g} °C)",
                         to_iso(e["start_ts"]) or "", to_iso(e["end_ts"]) or (
                             f"beyond at the window's end {to_iso(lg['end'])}" if lg["end"] is not None
                             else "ongoing"), fmt_min(e["duration_ms"]),
                         fmt_c(e["peak_c"]), f"{e['degree_minutes']:.1f}",
                         f"{e['alarm_kind']} at {to_iso(e['alarm_ts'])}" if e["alarm_ts"] else "no alarm"])
    return rows


def alert_rows(data: dict[str, Any]) -> list[list[str]]:
    """Alarms (warning and above) with their handling: who acknowledged, when, with which comment."""
    rows = [["Time", "Type", "Severity", "Logger", "Limit", "State", "Acknowledgement and handling"]]
    for a in data["alerts"]:
        if a["severity"] not in ALARM_SEVERITIES:
            continue
        d = a["data"] or {}
        if d.get("limit_id"):
            limit = f"{d['limit_id']} ({d.get('direction', '')} {d.get('threshold_c', 0):g} °C)"
        elif d.get("band"):  # a lot's stability budget: the band and what is left of it
            limit = (f"{d['band']} budget ({d.get('direction', '')} {d.get('threshold_c', 0):g} °C): used "
                     f"{fmt_min(d.get('used_ms'))} of {fmt_min(d.get('budget_ms'))}")
        else:
            limit = "not limit-based"
        who = a["device_id"] or (f"lot {d['lot']} (all loggers)" if d.get("lot") else "the shipment")
        rows.append([to_iso(a["ts"]) or "", a["type"], a["severity"], who, limit, a["state"],
                     _handling_text(a["handling"])])
    return rows


def info_rows(data: dict[str, Any]) -> list[list[str]]:
    return [["Information events (one line per excursion)"], *[[line] for line in data["info_lines"]]]


def decision_rows(data: dict[str, Any]) -> list[list[str]]:
    """The signature manifest (21 CFR 11.50): printed name, date and time of signing, meaning; with the
    reason, what it supersedes and whether the signature still verifies against its record."""
    rows = [["Printed name", "Date and time (UTC)", "Meaning", "Reason", "Supersedes", "Signature"]]
    for d in data["decisions"]:
        rows.append([f"{d['printed_name']} ({d['signer_username']})", to_iso(d["signed_at"]) or "",
                     d["meaning"].upper(), d["reason"],
                     f"{d['supersedes_id']}: {d['supersede_reason']}" if d["supersedes_id"] else "none (first)",
                     ("valid " if d["signature_valid"] else "INVALID ") + d["signature_hash"][:16]])
    return rows


def budget_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = [["Band", "Budget", "Used (lot)", "Remaining", "Status"]]
    for b in data["budget"]:
        rows.append([f"{b['band']} ({b['direction']} {b['threshold_c']:g} °C)", fmt_min(b["budget_ms"]),
                     fmt_min(b["used_ms"]), f"{fmt_min(b['remaining_ms'])} ({b['remaining_pct']:.1f} %)",
                     b["status"]])
    return rows


SECTIONS = (("Release checklist", checklist_rows), ("Statistics per logger", stats_rows),
            ("Excursions", excursion_rows), ("Alarms and their acknowledgements", alert_rows),
            ("Information events", info_rows), ("Logger calibration", calibration_rows),
            ("Lot stability budget", budget_rows),
            ("Signature manifest (21 CFR 11.50): decisions and electronic signatures", decision_rows))
# what a section's table says when it has no row (an empty table would leave the reader guessing)
EMPTY = {excursion_rows: "No excursion in the loggers' windows.",
         alert_rows: "No alarm in the loggers' windows.", info_rows: "No information event.",
         stats_rows: "No logger attached.", calibration_rows: "No logger attached.",
         budget_rows: "No cumulative budget in the profile: the lot's stability budget is not tracked.",
         decision_rows: "No decision signed yet."}


# ---------------------------------------------------------------- HTML

def _css_string(text: str) -> str:
    """Text inside a CSS string in a <style> element (no HTML entities there; no way out of the string)."""
    return "".join(f"\\{ord(ch):x} " if ch in "\\'\"<>&" or ord(ch) < 32 else ch for ch in text)


def _table(rows: list[list[str]], empty: str = "none") -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    body = body or f"<tr><td colspan='{len(rows[0])}'>{escape(empty)}</td></tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(data: dict[str, Any]) -> str:
    sh = data["shipment"]
    header = escape(running_header(data))
    # printed from a browser: the running header and "page x of y" in the page margins (CSS paged media)
    page_css = ("@page{size:A4 landscape;margin:16mm 12mm;@top-left{content:'" + _css_string(running_header(data))
                + "';font:9px sans-serif}@bottom-right{content:'Page ' counter(page) ' of ' counter(pages);"
                "font:9px sans-serif}}@media print{.running-header{display:none}}")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Trip report {escape(sh['reference'])}"
             "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px;text-align:left}"
             ".running-header{font-size:12px;color:#555;border-bottom:1px solid #bbb;padding-bottom:4px}"
             + page_css + "</style></head><body>",
             f"<div class='running-header'>{header}</div>",
             f"<h1>Trip report {escape(sh['reference'])}</h1>", _table([["Field", "Value"], *summary_rows(data)]),
             "<h2>Acceptance criteria</h2>", _table(criteria_rows(data))]
    for lg in data["loggers"]:
        parts.append(f"<h2>Logger {escape(lg['device_id'])}</h2>{to_svg(lg['chart'])}")
    for title, fn in SECTIONS:
        parts.append(f"<h2>{escape(title)}</h2>{_table(fn(data), EMPTY.get(fn, 'none'))}")
    parts.append(f"<p>Report {data['report_id']}. Evaluation record hash {data['record_hash']}; generated"
                 f" {to_iso(data['generated_at'])}."
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

    def table(rows: list[list[str]], empty: str = "none") -> Table:
        style = [("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                 ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")), ("VALIGN", (0, 0), (-1, -1), "TOP")]
        if len(rows) == 1:  # no row: say so across the table
            rows = [rows[0], [empty] + [""] * (len(rows[0]) - 1)]
            style.append(("SPAN", (0, 1), (-1, 1)))
        t = Table([[Paragraph(escape(c), cell) for c in r] for r in rows], repeatRows=1, hAlign="LEFT")
        t.setStyle(TableStyle(style))
        return t

    story: list[Any] = [Paragraph(escape(f"Trip report {sh['reference']}"), styles["Title"]),
                        table([["Field", "Value"], *summary_rows(data)]),
                        Paragraph("Acceptance criteria", styles["Heading2"]), table(criteria_rows(data))]
    for lg in data["loggers"]:
        story += [Paragraph(escape(f"Logger {lg['device_id']}"), styles["Heading3"]), to_drawing(lg["chart"])]
    for title, fn in SECTIONS:
        story += [Spacer(1, 4 * mm), Paragraph(escape(title), styles["Heading2"]),
                  table(fn(data), EMPTY.get(fn, "none"))]
    story += [Spacer(1, 4 * mm), Paragraph("Audit trail head", styles["Heading2"]),
              Paragraph(escape(f"Report {data['report_id']}. Evaluation record hash {data['record_hash']}; generated "
                               f"{to_iso(data['generated_at'])}. Audit trail head {data['audit_head']}"
                               " (check with `coldtrace audit verify --known-head`)."), cell)]
    doc.build(story, canvasmaker=numbered_canvas(running_header(data)))
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

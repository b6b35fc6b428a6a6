"""The release checklist of a shipment: what QA must have seen before signing a release (docs/RULES.md).

Each item states pass / fail / warn (or n/a when it does not apply yet), a one-line detail with the numbers,
the rows it is made of, and a link to where they are. The checklist does not block a signature (the person
signing decides, and a release over a failed item needs its reason), but it is shown next to the signature
dialog, in the trip report, and its state at signing time is part of the audit record of the decision.

Items:
- ``alarms``: every alarm raised for the shipment's loggers inside their windows (``excursion.alarm``) and
  the shipment's own alarm-level alerts acknowledged by a person (who, when, comment from alert_events).
- ``mkt``: each logger's MKT and the combined MKT against the profile's ``mkt_max_c``; one logger over
  the limit fails the item even when the combined MKT is under it.
- ``stability_budget``: the lot's stability budget per band, used and remaining across all legs.
- ``calibration``: each logger's calibration status and certificate, and whether it covers the window
  (due date after the window's end). A logger without a calibration record fails under the policy
  ``refuse`` and warns under ``warn`` (setting ``shipments.uncalibrated_loggers``).
- ``coverage``: covered time of each logger's window; any gap (uncovered time) fails.
- ``conflicts``: quarantined conflicting duplicates (another value for a stored (device, ts)) still open
  inside a logger's window fail: the stored series may not be the true one until QA resolves them.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from coldtrace.core.clock import to_iso
from coldtrace.ports import ReadingStore
from coldtrace.services import shipments
from coldtrace.services.calibration_records import device_calibration
from coldtrace.store import alerts as alert_store
from coldtrace.store import calibration as calibration_store
from coldtrace.store import devices as device_store
from coldtrace.store import shipments as store
from coldtrace.store.db import Database

PASS, FAIL, WARN, NA = "pass", "fail", "warn", "n/a"
ALARM_SEVERITIES = ("warning", "alarm", "critical")
# only these can resolve themselves (an alarm nobody needs to act on is a defect: docs/RULES.md)
SELF_CLEARING_SEVERITIES = ("warning",)
SHIPMENT_ALARM_TYPES = ("lot.stability_low", "lot.stability_exhausted")


def _q(x: str) -> str:
    return quote(x, safe="")


def _worst(statuses: list[str]) -> str:
    for s in (FAIL, WARN, PASS):
        if s in statuses:
            return s
    return NA


def _min(ms: int | None) -> str:
    return "no data" if ms is None else f"{ms / 60_000:.1f} min"


def alarm_rows(db: Database, shipment_id: str, windows: list[tuple[str, int | None, int | None]],
               now_ms: int) -> list[dict[str, Any]]:
    """Alarms of the shipment with their acknowledgement: the loggers' ``excursion.alarm`` alerts inside
    their windows and the shipment's own alarm-level alerts."""
    device_windows = [(dev, start, end if end is not None else now_ms + 1) for dev, start, end in windows
                      if start is not None]
    out = []
    for d in alert_store.shipment_alarms(db, shipment_id, SHIPMENT_ALARM_TYPES, device_windows):
        d["data"] = json.loads(d["data"]) if d["data"] else {}
        if d["severity"] not in ALARM_SEVERITIES:
            continue
        if d["acknowledged_at"] is None:  # an older acknowledgement recorded only as an event
            evs = alert_store.events_with_actions(db, d["id"], ("acknowledged",), limit=1)
            if evs:
                ev = evs[0]
                d["acknowledged_at"], d["acknowledged_by"], d["ack_comment"] = ev["at"], ev["actor"], ev["comment"]
        d["auto_resolved_at"] = None
        if d["acknowledged_at"] is None and d["severity"] in SELF_CLEARING_SEVERITIES and d["state"] == "resolved":
            # a warning the profile marks self-clearing, resolved by the clock tick: nobody can acknowledge it
            # any more (409), and it needed no person (docs/RULES.md): handled, not "not acknowledged"
            evs = alert_store.events_with_actions(db, d["id"], ("auto_resolved",), limit=1)
            if evs:
                d["auto_resolved_at"] = evs[0]["at"]
        out.append(d)
    return out


def open_conflicts(db: Database, device_id: str, start: int | None, end: int | None) -> int:
    """Quarantined conflicting duplicates of a device inside [start, end) that nobody has resolved."""
    if start is None:
        return 0
    return device_store.open_conflicts_in(db, device_id, start, end)


def own_certificate_session(db: Database, device_id: str, certificate_ref: str | None) -> str | None:
    """The ColdTrace calibration session whose certificate this is (None: an external certificate)."""
    if not certificate_ref:
        return None
    sid = calibration_store.certificate_session(db, certificate_ref, device_id)
    if sid is None and certificate_ref.startswith("CT-") and certificate_ref.endswith(f"-{device_id}"):
        sid = certificate_ref[3:-len(device_id) - 1]
    return sid if sid and calibration_store.session_exists(db, sid) else None


def certificate_link(db: Database, device_id: str, certificate_ref: str | None) -> str | None:
    """Where a logger's certificate is: our own PDF when the certificate is ColdTrace's, else the
    device's calibration page (an external certificate is recorded there)."""
    sid = own_certificate_session(db, device_id, certificate_ref)
    if sid:
        return f"/api/v1/calibration/sessions/{_q(sid)}/certificates/{_q(device_id)}.pdf"
    return f"/ui/calibration/devices/{_q(device_id)}"


def build(db: Database, readings: ReadingStore, shipment_id: str, now_ms: int, *,
          uncalibrated_policy: str = "refuse", ev: shipments.ShipmentEvaluation | None = None
          ) -> dict[str, Any]:
    """The checklist of one shipment as JSON-able data."""
    ev = ev or shipments.evaluate(db, readings, shipment_id)
    sh, profile = ev.shipment, ev.profile
    page = f"/ui/shipments/{_q(shipment_id)}"
    wins = shipments.windows(sh, store.loggers(db, shipment_id))
    items: list[dict[str, Any]] = []

    # -- alarms and acknowledgements
    alarms = alarm_rows(db, shipment_id, wins, now_ms)
    alarmed_excs = [e for lg in ev.loggers for e in lg.excursions if e.alarm_ts is not None]
    unacked = [a for a in alarms if a["acknowledged_at"] is None and a["auto_resolved_at"] is None]
    self_resolved = sum(1 for a in alarms if a["acknowledged_at"] is None and a["auto_resolved_at"] is not None)
    resolved_note = (f" ({self_resolved} warning{'s' if self_resolved > 1 else ''} resolved"
                     f" {'themselves' if self_resolved > 1 else 'itself'})" if self_resolved else "")
    rows = [{"alert_id": a["id"], "type": a["type"], "severity": a["severity"], "device_id": a["device_id"],
             "ts": a["ts"], "limit_id": a["data"].get("limit_id"), "acknowledged_at": a["acknowledged_at"],
             "acknowledged_by": a["acknowledged_by"], "comment": a["ack_comment"],
             "auto_resolved_at": a["auto_resolved_at"],
             "link": (f"/ui/alerts?state=&type={_q(a['type'])}&device_id={_q(a['device_id'])}" if a["device_id"]
                      else f"/ui/alerts?state=&type={_q(a['type'])}")} for a in alarms]
    if not alarms and not alarmed_excs:
        st, detail = PASS, "no alarm in the loggers' windows"
    elif unacked:
        st, detail = FAIL, f"{len(unacked)} of {len(alarms)} alarms not acknowledged{resolved_note}"
    elif alarmed_excs and not alarms:
        st, detail = WARN, (f"{len(alarmed_excs)} alarmed excursions in the shipment window, but no alarm was"
                            " raised for them (data arrived after the fact?): review them")
    else:
        handled = (f"{len(alarms) - self_resolved} acknowledged{resolved_note.replace(' (', ', ')[:-1]}"
                   if self_resolved else "all acknowledged")
        st, detail = PASS, f"{len(alarms)} alarms, {handled} ({len(alarmed_excs)} alarmed excursions)"
    items.append({"id": "alarms", "title": "Excursions alarmed and acknowledged", "status": st,
                  "detail": detail, "link": f"{page}#loggers", "rows": rows})

    # -- MKT per logger and combined
    limit = profile.mkt_max_c
    mrows = [{"device_id": lg.device_id, "mkt_c": lg.stats["mkt_c"],
              "exceeded": bool(limit is not None and lg.stats["mkt_c"] is not None and lg.stats["mkt_c"] > limit)}
             for lg in ev.loggers]
    if limit is None:
        st, detail = NA, "the profile sets no MKT limit"
    elif ev.mkt_c is None:
        st, detail = NA, "no covered readings yet"
    else:
        over = [r for r in mrows if r["exceeded"]]
        st = FAIL if over or ev.mkt_exceeded else PASS
        over_text = ", ".join("{} {:.2f} °C".format(r["device_id"], r["mkt_c"]) for r in over)
        detail = (f"combined {ev.mkt_c:.2f} °C against limit {limit:g} °C"
                  + (f"; over the limit: {over_text}" if over else "; every logger under the limit"))
    items.append({"id": "mkt", "title": "Mean kinetic temperature (per logger and combined)", "status": st,
                  "detail": detail, "link": f"{page}#mkt", "limit_c": limit, "combined_c": ev.mkt_c,
                  "rows": mrows})

    # -- lot stability budget across legs
    bands = shipments.lot_budget(db, readings, sh["product"], sh["lot"])
    if not bands:
        st, detail = NA, "no limit of the profile has a cumulative budget"
    else:
        st = _worst([FAIL if b["status"] == "exhausted" else WARN if b["status"] == "low" else PASS for b in bands])
        detail = "; ".join(f"{b['band']}: used {_min(b['used_ms'])} of {_min(b['budget_ms'])}, remaining"
                           f" {_min(b['remaining_ms'])} ({b['status']})" for b in bands)
    items.append({"id": "stability_budget", "title": f"Lot {sh['lot']} stability budget (all legs)",
                  "status": st, "detail": detail,
                  "link": f"{page}#lot-budget", "rows": bands})

    # -- calibration of each logger
    crows, sts = [], []
    for dev, _start, end in wins:
        cal = shipments.calibration_status(db, dev, now_ms)
        rec = device_calibration(db, dev) or {}
        due = cal.get("due_at")
        covers = due is None or end is None or due >= end
        status = cal["status"]
        if status == "unknown":
            s = FAIL if uncalibrated_policy == "refuse" else WARN
            why = f"no calibration record (policy: {uncalibrated_policy})"
        elif status in ("expired", "failed"):
            s, why = FAIL, cal.get("reason") or status
        elif not covers:
            s, why = FAIL, f"calibration due {to_iso(due)} before the window's end {to_iso(end)}"
        else:
            s, why = PASS, "valid" if status == "valid" else "valid, due within 30 days"
            own = own_certificate_session(db, dev, cal.get("certificate_ref"))
            if own and not calibration_store.certificate_revisions(db, own, dev):
                # measured by a ColdTrace session, but nobody approved its certificate yet (ISO/IEC 17025 7.8)
                s, why = WARN, f"{why} by session {own}, but its certificate is not issued yet (draft)"
        sts.append(s)
        crows.append({"device_id": dev, "status": status, "result": s, "reason": why,
                      "certificate_ref": cal.get("certificate_ref") or rec.get("certificate_ref"),
                      "last_calibrated_at": cal.get("last_calibrated_at"), "due_at": due,
                      "link": certificate_link(db, dev, cal.get("certificate_ref"))})
    st = _worst(sts) if sts else NA
    detail = "; ".join(f"{r['device_id']}: {r['reason']}" + (f", certificate {r['certificate_ref']}"
                                                              if r["certificate_ref"] else "") for r in crows) \
        or "no logger attached"
    items.append({"id": "calibration", "title": "Logger calibration and certificates", "status": st,
                  "detail": detail, "policy": uncalibrated_policy, "link": "/ui/calibration", "rows": crows})

    # -- data coverage and gaps
    vrows, sts = [], []
    for lg in ev.loggers:
        s_ = lg.stats
        window = s_["window_ms"]
        if lg.start is None:
            vrows.append({"device_id": lg.device_id, "coverage_pct": None, "gaps": [], "gap_ms": None})
            continue
        span = window if window is not None else max(0, now_ms - lg.start)
        pct = None if not span else round(100.0 * min(s_["covered_ms"], span) / span, 2)
        gaps = [list(g) for g in s_["gaps"]]
        sts.append(FAIL if gaps else PASS)
        vrows.append({"device_id": lg.device_id, "coverage_pct": pct, "covered_ms": s_["covered_ms"],
                      "window_ms": window, "gap_ms": s_["gap_ms"], "gaps": gaps})
    st = _worst(sts) if sts else NA
    detail = "; ".join(
        f"{r['device_id']}: " + ("not departed" if r["coverage_pct"] is None else
                                 f"{r['coverage_pct']:.1f} % covered, {len(r['gaps'])} gap(s)"
                                 + (f" ({_min(r['gap_ms'])})" if r.get("gap_ms") else ""))
        for r in vrows) or "no logger attached"
    items.append({"id": "coverage", "title": "Data coverage and gaps", "status": st, "detail": detail,
                  "link": f"{page}#loggers", "rows": vrows})

    # -- conflicting data
    qrows = [{"device_id": dev, "open_conflicts": open_conflicts(db, dev, start, end),
              "link": f"/ui/quarantine?device_id={_q(dev)}"} for dev, start, end in wins]
    n = sum(r["open_conflicts"] for r in qrows)
    st = NA if not qrows else FAIL if n else PASS
    detail = (f"{n} conflicting duplicate reading(s) await QA's decision: "
              + ", ".join(f"{r['device_id']} {r['open_conflicts']}" for r in qrows if r["open_conflicts"])
              if n else "no open conflicting duplicate in the loggers' windows")
    items.append({"id": "conflicts", "title": "Conflicting data", "status": st, "detail": detail,
                  "link": "/ui/quarantine", "rows": qrows})

    statuses = [i["status"] for i in items]
    overall = _worst(statuses)
    return {"shipment_id": shipment_id, "generated_at": now_ms, "overall": overall,
            "ready": overall in (PASS, WARN, NA) and sh["end_ts"] is not None,
            "uncalibrated_policy": uncalibrated_policy, "items": items}


def summary_line(cl: dict[str, Any]) -> str:
    """One line for the audit record of a decision: each item's status."""
    return ", ".join(f"{i['id']}={i['status']}" for i in cl["items"])

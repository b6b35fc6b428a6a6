"""The QA forms in headless Chromium: a shipment created, monitored, reviewed and released, and a calibration
session run, signed and certified, entirely from the QA pages (issue 16). The loggers' readings arrive as
they would from the loggers (through the Pipeline); everything else is done by clicking. The documents that
come out (trip report, certificate) are read back with pdftotext. Each test makes its own data (any one runs
alone with -k); each page's screenshot goes to test-artifacts/."""

from __future__ import annotations

import math
import re
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from coldtrace.core.model import Reading
from coldtrace.services import auth, shipments
from coldtrace.services.calibration_records import upsert_device_calibration
from firmware_sim.bench import BenchLogger, BenchSpec, bench_series
from tests.e2e.conftest import login, login_as
from tests.e2e.live_app import HOUR, LAB_ADDRESS, LAB_NAME, MINUTE, QA_PASSWORD, ingest_series
from tests.support.services import missing_service

pytestmark = pytest.mark.e2e
ZONE = ZoneInfo("Europe/Zurich")  # the browser context's zone (conftest)
BEN = ("qa.ben", "Ben Okafor", "second-signatory-2026")
# what must never stand where a value belongs in a document: a placeholder, a raw epoch-ms time, binary noise
PLACEHOLDER = re.compile(r"(?m)^\s*[-–—]\s*$|\bunknown\b|\bnot recorded\b|\bnot configured\b|\bNone\b")
EPOCH_MS = r"\b1[5-9]\d{11}\b"  # a raw epoch-millisecond time (2017..2033)
LONG_FLOAT = r"\d\.\d{7,}"  # a float printed with its binary noise


def local_input(ms: int) -> str:
    """What a person types into a datetime-local field in the browser's zone."""
    return datetime.fromtimestamp(ms / 1000, ZONE).strftime("%Y-%m-%dT%H:%M")


def pdf_text(content: bytes, tmp_path, name: str = "doc.pdf") -> str:
    """A PDF's text as pdftotext extracts it (an auditor's copy-and-search)."""
    path = tmp_path / name
    path.write_bytes(content)
    try:
        return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True,
                              text=True).stdout
    except FileNotFoundError:
        missing_service("pdftotext (poppler-utils)")
        raise


def assert_no_placeholder(text: str, what: str) -> None:
    for bad in (PLACEHOLDER, re.compile(EPOCH_MS), re.compile(LONG_FLOAT), re.compile(r"\b\d{14,}\b")):
        m = bad.search(text)
        context = "" if m is None else text[max(0, m.start() - 80):m.end() + 40]
        assert m is None, f"{what} prints {m.group(0)!r} where a value belongs: …{context}…"


def mkt_shipment(live_app, reference: str) -> str:
    """Issue 16's case, delivered and under review: one logger's own MKT (9.8 °C) far over the 8 °C limit while
    the combined MKT is under it, and the lot's 240 min budget above 8 °C exhausted (360 min used)."""
    svc = live_app.services
    now = svc.clock.now_ms()
    t0 = now - 8 * HOUR - now % MINUTE
    cool, warm = f"{reference}-COOL", f"{reference}-WARM"
    with svc.db.write() as c:
        for dev in (cool, warm):
            upsert_device_calibration(c, dev, now, last_calibrated_at=now - 30 * 24 * HOUR, interval_days=365,
                                      certificate_ref=f"EXT-{dev}")
    sh = shipments.create_shipment(svc.db, reference=reference, origin="A", destination="B", product="IMP-9",
                                   lot=f"L-{reference}", profile_id="2-8C", actor="e2e", now_ms=now)
    for dev in (cool, warm):
        shipments.attach_logger(svc.db, sh["id"], dev, actor="e2e", now_ms=now)
    shipments.transition(svc.db, svc.readings, sh["id"], "in_transit", actor="e2e", now_ms=now, at_ts=t0)
    ts = [t0 + i * 5 * MINUTE for i in range(73)]
    ingest_series(svc, cool, ts, [3.0] * len(ts))
    ingest_series(svc, warm, ts, [9.8] * len(ts))
    for to, at in (("delivered", t0 + 6 * HOUR), ("under_review", now)):
        shipments.transition(svc.db, svc.readings, sh["id"], to, actor="e2e", now_ms=now, at_ts=at,
                             emit=svc.pipeline.emit)
    return sh["id"]


def completed_session(live_app, prefix: str) -> str:
    """A calibration session of a bench of its own (devices named after ``prefix``), evaluated through the API."""
    svc = live_app.services
    now = svc.clock.now_ms()
    spec = BenchSpec(reference_id=f"{prefix}-REF", loggers=(BenchLogger(f"{prefix}-LOG", offset_c=0.05),))
    start = now - spec.duration_ms - 10 * MINUTE - now % MINUTE
    for dev, (ts, temp) in bench_series(spec, start).items():
        svc.readings.write([Reading(dev, int(t), float(v)) for t, v in zip(ts, temp, strict=True)])
    with live_app.api() as api:
        for dev, fields in spec.registrations(now).items():
            assert api.put(f"/api/v1/calibration/devices/{dev}", json=fields).status_code == 200
        r = api.post("/api/v1/calibration/sessions", json={
            "reference_id": spec.reference_id, "set_points": list(spec.set_points), "mpe_c": 0.5,
            "duts": [{"device_id": lg.device_id} for lg in spec.loggers], "start_ms": start,
            "customer": "Clinical Supply Depot Basel", "ambient_c": 22.0, "ambient_rh_pct": 45})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert api.post(f"/api/v1/calibration/sessions/{sid}/evaluate").json()["state"] == "completed"
    return sid


def test_shipment_created_monitored_reviewed_and_released_from_the_pages(live_app, page, shot, tmp_path):
    base, svc = live_app.base_url, live_app.services
    now = svc.clock.now_ms()
    t0 = now - 7 * HOUR - now % MINUTE
    login(page, base, "/ui/calibration")
    # the logger's calibration certificate, recorded from the calibration page
    page.get_by_text("Record a device's calibration").click()
    form = page.locator("#device-record")
    form.get_by_label("Device").fill("LOG-FORM-1")
    form.get_by_label("Calibrated on").fill(datetime.fromtimestamp((now - 40 * 24 * HOUR) / 1000, ZONE)
                                            .strftime("%Y-%m-%d"))
    form.get_by_label("Certificate number").fill("DAkkS-D-K-1234-2026-07")
    form.get_by_label("Issuing laboratory").fill("Kalibrierlabor Nord")
    form.get_by_role("button", name="Save calibration record").click()
    form.get_by_text("Calibration record of LOG-FORM-1 saved.").wait_for()
    shot(page, "form-calibration-record")

    # a new shipment
    page.goto(f"{base}/ui/shipments")
    page.get_by_text("New shipment").click()
    form = page.locator("#new-shipment")
    form.get_by_role("button", name="Create shipment").click()
    assert "Fill in: reference" in form.get_by_role("alert").inner_text()
    for label, value in (("Reference", "SHP-FORM-001"), ("Origin", "Basel depot"), ("Destination", "Site 7, Leeds"),
                         ("Product", "IMP-4471 vials"), ("Lot", "L2026-200")):
        form.get_by_label(label).fill(value)
    form.get_by_label("Temperature profile").select_option("2-8C")
    shot(page, "form-new-shipment")
    form.get_by_role("button", name="Create shipment").click()
    page.wait_for_url("**/ui/shipments/shp_*")
    sid = page.url.rsplit("/", 1)[1]

    # attaching: a logger without a calibration record is refused (policy "refuse"), the calibrated one attaches
    manage = page.locator("#manage")
    manage.get_by_label("Logger to attach").fill("LOG-NO-CAL")
    manage.get_by_role("button", name="Attach logger").click()
    assert "no calibration record" in manage.get_by_role("alert").inner_text()
    manage.get_by_label("Logger to attach").fill("LOG-FORM-1")
    manage.get_by_role("button", name="Attach logger").click()
    manage.get_by_role("button", name="Detach LOG-FORM-1").wait_for()
    # a correction while planned
    manage.get_by_text("Edit the shipment (while planned)").click()
    manage.locator("#edit-shipment").get_by_label("Destination").fill("Site 7, Leeds (pharmacy)")
    manage.locator("#edit-shipment").get_by_label("Reason for the change").fill("receiving pharmacy named")
    manage.locator("#edit-shipment").get_by_role("button", name="Save changes").click()
    page.get_by_text("Basel depot → Site 7, Leeds (pharmacy)").wait_for()
    # before departure the lot's budget already applies (nothing used) and no value is a bare dash
    expect(page.locator("#release-checklist [data-item=stability_budget]")).to_contain_text(
        "high: used 0.0 min of 240.0 min, remaining 240.0 min (ok)")
    expect(page.locator("#lot-budget")).to_contain_text("high (above 8 °C)")
    assert "—" not in page.locator("main").inner_text()
    shot(page, "form-shipment-planned")
    r = page.request.get(f"{base}/api/v1/shipments/{sid}/report.pdf")  # a trip report before departure, too
    planned = pdf_text(r.body(), tmp_path, "planned.pdf")
    assert "Departure not departed" in " ".join(planned.split())
    assert_no_placeholder(planned, "the trip report of a planned shipment")

    # departure, the logger's readings (steady 4-6 °C, every 5 min), arrival
    manage.get_by_label("Departed at (your time zone)").fill(local_input(t0))
    manage.get_by_role("button", name="Record departure").click()
    page.get_by_role("button", name="Record arrival").wait_for()
    ts = [t0 + i * 5 * MINUTE for i in range(6 * 12 + 1)]
    ingest_series(svc, "LOG-FORM-1", ts, [5.0 + 0.8 * math.sin(i / 7) for i in range(len(ts))])
    manage.get_by_label("Arrived at (your time zone)").fill(local_input(t0 + 6 * HOUR))
    manage.get_by_role("button", name="Record arrival").click()
    page.get_by_role("button", name="Start QA review").click()
    page.get_by_role("button", name="Sign decision…").wait_for()

    # the checklist passes; the release is signed without any override
    checklist = page.locator("#release-checklist")
    checklist.locator("[data-item=calibration]").get_by_role("link", name="DAkkS-D-K-1234-2026-07").wait_for()
    assert "Overall: PASS" in " ".join(checklist.inner_text().split())
    assert checklist.locator(".check-fail").count() == 0
    shot(page, "release-checklist-pass")
    page.get_by_role("button", name="Sign decision…").click()
    dialog = page.get_by_role("dialog")
    assert dialog.locator("input[name=meaning]:checked").count() == 0
    assert dialog.get_by_role("checkbox").count() == 0  # nothing fails: nothing to override
    dialog.get_by_role("radio", name="Release").check()
    dialog.get_by_label("Reason (recorded with the signature)").fill("All release criteria met.")
    dialog.get_by_label("Password of qa.anna (re-enter to sign)").fill(QA_PASSWORD)
    dialog.get_by_role("button", name="Sign").click()
    page.get_by_text("signature verified").wait_for()
    shot(page, "shipment-released-from-forms")
    with live_app.api() as api:
        sh = api.get(f"/api/v1/shipments/{sid}").json()
        trail = api.get("/api/v1/audit", params={"entity_id": sid, "from": t0 - HOUR}).json()["items"]
    assert (sh["state"], sh["destination"], [lg["device_id"] for lg in sh["loggers"]]) == (
        "released", "Site 7, Leeds (pharmacy)", ["LOG-FORM-1"])
    assert (sh["start"], sh["end"]) == (datetime.fromtimestamp(t0 / 1000, ZONE).astimezone(ZoneInfo("UTC"))
                                        .strftime("%Y-%m-%dT%H:%M:00.000Z"),
                                        datetime.fromtimestamp((t0 + 6 * HOUR) / 1000, ZONE)
                                        .astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:00.000Z"))
    actions = [a["action"] for a in trail]
    assert {"shipment.create", "shipment.attach_logger", "shipment.update", "shipment.in_transit",
            "shipment.delivered", "shipment.under_review", "decision.sign"} <= set(actions)

    # the trip report the QA manager downloads from the page (PDF link), as an auditor reads it
    href = page.get_by_role("link", name="PDF", exact=True).get_attribute("href")
    r = page.request.get(f"{base}{href}")  # with the page's session, as the link's click fetches it
    assert r.ok and r.headers["content-type"] == "application/pdf"
    text = pdf_text(r.body(), tmp_path, "trip-report.pdf")
    pages = [p for p in text.split("\f") if p.strip()]
    assert len(pages) >= 2
    for n, p in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in p
        assert re.search(r"Trip report SHP-FORM-001 \| lot IMP-4471 vials / L2026-200 \| report TR-[0-9A-F]{12} \| "
                         r"generated 20\d\d-\d\d-\d\dT", p)
    flat = " ".join(text.split())
    for item in ("Acceptance criteria", "high above 8 °C alarm 30.0 min 240.0 min (lot, all legs) 0.2 °C",
                 "Release checklist", "Overall: PASS", "Logger calibration",
                 "LOG-FORM-1 valid DAkkS-D-K-1234-2026-07", "Kalibrierlabor Nord",
                 "No alarm in the loggers' windows", "Signature manifest (21 CFR 11.50)",
                 "Anna Berg (qa.anna)", "RELEASED All release criteria met.", "Audit trail head"):
        assert item in flat, item
    assert_no_placeholder(text, "the trip report")


def test_calibration_session_run_signed_and_certified_from_the_pages(live_app, page, shot, tmp_path):
    base, svc = live_app.base_url, live_app.services
    now = svc.clock.now_ms()
    auth.create_user(svc.db, BEN[0], BEN[1], BEN[2], "qa", actor="e2e", now_ms=now)
    spec = BenchSpec()
    start = now - spec.duration_ms - 10 * MINUTE - now % MINUTE
    for dev, (ts, temp) in bench_series(spec, start).items():  # the bench's readings, as stored by ingest
        svc.readings.write([Reading(dev, int(t), float(v)) for t, v in zip(ts, temp, strict=True)])
    login(page, base, "/ui/calibration")
    # the reference's certificate and uncertainty
    page.get_by_text("Record a device's calibration").click()
    rec = page.locator("#device-record")
    for label, value in (("Device", spec.reference_id), ("Certificate number", "UKAS 0001/2026/17"),
                         ("Issuing laboratory", "UKAS calibration laboratory 0001"),
                         ("Expanded uncertainty U, k=2 (°C)", "0.03"),
                         ("Traceability", "ITS-90 via NPL (UK), UKAS laboratory 0001"), ("Make", "Fluke"),
                         ("Model", "1524"), ("Serial number", "B79432")):
        rec.get_by_label(label).fill(value)
    rec.get_by_label("Calibrated on").fill(datetime.fromtimestamp((now - 60 * 24 * HOUR) / 1000, ZONE)
                                           .strftime("%Y-%m-%d"))
    rec.get_by_role("button", name="Save calibration record").click()
    rec.get_by_text(f"Calibration record of {spec.reference_id} saved.").wait_for()
    # the identity of one device under test (ISO/IEC 17025 7.8.2.1 e); the other's is left unrecorded
    page.reload()
    page.get_by_text("Record a device's calibration").click()
    rec = page.locator("#device-record")
    for label, value in (("Device", "BENCH-LOG-1"), ("Make", "Coldchain Instruments"), ("Model", "CI-T20"),
                         ("Serial number", "SN-20931")):
        rec.get_by_label(label).fill(value)
    rec.get_by_role("button", name="Save calibration record").click()
    rec.get_by_text("Calibration record of BENCH-LOG-1 saved.").wait_for()
    # the session
    page.get_by_text("Start a calibration session").click()
    form = page.locator("#new-session")
    form.get_by_label("Reference").fill(spec.reference_id)
    form.get_by_label("Devices under test").fill(", ".join(lg.device_id for lg in spec.loggers[:2]))
    form.get_by_label("Follow readings from").fill(local_input(start))
    form.get_by_label("Customer").fill("Clinical Supply Depot Basel")
    form.get_by_label("Ambient temperature (°C)").fill("22.4")
    form.get_by_label("Relative humidity (%)").fill("41")
    shot(page, "form-new-session")
    form.get_by_role("button", name="Start session").click()
    page.wait_for_url("**/ui/calibration/sessions/cal_*")
    session_id = page.url.rsplit("/", 1)[1]
    page.get_by_role("button", name="Evaluate now").click()
    page.locator("h1").get_by_text("completed").wait_for()
    assert "22.4 °C, 41 % RH" in page.locator(".card").first.inner_text()
    # performed by Anna ...
    page.get_by_role("button", name="Sign as performed…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Password of qa.anna (re-enter to sign)").fill(QA_PASSWORD)
    dialog.get_by_role("button", name="Sign").click()
    page.locator("#signatures").get_by_text("Performed by").wait_for()
    # ... who cannot approve her own calibration
    page.locator("[data-issue='BENCH-LOG-1']").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Password of qa.anna (re-enter to sign)").fill(QA_PASSWORD)
    dialog.get_by_role("button", name="Sign and issue").click()
    dialog.get_by_text("approved by another person").wait_for()
    dialog.get_by_role("button", name="Cancel").click()
    shot(page, "calibration-session-signed")
    # approved and issued by Ben
    page.context.clear_cookies()
    login_as(page, base, BEN[0], BEN[2], f"/ui/calibration/sessions/{session_id}")
    # BENCH-LOG-2's make, model and serial number are not on record: the page says so, and its issue is refused
    missing = page.locator("[data-missing='BENCH-LOG-2']")
    expect(missing).to_contain_text("Before issue, record: the make, model, serial number of BENCH-LOG-2")
    assert page.locator("[data-missing='BENCH-LOG-1']").count() == 0
    page.locator("[data-issue='BENCH-LOG-2']").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label(f"Password of {BEN[0]} (re-enter to sign)").fill(BEN[2])
    dialog.get_by_role("button", name="Sign and issue").click()
    dialog.get_by_text("cannot be issued: record the make, model, serial number of BENCH-LOG-2").wait_for()
    dialog.get_by_role("button", name="Cancel").click()
    page.locator("[data-issue='BENCH-LOG-1']").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label(f"Password of {BEN[0]} (re-enter to sign)").fill(BEN[2])
    dialog.get_by_role("button", name="Sign and issue").click()
    page.locator("#certificates").get_by_role("link", name="revision 1").wait_for()
    shot(page, "calibration-certificate-issued")
    with live_app.api() as api:
        revs = api.get(f"/api/v1/calibration/sessions/{session_id}/certificates/BENCH-LOG-1/revisions").json()
        pdf = api.get(f"/api/v1/calibration/sessions/{session_id}/certificates/BENCH-LOG-1.pdf")
    assert [(r["revision"], r["approver_name"]) for r in revs["revisions"]] == [(1, BEN[1])]
    assert revs["performed"]["printed_name"] == "Anna Berg"
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    # the customer's name corrected in the conditions form, then a re-issue that says what changed
    cond = page.locator("#conditions-form")
    cond.get_by_label("Customer").fill("Clinical Supply Depot Basel AG")
    cond.get_by_role("button", name="Save conditions").click()
    cond.get_by_text("An issued certificate changes only by a re-issue").wait_for()
    page.locator("[data-issue='BENCH-LOG-1']").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("What changed and why (stated on the certificate)").fill("customer's legal name corrected")
    dialog.get_by_label(f"Password of {BEN[0]} (re-enter to sign)").fill(BEN[2])
    dialog.get_by_role("button", name="Sign and re-issue").click()
    page.locator("#certificates").get_by_role("link", name="revision 2").wait_for()
    assert "customer's legal name corrected (fields changed: customer)" in page.locator("#certificates").inner_text()
    shot(page, "calibration-certificate-reissued")

    # the certificate as the customer receives it (the page's "revision 2" link), read as an auditor would
    href = page.locator("#certificates").get_by_role("link", name="revision 2").get_attribute("href")
    r = page.request.get(f"{base}{href}")
    assert r.ok and r.headers["content-type"] == "application/pdf"
    text = pdf_text(r.body(), tmp_path, "certificate.pdf")
    pages = [p for p in text.split("\f") if p.strip()]
    number = f"CT-{session_id}-BENCH-LOG-1"
    for n, p in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in p and f"Calibration certificate {number} | revision 2 | {LAB_NAME}" in p
    flat = " ".join(text.split())
    with live_app.api() as api:
        issued = [rv["issued_at"] for rv in api.get(
            f"/api/v1/calibration/sessions/{session_id}/certificates/BENCH-LOG-1/revisions").json()["revisions"]]
    for item in (LAB_NAME, LAB_ADDRESS, f"Certificate number {number} (revision 2)",
                 "Customer Clinical Supply Depot Basel AG",
                 "temperature data logger BENCH-LOG-1; make Coldchain Instruments, model CI-T20, serial number "
                 "SN-20931",
                 f"Date of issue {datetime.fromtimestamp(issued[1] / 1000, ZoneInfo('UTC')).isoformat()[:19]}",
                 "Location of calibration calibration bench", "ambient 22.4 °C, relative humidity 41 %",
                 "Next calibration due", "BENCH-REF-1 (Fluke, 1524, serial B79432)", "UKAS 0001/2026/17",
                 "UKAS calibration laboratory 0001", "ITS-90 via NPL (UK), UKAS laboratory 0001",
                 "coverage factor k = 2", "coverage probability of approximately 95 %",
                 "ILAC-G8:09/2019 guarded acceptance", "Conforms: |e| within the MPE reduced by U",
                 "What changed: customer's legal name corrected (fields changed: customer)",
                 "Performed by Anna Berg (qa.anna)", "Approved by (authorised signatory) Ben Okafor (qa.ben)",
                 "each signer re-entered their password"):
        assert item in flat, item
    assert_no_placeholder(text, "the certificate")


def test_no_page_shows_raw_epoch_milliseconds_or_long_floats(live_app, page, shot):
    sid = mkt_shipment(live_app, "SHP-PAGES-1")
    session = completed_session(live_app, "PAGES")
    with live_app.api() as api:
        sh = api.get("/api/v1/shipments").json()["items"]
        sessions = api.get("/api/v1/calibration/sessions").json()
    assert sid in [s["id"] for s in sh] and session in [s["id"] for s in sessions]
    paths = ["/ui/fleet", "/ui/shipments", "/ui/alerts?state=", "/ui/calibration", "/ui/quarantine", "/ui/profiles",
             "/ui/devices/SHP-PAGES-1-WARM", "/ui/calibration/devices/PAGES-LOG", "/ui/calibration/devices/PAGES-REF"]
    paths += [f"/ui/shipments/{s['id']}" for s in sh] + [f"/ui/calibration/sessions/{s['id']}" for s in sessions]
    login(page, live_app.base_url, "/ui/fleet")
    page.locator(".user").wait_for()  # signed in
    for n, path in enumerate(paths):
        page.goto(f"{live_app.base_url}{path}")
        page.wait_for_load_state("networkidle")
        assert "/ui/login" not in page.url
        expect(page.locator(".state-loading")).to_have_count(0)  # not wait_for_function("<expr>"): CSP bars eval
        # the page's own text; a quarantined message's raw bytes (code.raw) are shown as they arrived
        text = page.evaluate("""() => { const m = document.querySelector('main').cloneNode(true);
          m.querySelectorAll('code.raw').forEach((e) => e.remove()); document.body.append(m);
          const t = m.innerText; m.remove(); return t; }""")
        assert not re.search(EPOCH_MS, text), (path, re.search(EPOCH_MS, text).group(0))
        assert not re.search(LONG_FLOAT, text), (path, re.search(LONG_FLOAT, text).group(0))
        assert not re.search(r"\b\d{14,}\b", text), (path, re.search(r"\b\d{14,}\b", text).group(0))
        # every time on the page is a <time> with its UTC instant on hover
        for t in page.locator("main time").all()[:20]:
            assert t.get_attribute("title").endswith("UTC")
        # named by position and kind (not by random ids), so that a rerun replaces the same files
        name = re.sub(r"(shp|cal)_[0-9a-f]+", r"\1", path.split("?")[0].strip("/"))
        shot(page, f"page-{n:02d}-" + re.sub(r"[^A-Za-z0-9]+", "-", name)[:60])


def test_checklist_and_mkt_card_fail_for_a_logger_over_the_mkt_limit(live_app, page, shot):
    """Issue 16's case: one logger's own MKT far over 8 °C while the combined MKT is under it; the lot's budget
    exhausted. The MKT card names the logger, the checklist fails MKT and budget, the budget table shows it."""
    sid = mkt_shipment(live_app, "SHP-MKT-1")
    login(page, live_app.base_url, f"/ui/shipments/{sid}")
    card = page.locator("#mkt")
    card.get_by_text("SHP-MKT-1-WARM: 9.80 °C over the limit").wait_for()
    assert "bad" in card.get_attribute("class")
    checklist = page.locator("#release-checklist")
    assert "FAIL" in checklist.locator("[data-item=mkt]").inner_text()
    assert "high: used 360.0 min of 240.0 min, remaining 0.0 min (exhausted)" in \
        checklist.locator("[data-item=stability_budget]").inner_text()
    budget_row = page.locator("#lot-budget").get_by_role("row").filter(has_text="high (above 8 °C)")
    expect(budget_row).to_contain_text("exhausted")
    # one unit down the budget's columns: budget, used, this shipment, remaining all in minutes
    cells = budget_row.locator("td").all_inner_texts()
    assert cells[1:5] == ["240.0 min", "360.0 min", "360.0 min", "0.0 min (0.0 %)"], cells
    # the logger's mkt excursion is the window's, closed at arrival (not "ongoing" from arrival)
    warm = page.locator("section", has=page.locator("[data-device='SHP-MKT-1-WARM']"))
    row = warm.get_by_role("row").filter(has_text="(mkt)")
    assert "ongoing" not in row.inner_text() and "6.0 h" in row.inner_text()
    # its high excursion was still going on at arrival: it says so (not "ongoing" on a delivered shipment)
    high = warm.get_by_role("row").filter(has_text="(high)")
    assert "beyond at arrival" in high.inner_text() and "ongoing" not in high.inner_text()
    shot(page, "release-checklist-mkt-fail")


def test_html_trip_report_prints_with_running_header_and_page_numbers(live_app, page, tmp_path):
    """The HTML trip report printed from the browser (Chromium's PDF): the running header and "Page x of y"
    come from the report's print CSS (@page margin boxes)."""
    sid = mkt_shipment(live_app, "SHP-PRINT-1")
    login(page, live_app.base_url, "/ui/shipments")
    page.get_by_role("link", name="SHP-PRINT-1").wait_for()  # signed in (the session cookie is set)
    page.goto(f"{live_app.base_url}/api/v1/shipments/{sid}/report.html")
    page.get_by_role("heading", name="Acceptance criteria").wait_for()
    text = pdf_text(page.pdf(prefer_css_page_size=True), tmp_path, "printed.pdf")
    pages = [p for p in text.split("\f") if p.strip()]
    assert len(pages) >= 2
    for n, p in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in p
        assert "Trip report SHP-PRINT-1 | lot IMP-9 / L-SHP-PRINT-1 | report TR-" in p
    flat = " ".join(text.split())
    # the failing checks, the exhausted lot alarm that nobody acknowledged, the MKT over the limit
    for item in ("Acceptance criteria", "Overall: FAIL", "SHP-PRINT-1-WARM", "(over the MKT limit)",
                 "lot.stability_exhausted critical lot L-SHP-PRINT-1", "NOT ACKNOWLEDGED",
                 "beyond at the window's end"):
        assert item in flat, item
    assert_no_placeholder(text, "the printed HTML trip report")

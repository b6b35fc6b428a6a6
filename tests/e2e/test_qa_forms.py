"""The QA forms in headless Chromium: a shipment created, monitored, reviewed and released, and a calibration
session run, signed and certified, entirely from the QA pages (issue 16). The loggers' readings arrive as
they would from the loggers (through the Pipeline); everything else is done by clicking. Each page's
screenshot goes to test-artifacts/."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from coldtrace.core.model import Reading
from coldtrace.services import auth
from firmware_sim.bench import BenchSpec, bench_series
from tests.e2e.conftest import login
from tests.e2e.live_app import HOUR, MINUTE, QA_PASSWORD, ingest_series

pytestmark = pytest.mark.e2e
ZONE = ZoneInfo("Europe/Zurich")  # the browser context's zone (conftest)
BEN = ("qa.ben", "Ben Okafor", "second-signatory-2026")


def local_input(ms: int) -> str:
    """What a person types into a datetime-local field in the browser's zone."""
    return datetime.fromtimestamp(ms / 1000, ZONE).strftime("%Y-%m-%dT%H:%M")


def login_as(page, base_url: str, user: str, password: str, next_path: str) -> None:
    page.goto(f"{base_url}{next_path}")
    page.wait_for_url("**/ui/login**")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/ui/login" not in url and url.endswith(next_path))


def test_shipment_created_monitored_reviewed_and_released_from_the_pages(live_app, page, shot):
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
    shot(page, "form-shipment-planned")

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


def test_calibration_session_run_signed_and_certified_from_the_pages(live_app, page, shot):
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


EPOCH_MS = r"\b1[5-9]\d{11}\b"  # a raw epoch-millisecond time (2017..2033)
LONG_FLOAT = r"\d\.\d{7,}"  # a float printed with its binary noise


def test_no_page_shows_raw_epoch_milliseconds_or_long_floats(live_app, page, shot):
    import re

    with live_app.api() as api:
        sh = api.get("/api/v1/shipments").json()["items"]
        sessions = api.get("/api/v1/calibration/sessions").json()
    paths = ["/ui/fleet", "/ui/shipments", "/ui/alerts?state=", "/ui/calibration", "/ui/quarantine", "/ui/profiles",
             "/ui/devices/LOG-FORM-1", "/ui/calibration/devices/BENCH-LOG-1"]
    paths += [f"/ui/shipments/{s['id']}" for s in sh] + [f"/ui/calibration/sessions/{s['id']}" for s in sessions]
    login(page, live_app.base_url, "/ui/fleet")
    page.locator(".user").wait_for()  # signed in
    for path in paths:
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
        # every time on the page is a <time> with its UTC instant on hover
        for t in page.locator("main time").all()[:20]:
            assert t.get_attribute("title").endswith("UTC")
        shot(page, "page-" + re.sub(r"[^A-Za-z0-9]+", "-", path.split("?")[0].strip("/"))[:60])


def test_checklist_and_mkt_card_fail_for_a_logger_over_the_mkt_limit(live_app, page, shot):
    """Issue 16's case: one logger's own MKT far over 8 °C while the combined MKT is under it; the lot's budget
    exhausted. The MKT card names the logger, the checklist fails MKT and budget, the budget table shows it."""
    from coldtrace.services import shipments
    from coldtrace.services.calibration_records import upsert_device_calibration

    svc = live_app.services
    now = svc.clock.now_ms()
    t0 = now - 8 * HOUR - now % MINUTE
    with svc.db.write() as c:
        for dev in ("LOG-COOL", "LOG-WARM"):
            upsert_device_calibration(c, dev, now, last_calibrated_at=now - 30 * 24 * HOUR, interval_days=365,
                                      certificate_ref=f"EXT-{dev}")
    sh = shipments.create_shipment(svc.db, reference="SHP-MKT-1", origin="A", destination="B", product="IMP-9",
                                   lot="L-MKT", profile_id="2-8C", actor="e2e", now_ms=now)
    for dev in ("LOG-COOL", "LOG-WARM"):
        shipments.attach_logger(svc.db, sh["id"], dev, actor="e2e", now_ms=now)
    shipments.transition(svc.db, svc.readings, sh["id"], "in_transit", actor="e2e", now_ms=now, at_ts=t0)
    ts = [t0 + i * 5 * MINUTE for i in range(73)]
    ingest_series(svc, "LOG-COOL", ts, [3.0] * len(ts))
    ingest_series(svc, "LOG-WARM", ts, [9.8] * len(ts))
    for to, at in (("delivered", t0 + 6 * HOUR), ("under_review", now)):
        shipments.transition(svc.db, svc.readings, sh["id"], to, actor="e2e", now_ms=now, at_ts=at,
                             emit=svc.pipeline.emit)
    login(page, live_app.base_url, f"/ui/shipments/{sh['id']}")
    card = page.locator("#mkt")
    card.get_by_text("LOG-WARM: 9.80 °C over the limit").wait_for()
    assert "bad" in card.get_attribute("class")
    checklist = page.locator("#release-checklist")
    assert "FAIL" in checklist.locator("[data-item=mkt]").inner_text()
    assert "high: used 360.0 min of 240.0 min, remaining 0.0 min (exhausted)" in \
        checklist.locator("[data-item=stability_budget]").inner_text()
    assert "exhausted" in page.locator("#lot-budget").inner_text()
    # the logger's mkt excursion is the window's, closed at arrival (not "ongoing" from arrival)
    warm = page.locator("section", has=page.locator("[data-device='LOG-WARM']"))
    row = warm.get_by_role("row").filter(has_text="(mkt)")
    assert "ongoing" not in row.inner_text() and "6.0 h" in row.inner_text()
    shot(page, "release-checklist-mkt-fail")


def test_html_trip_report_prints_with_running_header_and_page_numbers(live_app, page, tmp_path):
    """The HTML trip report printed from the browser (Chromium's PDF): the running header and "Page x of y"
    come from the report's print CSS (@page margin boxes)."""
    import subprocess

    from tests.support.services import missing_service

    with live_app.api() as api:
        sid = next(s["id"] for s in api.get("/api/v1/shipments").json()["items"] if s["reference"] == "SHP-MKT-1")
    login(page, live_app.base_url, "/ui/shipments")
    page.get_by_role("link", name="SHP-MKT-1").wait_for()  # signed in (the session cookie is set)
    page.goto(f"{live_app.base_url}/api/v1/shipments/{sid}/report.html")
    page.get_by_role("heading", name="Acceptance criteria").wait_for()
    pdf = tmp_path / "printed.pdf"
    page.pdf(path=str(pdf), prefer_css_page_size=True)
    try:
        text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True, capture_output=True,
                              text=True).stdout
    except FileNotFoundError:
        missing_service("pdftotext (poppler-utils)")
    pages = [p for p in text.split("\f") if p.strip()]
    assert len(pages) >= 2
    for n, p in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in p
        assert "Trip report SHP-MKT-1 | lot IMP-9 / L-MKT | report TR-" in p

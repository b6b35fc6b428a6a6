"""The trip report's PDF, read back with pdftotext (poppler) and compared with a golden file.

The scenario runs on a ManualClock, so every time in the report is fixed; what still varies between runs
(random parts of decision ids, the signature and record hashes, the audit head's hash, the report id derived
from them) is normalised before comparing. A reviewer reads tests/golden/trip_report.txt to see what an
inspector gets; after an intended change of the report, regenerate it with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from coldtrace.core.clock import ManualClock
from coldtrace.core.model import HOUR, MINUTE
from tests.support.services import missing_service
from tests.support.stack import ok_json as _ok
from tests.support.stack import start_stack

pytestmark = pytest.mark.integration
API = "/api/v1"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PASSWORD = "trip-report-golden-2026"


def pdftotext(pdf: bytes, tmp_path: Path) -> str:
    exe = shutil.which("pdftotext")
    if exe is None:
        missing_service("pdftotext (poppler-utils)")
    src = tmp_path / "report.pdf"
    src.write_bytes(pdf)
    return subprocess.run([exe, "-enc", "UTF-8", str(src), "-"], check=True, capture_output=True,
                          text=True).stdout


def normalise(text: str) -> str:
    text = re.sub(r"\bTR-[0-9A-F]{12}\b", "TR-<REPORT-ID>", text)
    text = re.sub(r"\bdec_[0-9a-f]{24}\b", "dec_<ID>", text)
    text = re.sub(r"\b[0-9a-f]{16,64}\b", "<HASH>", text)
    text = re.sub(r"generated \d{4}-\d\d-\d\dT[\d:.]+Z", "generated <TIME>", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"


# a cell that is only a dash, or a word standing in for a value: never in a document an auditor signs off
PLACEHOLDER = re.compile(r"(?m)^\s*[-–—]\s*$|\bunknown\b|\bnot recorded\b|\bnot configured\b|\bNone\b")


def compare_golden(name: str, text: str) -> None:
    found = PLACEHOLDER.search(text)
    assert found is None, f"{name} prints {found.group(0)!r} where a value belongs"
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from the golden file (UPDATE_GOLDEN=1 regenerates it)"


def test_trip_report_pdf_golden(tmp_path):
    stack = start_stack(tmp_path, None, clock=ManualClock(), with_collector=False)
    try:
        c, h, svc = stack.client, stack.headers, stack.services
        clock = svc.clock
        t0 = clock.now_ms()
        _ok(c.post(f"{API}/users", headers=h, json={"username": "asilva", "full_name": "Dr Ana Silva",
                                                     "password": PASSWORD, "role": "qa"}), 201)
        _ok(c.put(f"{API}/calibration/devices/LOG-G1", headers=h, json={
            "last_calibrated_at": t0 - 100 * 24 * HOUR, "interval_days": 365, "certificate_ref": "UKAS-0042-2026",
            "calibrated_by": "UKAS calibration laboratory 0042"}))
        sid = _ok(c.post(f"{API}/shipments", headers=h, json={
            "reference": "SHP-GOLD-1", "origin": "Basel depot", "destination": "Site 104, Lyon",
            "product": "IMP-4471", "lot": "L2026-118", "profile_id": "2-8C"}), 201)["id"]
        _ok(c.post(f"{API}/shipments/{sid}/loggers", headers=h, json={"device_id": "LOG-G1"}), 201)
        _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=h, json={"to": "in_transit", "at": t0}))
        # every 5 min for 6 h; 10 °C from 2 h to 3 h (the "high" alarm at 30 min), else 5 °C
        clock.advance(6 * HOUR + MINUTE)
        body = {"v": 1, "device_id": "LOG-G1", "readings": [
            {"ts": t0 + i * 5 * MINUTE, "temp_c": 10.0 if 24 <= i < 36 else 5.0} for i in range(72)]}
        assert not svc.pipeline.ingest_raw(json.dumps(body).encode(), source="mqtt", topic_device_id="LOG-G1").rejected
        login = _ok(c.post(f"{API}/auth/login", json={"username": "asilva", "password": PASSWORD}))
        qa = {"X-CSRF-Token": login["csrf_token"]}
        for a in stack.get(f"{API}/alerts", device_id="LOG-G1"):
            # acknowledging the alarm also acknowledges its episode's lower stage (docs/RULES.md)
            if a["severity"] != "info" and stack.get(f"{API}/alerts/{a['id']}")["state"] == "open":
                _ok(c.post(f"{API}/alerts/{a['id']}/acknowledge", headers=qa,
                           json={"comment": "door left open at the hub; closed 13:00"}))
        _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=qa, json={"to": "delivered", "at": t0 + 6 * HOUR}))
        _ok(c.post(f"{API}/shipments/{sid}/transitions", headers=qa, json={"to": "under_review"}))
        _ok(c.post(f"{API}/shipments/{sid}/decisions", headers=qa, json={
            "meaning": "released", "reason": "60 min above 8 °C within the 240 min stability budget",
            "password": PASSWORD}), 201)
        clock.advance(MINUTE)
        pdf = c.get(f"{API}/shipments/{sid}/report.pdf", headers=h)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        text = pdftotext(pdf.content, tmp_path)
        # the running header and page numbers are on every page
        pages = text.split("\f")
        pages = [p for p in pages if p.strip()]
        assert len(pages) >= 2
        for n, page in enumerate(pages, 1):
            assert f"Page {n} of {len(pages)}" in page
            assert "Trip report SHP-GOLD-1 | lot IMP-4471 / L2026-118 | report TR-" in page
        compare_golden("trip_report.txt", normalise(text))
        # the HTML report states the same sections
        html = c.get(f"{API}/shipments/{sid}/report.html", headers=h).text
        for needle in ("Acceptance criteria", "Signature manifest", "UKAS-0042-2026", "Dr Ana Silva (asilva)",
                       "door left open at the hub", "counter(pages)", "Audit trail head"):
            assert needle in html, needle
    finally:
        stack.close()

"""What a calibration certificate still lacks before it may be issued (ISO/IEC 17025:2017 7.8.2.1, 7.8.4.1):
``CertificateData.missing`` names each absent element and where to record it; issuing refuses while any is.
The PDF states the decision rule the session applied, and each point's conformity under it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coldtrace.adapters.certificate import CertificateData, render_certificate

COMPLETE = CertificateData(
    "CT-cal_1-LOG-1", "cal_1", "LOG-1", "as_found", "guarded", 0.5, None, 1_764_000_000_000, 1_764_007_200_000,
    "REF-1", 0.03, "UKAS 0001/2026/17", "ITS-90 via NPL", 0.01, 0.0, "pass", (),
    lab_name="Lab", lab_address="Rue du Froid 4, Lausanne", customer="Depot Basel", location="bench 2",
    ambient_c=22.4, ambient_rh_pct=41, dut_make="Coldchain", dut_model="CI-T20", dut_serial="SN-1",
    reference_lab="UKAS lab 0001", reference_due_ms=1_790_000_000_000)


def test_a_complete_certificate_misses_nothing():
    assert COMPLETE.missing() == []


@pytest.mark.parametrize(("field", "said"), [
    ("lab_address", "the laboratory's address (setting lab.address"),
    ("customer", "the customer"),
    ("location", "the location of calibration"),
    ("ambient_c", "the ambient temperature"),
    ("dut_serial", "the serial number of LOG-1 (its calibration record)"),
    ("reference_certificate", "the certificate number of the reference REF-1"),
    ("reference_lab", "the issuing laboratory of the reference REF-1"),
    ("reference_due_ms", "the calibration due date of the reference REF-1"),
    ("reference_traceability", "the traceability of the reference REF-1"),
])
def test_each_missing_element_is_named(field, said):
    (missing,) = replace(COMPLETE, **{field: None}).missing()
    assert missing.startswith(said), missing


def test_the_draft_pdf_lists_what_is_missing():
    text = _text(replace(COMPLETE, dut_make=None, dut_model=None, dut_serial=None))
    assert "To record before it can be issued: the make, model, serial number of LOG-1" in text


def _text(data: CertificateData) -> str:
    import io

    from pypdf import PdfReader

    return " ".join("".join(p.extract_text() for p in PdfReader(io.BytesIO(render_certificate(data))).pages).split())


def test_the_decision_rule_and_each_points_statement_follow_the_sessions_rule():
    from coldtrace.adapters.certificate import CertificatePoint

    pts = (CertificatePoint(5.0, 20, 5.0, 5.3, 0.3, 0.01, 0.25, "pass"),
           CertificatePoint(25.0, 20, 25.0, 25.7, 0.7, 0.01, 0.25, "fail"))
    simple = _text(replace(COMPLETE, rule="simple", points=pts, overall="fail"))
    assert "Simple acceptance (ILAC-G8 w = 0): PASS if |e| <= MPE, otherwise FAIL" in simple
    assert "Conforms: |e| within the MPE" in simple and "Does not conform: |e| beyond the MPE" in simple
    assert "guarded acceptance" not in simple
    guarded = _text(replace(COMPLETE, rule="guarded", points=pts[:1], overall="pass"))
    assert "ILAC-G8:09/2019 guarded acceptance" in guarded
    assert "Conforms: |e| within the MPE reduced by U (guarded acceptance)" in guarded

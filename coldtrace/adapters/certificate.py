"""Calibration certificate: one PDF per session and device under test (reportlab, no matplotlib).

Why a PDF of our own: GDP auditors ask for the certificate of each monitoring device, with the reference's
traceability and the decision rule stated (ILAC-G8: a pass/fail statement must say how uncertainty was
taken into account). The content follows ISO/IEC 17025:2017 7.8.2.1 and 7.8.4: title, the laboratory's
name and address, a unique certificate number with its revision on every page, the customer, the item
(device id, make, model, serial), the dates of calibration and of issue, the place, the method, the
environmental conditions, the results with units, the expanded uncertainty with its coverage factor and
coverage probability, the decision rule and a statement of conformity per point, the traceability of the
reference (its certificate number, issuing laboratory, due date), and who performed and who approved the
calibration (electronic signatures). Rendering is a pure function of a ``CertificateData``; an issued
revision's data is frozen at issue (``coldtrace.services.certificate_issue``), so its PDF never changes.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

from reportlab.graphics.shapes import Circle, Drawing, Line, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from coldtrace.adapters.pdf_pages import numbered_canvas
from coldtrace.core.clock import to_iso

RULE_TEXT = {
    "guarded": ("ILAC-G8:09/2019 guarded acceptance, guard band w = U (k=2): PASS if |e| <= MPE - U, "
                "FAIL if |e| > MPE + U, otherwise INDETERMINATE (not a pass)."),
    "simple": ("Simple acceptance (ILAC-G8 w = 0): PASS if |e| <= MPE, otherwise FAIL. The uncertainty is "
               "reported but not used in the decision."),
}


@dataclass(frozen=True, slots=True)
class CertificatePoint:
    set_point_c: float
    n: int
    ref_mean_c: float | None
    dut_mean_c: float | None
    error_c: float | None
    s_c: float | None
    U_c: float | None
    decision: str


@dataclass(frozen=True, slots=True)
class CertificateData:
    certificate_id: str
    session_id: str
    device_id: str
    kind: str  # as_found | as_left
    rule: str
    mpe_c: float
    issued_at_ms: int
    started_at_ms: int
    completed_at_ms: int | None
    reference_id: str
    reference_U_c: float
    reference_certificate: str | None
    reference_traceability: str | None
    resolution_c: float
    u_medium_c: float
    overall: str
    points: tuple[CertificatePoint, ...] = field(default_factory=tuple)
    issuer: str = "ColdTrace calibration bench"
    lab_name: str | None = None
    lab_address: str | None = None
    customer: str | None = None
    location: str | None = None
    ambient_c: float | None = None
    ambient_rh_pct: float | None = None
    dut_make: str | None = None
    dut_model: str | None = None
    dut_serial: str | None = None
    reference_lab: str | None = None
    reference_due_ms: int | None = None
    reference_make: str | None = None
    reference_model: str | None = None
    reference_serial: str | None = None
    next_due_ms: int | None = None
    interval_days: float | None = None
    performed_by: dict[str, Any] | None = None  # printed_name, username, signed_at, meaning
    approved_by: dict[str, Any] | None = None
    revision: int | None = None  # None: a draft, not issued
    changes: str | None = None  # revision > 1: what changed and why
    previous: tuple[dict[str, Any], ...] = ()  # earlier revisions: revision, issued_at

    @property
    def issued(self) -> bool:
        return self.revision is not None and self.issued_at_ms is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def missing(self) -> list[str]:
        """What ISO/IEC 17025:2017 7.8.2.1/7.8.4.1 asks the certificate to state and the records do not hold yet,
        each with where to record it. An issued certificate has none (``certificate_issue.issue`` refuses)."""
        out = []
        if not self.lab_address:
            out.append("the laboratory's address (setting lab.address, COLDTRACE_LAB__ADDRESS)")
        if not self.customer:
            out.append("the customer (the session's conditions)")
        if not self.location:
            out.append("the location of calibration (the session's conditions, or setting lab.location)")
        if self.ambient_c is None:
            out.append("the ambient temperature (the session's conditions)")
        absent = [n for n, v in (("make", self.dut_make), ("model", self.dut_model),
                                 ("serial number", self.dut_serial)) if not v]
        if absent:
            out.append(f"the {', '.join(absent)} of {self.device_id} (its calibration record)")
        ref = [n for n, v in (("certificate number", self.reference_certificate),
                              ("issuing laboratory", self.reference_lab),
                              ("calibration due date", self.reference_due_ms),
                              ("traceability", self.reference_traceability)) if not v]
        if ref:
            out.append(f"the {', '.join(ref)} of the reference {self.reference_id} (its calibration record)")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CertificateData:
        d = dict(d)
        d["points"] = tuple(CertificatePoint(**p) for p in d.get("points", ()))
        d["previous"] = tuple(d.get("previous", ()))
        return cls(**d)


K = 2.0
COVERAGE = "approximately 95 %"
CONFORMITY = {
    "pass": "Conforms: |e| within the MPE{guard}",
    "fail": "Does not conform: |e| beyond the MPE{guard}",
    "indeterminate": "Conformity not demonstrated: |e| inside the guard band (not a pass)",
    "no_data": "No statement: no paired readings",
    "not_measured": "No statement: set point not measured",
}


def conformity(decision: str, rule: str) -> str:
    guard = " reduced by U (guarded acceptance)" if rule == "guarded" else ""
    if decision == "fail" and rule == "guarded":
        guard = " increased by U (guarded acceptance)"
    return CONFORMITY.get(decision, decision).format(guard=guard)


NOT_RECORDED = "not recorded (required before issue)"


def _signature_text(sig: dict[str, Any] | None) -> list[str]:
    if not sig:
        return ["not signed yet", "not signed yet", "not signed yet"]
    return [f"{sig['printed_name']} ({sig['username']})", to_iso(sig["signed_at"]), sig["meaning"]]


def fmt(v: float | None, digits: int = 3, sign: bool = False) -> str:
    """Numbers as printed on the certificate (tests read them back from the PDF text)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def error_plot(points: tuple[CertificatePoint, ...], mpe_c: float, width: float = 160 * mm,
               height: float = 70 * mm) -> Drawing:
    """Error at each set point with its ±U bar, against the ±MPE band."""
    d = Drawing(width, height)
    left, right, bottom, top = 18 * mm, width - 6 * mm, 12 * mm, height - 6 * mm
    pts = [p for p in points if p.error_c is not None and not math.isnan(p.error_c)]
    extent = max([mpe_c * 1.2] + [abs(p.error_c) + (p.U_c or 0.0) for p in pts])  # type: ignore[operator]
    ymin, ymax = -extent * 1.1, extent * 1.1
    sps = [p.set_point_c for p in points] or [0.0]
    xmin, xmax = min(sps), max(sps)
    if xmax - xmin < 1e-9:
        xmin, xmax = xmin - 1, xmax + 1
    pad = (xmax - xmin) * 0.1
    xmin, xmax = xmin - pad, xmax + pad

    def X(v: float) -> float:  # noqa: N802
        return left + (v - xmin) / (xmax - xmin) * (right - left)

    def Y(v: float) -> float:  # noqa: N802
        return bottom + (v - ymin) / (ymax - ymin) * (top - bottom)

    d.add(Rect(X(xmin), Y(-mpe_c), X(xmax) - X(xmin), Y(mpe_c) - Y(-mpe_c),
               fillColor=colors.Color(0.9, 0.97, 0.9), strokeColor=None))
    d.add(Line(left, bottom, right, bottom, strokeColor=colors.black))
    d.add(Line(left, bottom, left, top, strokeColor=colors.black))
    d.add(Line(left, Y(0), right, Y(0), strokeColor=colors.grey, strokeDashArray=[2, 2]))
    for lim in (-mpe_c, mpe_c):
        d.add(Line(left, Y(lim), right, Y(lim), strokeColor=colors.red, strokeDashArray=[4, 2]))
        d.add(String(right - 2, Y(lim) + 2, f"{'+' if lim > 0 else '-'}MPE", fontSize=7, textAnchor="end",
                     fillColor=colors.red))
    for frac in (-1.0, -0.5, 0.0, 0.5, 1.0):
        v = frac * extent
        d.add(Line(left - 2, Y(v), left, Y(v)))
        d.add(String(left - 3, Y(v) - 2, f"{v:+.2f}", fontSize=6, textAnchor="end"))
    for sp in sps:
        d.add(Line(X(sp), bottom - 2, X(sp), bottom))
        d.add(String(X(sp), bottom - 9, f"{sp:g} °C", fontSize=7, textAnchor="middle"))
    d.add(String(left, top + 1, "error e (°C) with ±U (k=2)", fontSize=7))
    for p in pts:
        x, e, U = X(p.set_point_c), float(p.error_c), float(p.U_c or 0.0)  # type: ignore[arg-type]
        col = {"pass": colors.darkgreen, "fail": colors.red}.get(p.decision, colors.orange)
        d.add(Line(x, Y(e - U), x, Y(e + U), strokeColor=col, strokeWidth=1.2))
        for yy in (e - U, e + U):
            d.add(Line(x - 4, Y(yy), x + 4, Y(yy), strokeColor=col, strokeWidth=1.2))
        d.add(Circle(x, Y(e), 2.5, fillColor=col, strokeColor=col))
    return d


def render_certificate(data: CertificateData) -> bytes:
    """The certificate as PDF bytes."""
    buf = io.BytesIO()
    rev = f"revision {data.revision}" if data.issued else "DRAFT (not issued)"
    lab = data.lab_name or data.issuer
    doc = SimpleDocTemplate(buf, pagesize=A4, title=f"Calibration certificate {data.certificate_id}",
                            author=lab, leftMargin=18 * mm, rightMargin=18 * mm,
                            topMargin=16 * mm, bottomMargin=16 * mm)
    ss = getSampleStyleSheet()
    small = ss["BodyText"].clone("small", fontSize=8, leading=10)
    cell = ss["BodyText"].clone("cert-cell", fontSize=7.5, leading=9)

    def P(text: str, style: Any = cell) -> Paragraph:  # noqa: N802
        return Paragraph(escape(text), style)

    story: list = [
        Paragraph("Calibration certificate", ss["Title"]),
        Paragraph(f"<b>{escape(lab)}</b><br/>{escape(data.lab_address or 'address ' + NOT_RECORDED)}", small),
        Spacer(1, 2 * mm),
        Paragraph(f"Certificate <b>{escape(data.certificate_id)}</b>, {escape(rev)}. Result: "
                  f"<b>{escape(data.overall.upper())}</b>", ss["Heading3"]),
    ]
    if not data.issued:
        story.append(Paragraph("<b>DRAFT: not issued, not valid as a certificate.</b> It is issued when the "
                               "session is signed as performed and an authorised signatory approves it.", small))
        if data.missing():
            story.append(Paragraph(escape("To record before it can be issued: " + "; ".join(data.missing()) + "."),
                                   small))
    dut_id = ", ".join(x for x in (f"make {data.dut_make}" if data.dut_make else "",
                                   f"model {data.dut_model}" if data.dut_model else "",
                                   f"serial number {data.dut_serial}" if data.dut_serial else "") if x)
    env = ", ".join(x for x in (f"ambient {fmt(data.ambient_c, 1)} °C" if data.ambient_c is not None else "",
                                f"relative humidity {fmt(data.ambient_rh_pct, 0)} %"
                                if data.ambient_rh_pct is not None else "") if x) or "not recorded"
    info = [
        ["Certificate number", f"{data.certificate_id} ({rev})"],
        ["Customer", data.customer or NOT_RECORDED],
        ["Item calibrated", f"temperature data logger {data.device_id}; "
                            + (dut_id or f"make, model, serial number {NOT_RECORDED}")],
        ["Date(s) of calibration",
         f"{to_iso(data.started_at_ms)} to {to_iso(data.completed_at_ms) or 'not completed'}"],
        ["Date of issue", to_iso(data.issued_at_ms) if data.issued else "not issued"],
        ["Location of calibration", data.location or NOT_RECORDED],
        ["Environmental conditions", env],
        ["Calibration", f"{data.kind.replace('_', '-')}; session {data.session_id}; MPE ±{fmt(data.mpe_c, 3)} °C;"
                        f" DUT resolution {fmt(data.resolution_c, 3)} °C; u(medium) {fmt(data.u_medium_c, 3)} °C"],
        ["Next calibration due", (f"{to_iso(data.next_due_ms)} (customer's interval of {data.interval_days:g} days)"
                                  if data.next_due_ms and data.interval_days else "as agreed with the customer")],
    ]
    story += [_grid([[P(a), P(b)] for a, b in info], [45 * mm, 129 * mm]), Spacer(1, 3 * mm),
              Paragraph("Reference standard and traceability", ss["Heading4"])]
    ref_id = ", ".join(x for x in (data.reference_make, data.reference_model,
                                   f"serial {data.reference_serial}" if data.reference_serial else None) if x)
    ref = [
        ["Reference", data.reference_id + (f" ({ref_id})" if ref_id else "")],
        ["Its certificate number", data.reference_certificate or NOT_RECORDED],
        ["Issuing laboratory", data.reference_lab or NOT_RECORDED],
        ["Its calibration due", to_iso(data.reference_due_ms) or NOT_RECORDED],
        ["Expanded uncertainty U_ref", f"{fmt(data.reference_U_c, 3)} °C (k = 2)"],
        ["Traceability", data.reference_traceability or NOT_RECORDED],
    ]
    story += [_grid([[P(a), P(b)] for a, b in ref], [45 * mm, 129 * mm]), Spacer(1, 3 * mm),
              Paragraph("Results", ss["Heading4"])]
    rows = [[P(x) for x in ("Set point (°C)", "n", "Reference (°C)", "DUT (°C)", "Error e (°C)", "s (°C)",
                            "U (°C), k = 2", "Decision", "Statement of conformity")]]
    for p in data.points:
        rows.append([P(x) for x in (f"{p.set_point_c:g}", str(p.n), fmt(p.ref_mean_c), fmt(p.dut_mean_c),
                                    fmt(p.error_c, sign=True), fmt(p.s_c), fmt(p.U_c), p.decision.upper(),
                                    conformity(p.decision, data.rule))])
    table = _grid(rows, [16 * mm, 9 * mm, 19 * mm, 17 * mm, 17 * mm, 13 * mm, 16 * mm, 22 * mm, 45 * mm],
                  header=True)
    story += [table, Spacer(1, 2 * mm),
              Paragraph(f"U is the expanded uncertainty of measurement: the standard uncertainty multiplied by the "
                        f"coverage factor k = {K:g}, which for a normal distribution corresponds to a coverage "
                        f"probability of {COVERAGE}. Temperatures in °C (ITS-90).", small),
              Spacer(1, 2 * mm), error_plot(data.points, data.mpe_c), Spacer(1, 2 * mm),
              Paragraph("Method", ss["Heading4"]),
              Paragraph("Comparison with the reference in a temperature-controlled bath at each set point. "
                        "Error e = mean(DUT - reference) over the capture window after the reference was "
                        "stable (10 min: std <= 0.05 °C, slope <= 0.02 °C/min); the reference is "
                        "interpolated linearly at each DUT reading (pairs more than 60 s from any reference "
                        "reading are discarded). u = sqrt((U_ref/2)^2 + s^2/n + resolution^2/12 + "
                        "u_medium^2), U = 2u (k=2, about 95 %).", small),
              Paragraph("Decision rule and statement of conformity", ss["Heading4"]),
              Paragraph("Decision rule: " + RULE_TEXT.get(data.rule, data.rule) + " The statement of conformity "
                        "per set point is in the results table; the overall result is a pass only when every "
                        "set point conforms.", small)]
    if data.issued and data.revision and data.revision > 1:
        prev = "; ".join(f"revision {p['revision']} issued {to_iso(p['issued_at'])}" for p in data.previous)
        story += [Paragraph("Revision", ss["Heading4"]),
                  Paragraph(escape(f"Revision {data.revision} replaces {prev or 'the previous revision'}. "
                                   f"What changed: {data.changes}"), small)]
    sigs = [[P(x) for x in ("Signature", "Printed name", "Date and time (UTC)", "Meaning")],
            [P("Performed by"), *[P(x) for x in _signature_text(data.performed_by)]],
            [P("Approved by (authorised signatory)"), *[P(x) for x in _signature_text(data.approved_by)]]]
    story += [Paragraph("Electronic signatures", ss["Heading4"]),
              _grid(sigs, [42 * mm, 48 * mm, 38 * mm, 46 * mm], header=True), Spacer(1, 2 * mm),
              Paragraph("Signed electronically: each signer re-entered their password; the signatures are "
                        "recorded in ColdTrace's audit trail. The results relate only to the item calibrated. "
                        "This certificate shall not be reproduced except in full without the laboratory's "
                        "written approval.", small)]
    header = f"Calibration certificate {data.certificate_id} | {rev} | {lab}"
    doc.build(story, canvasmaker=numbered_canvas(header, created_ms=data.issued_at_ms if data.issued else None))
    return buf.getvalue()


def _grid(rows: list[list], widths: list[float], header: bool = False) -> Table:
    t = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style = [("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 8),
             ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.88, 0.9, 0.95)),
                  ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    t.setStyle(TableStyle(style))
    return t

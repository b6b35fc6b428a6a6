"""Calibration certificate: one PDF per session and device under test (reportlab, no matplotlib).

Why a PDF of our own: GDP auditors ask for the certificate of each monitoring device, with the reference's
traceability and the decision rule stated (ILAC-G8: a pass/fail statement must say how uncertainty was
taken into account). Rendering is a pure function of a ``CertificateData``: the same session renders the
same numbers, and the PDF is regenerated on demand rather than stored.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from reportlab.graphics.shapes import Circle, Drawing, Line, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from .clock import to_iso

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


def fmt(v: float | None, digits: int = 3, sign: bool = False) -> str:
    """Numbers as printed on the certificate (tests read them back from the PDF text)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
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
    doc = SimpleDocTemplate(buf, pagesize=A4, title=f"Calibration certificate {data.certificate_id}",
                            author=data.issuer, leftMargin=18 * mm, rightMargin=18 * mm,
                            topMargin=16 * mm, bottomMargin=16 * mm)
    ss = getSampleStyleSheet()
    small = ss["BodyText"].clone("small", fontSize=8, leading=10)
    story: list = [
        Paragraph(f"Calibration certificate {data.certificate_id}", ss["Title"]),
        Paragraph(f"Device under test: <b>{data.device_id}</b> &nbsp; Result: <b>{data.overall.upper()}</b>",
                  ss["Heading3"]),
    ]
    info = [
        ["Session", data.session_id, "Type", data.kind.replace("_", "-")],
        ["Started", to_iso(data.started_at_ms) or "-", "Completed", to_iso(data.completed_at_ms) or "-"],
        ["Issued", to_iso(data.issued_at_ms) or "-", "MPE", f"±{fmt(data.mpe_c, 3)} °C"],
        ["DUT resolution", f"{fmt(data.resolution_c, 3)} °C", "u medium", f"{fmt(data.u_medium_c, 3)} °C"],
    ]
    story += [_grid(info, [30 * mm, 55 * mm, 28 * mm, 55 * mm]), Spacer(1, 4 * mm),
              Paragraph("Reference standard and traceability", ss["Heading4"])]
    ref = [
        ["Reference", data.reference_id],
        ["Expanded uncertainty U_ref (k=2)", f"{fmt(data.reference_U_c, 3)} °C"],
        ["Reference certificate", data.reference_certificate or "-"],
        ["Traceability", Paragraph(data.reference_traceability or "-", small)],
    ]
    story += [_grid(ref, [60 * mm, 108 * mm]), Spacer(1, 4 * mm), Paragraph("Results", ss["Heading4"])]
    rows = [["Set point (°C)", "n", "Reference (°C)", "DUT (°C)", "Error e (°C)", "s (°C)", "U (°C)",
             "Decision"]]
    for p in data.points:
        rows.append([f"{p.set_point_c:g}", str(p.n), fmt(p.ref_mean_c), fmt(p.dut_mean_c),
                     fmt(p.error_c, sign=True), fmt(p.s_c), fmt(p.U_c), p.decision.upper()])
    table = _grid(rows, [22 * mm, 10 * mm, 24 * mm, 22 * mm, 22 * mm, 18 * mm, 18 * mm, 30 * mm], header=True)
    story += [table, Spacer(1, 4 * mm), error_plot(data.points, data.mpe_c), Spacer(1, 3 * mm),
              Paragraph("Method", ss["Heading4"]),
              Paragraph("Error e = mean(DUT - reference) over the capture window after the reference was "
                        "stable (10 min: std <= 0.05 °C, slope <= 0.02 °C/min); the reference is "
                        "interpolated linearly at each DUT reading (pairs more than 60 s from any reference "
                        "reading are discarded). u = sqrt((U_ref/2)^2 + s^2/n + resolution^2/12 + "
                        "u_medium^2), U = 2u (k=2, about 95 %).", small),
              Paragraph("Decision rule: " + RULE_TEXT.get(data.rule, data.rule), small)]
    doc.build(story)
    return buf.getvalue()


def _grid(rows: list[list], widths: list[float], header: bool = False) -> Table:
    t = Table(rows, colWidths=widths)
    style = [("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("FONTSIZE", (0, 0), (-1, -1), 8),
             ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.88, 0.9, 0.95)),
                  ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    t.setStyle(TableStyle(style))
    return t

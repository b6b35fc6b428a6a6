"""Geometry of a trip report's temperature chart, drawn as SVG (HTML report) or reportlab shapes (PDF).

One geometry, two renderers, so the HTML and the PDF show the same picture: the in-range band shaded green,
each limit as a dashed line, excursions shaded red over their time span, and the series as a line (a min/max
envelope per pixel column when there are more readings than columns, so no peak is lost to downsampling).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import numpy as np

from coldtrace.core.clock import to_iso

W, H = 720.0, 220.0
PAD_L, PAD_R, PAD_T, PAD_B = 48.0, 10.0, 10.0, 28.0


@dataclass
class Chart:
    width: float
    height: float
    band: tuple[float, float, float, float] | None  # x, y, w, h of the in-range band
    limits: list[tuple[float, str, str]] = field(default_factory=list)  # y, label, colour
    shaded: list[tuple[float, float]] = field(default_factory=list)  # x0, x1 of excursions
    line: list[tuple[float, float]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)


def build_chart(ts: np.ndarray, v: np.ndarray, start: int | None, end: int | None, limits: list[dict],
                in_range: tuple[float, float], excursions: list[dict], width: float = W, height: float = H
                ) -> Chart:
    ts = np.asarray(ts, dtype=np.int64)
    v = np.asarray(v, dtype=np.float64)
    t0 = start if start is not None else (int(ts[0]) if len(ts) else 0)
    t1 = end if end is not None else (int(ts[-1]) if len(ts) else t0 + 1)
    t1 = max(t1, t0 + 1)
    vals = [lim["threshold_c"] for lim in limits if abs(lim["threshold_c"]) < 60 or not len(v)]
    if len(v):
        lo_v, hi_v = float(v.min()), float(v.max())
        near = [x for x in vals if lo_v - 10 <= x <= hi_v + 10]
        lo, hi = min([lo_v, *near]), max([hi_v, *near])
    else:
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 10.0)
    span = max(hi - lo, 1.0)
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    pw, ph = width - PAD_L - PAD_R, height - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + (t - t0) / (t1 - t0) * pw

    def y(c: float) -> float:
        return PAD_T + (hi - c) / (hi - lo) * ph

    ch = Chart(width, height, None)
    blo, bhi = max(in_range[0], lo), min(in_range[1], hi)
    if bhi > blo:
        ch.band = (PAD_L, y(bhi), pw, y(blo) - y(bhi))
    for lim in limits:
        if lo <= lim["threshold_c"] <= hi:
            colour = {"warning": "#d08a00", "alarm": "#c62828", "critical": "#7b1fa2"}.get(lim["severity"], "#555")
            ch.limits.append((y(lim["threshold_c"]), f"{lim['id']} {lim['threshold_c']:g} °C", colour))
    for e in excursions:
        a = max(e["start_ts"], t0)
        b = min(e["end_ts"] if e["end_ts"] is not None else t1, t1)
        if b >= a:
            ch.shaded.append((x(a), max(x(b), x(a) + 1.5)))
    cols = int(pw)
    if len(ts) > 2 * cols:  # min/max envelope per pixel column
        idx = np.minimum(((ts - t0) / (t1 - t0) * cols).astype(np.int64), cols - 1)
        for col in np.unique(idx):
            sel = v[idx == col]
            tx = PAD_L + (col + 0.5) * pw / cols
            ch.line.extend([(tx, y(float(sel.max()))), (tx, y(float(sel.min())))])
    else:
        ch.line = [(x(float(t)), y(float(c))) for t, c in zip(ts, v, strict=True)]
    for i in range(5):
        c = lo + (hi - lo) * i / 4
        ch.y_ticks.append((y(c), f"{c:.1f}"))
    for i in range(4):
        t = t0 + (t1 - t0) * i / 3
        ch.x_ticks.append((x(t), (to_iso(int(t)) or "")[5:16].replace("T", " ")))
    return ch


def to_svg(ch: Chart) -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{ch.width:.0f}" height="{ch.height:.0f}"'
           f' viewBox="0 0 {ch.width:.0f} {ch.height:.0f}" font-family="sans-serif" font-size="10">']
    pb = ch.height - PAD_B
    out.append(f'<rect x="{PAD_L}" y="{PAD_T}" width="{ch.width - PAD_L - PAD_R}" height="{pb - PAD_T}"'
               ' fill="#fff" stroke="#999"/>')
    if ch.band:
        out.append('<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="#c8e6c9"/>'.format(*ch.band))
    for x0, x1 in ch.shaded:
        out.append(f'<rect x="{x0:.1f}" y="{PAD_T}" width="{x1 - x0:.1f}" height="{pb - PAD_T:.1f}"'
                   ' fill="#e57373" fill-opacity="0.35"><title>excursion</title></rect>')
    for yy, label, colour in ch.limits:
        out.append(f'<line x1="{PAD_L}" x2="{ch.width - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{colour}"'
                   f' stroke-dasharray="4 3"/><text x="{ch.width - PAD_R - 2}" y="{yy - 2:.1f}"'
                   f' text-anchor="end" fill="{colour}">{escape(label)}</text>')
    if ch.line:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in ch.line)
        out.append(f'<polyline points="{pts}" fill="none" stroke="#1565c0" stroke-width="1.2"/>')
    for yy, label in ch.y_ticks:
        out.append(f'<text x="{PAD_L - 4}" y="{yy + 3:.1f}" text-anchor="end">{escape(label)}</text>')
    for xx, label in ch.x_ticks:
        out.append(f'<text x="{xx:.1f}" y="{pb + 14:.1f}" text-anchor="middle">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def to_drawing(ch: Chart, scale: float = 0.7):
    """A reportlab Drawing (PDF coordinates grow upwards, so y is flipped)."""
    from reportlab.graphics.shapes import Drawing, Line, PolyLine, Rect, String
    from reportlab.lib import colors

    d = Drawing(ch.width * scale, ch.height * scale)

    def fy(yy: float) -> float:
        return (ch.height - yy) * scale

    pb = ch.height - PAD_B
    d.add(Rect(PAD_L * scale, fy(pb), (ch.width - PAD_L - PAD_R) * scale, (pb - PAD_T) * scale,
               fillColor=colors.white, strokeColor=colors.grey))
    if ch.band:
        bx, by, bw, bh = ch.band
        d.add(Rect(bx * scale, fy(by + bh), bw * scale, bh * scale, fillColor=colors.HexColor("#c8e6c9"),
                   strokeColor=None))
    for x0, x1 in ch.shaded:
        d.add(Rect(x0 * scale, fy(pb), (x1 - x0) * scale, (pb - PAD_T) * scale,
                   fillColor=colors.Color(0.9, 0.45, 0.45, alpha=0.35), strokeColor=None))
    for yy, _label, colour in ch.limits:
        d.add(Line(PAD_L * scale, fy(yy), (ch.width - PAD_R) * scale, fy(yy), strokeColor=colors.HexColor(colour),
                   strokeDashArray=[3, 2]))
    if len(ch.line) > 1:
        pts = [c for a, b in ch.line for c in (a * scale, fy(b))]
        d.add(PolyLine(pts, strokeColor=colors.HexColor("#1565c0"), strokeWidth=0.8))
    for yy, label in ch.y_ticks:
        d.add(String((PAD_L - 4) * scale, fy(yy + 3), label, fontSize=6, textAnchor="end"))
    for xx, label in ch.x_ticks:
        d.add(String(xx * scale, fy(pb + 14), label, fontSize=6, textAnchor="middle"))
    return d

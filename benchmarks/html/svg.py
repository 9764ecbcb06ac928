"""Inline SVG drawn here, not by a plotting library: the page stays one file that opens
offline (no plotly offline; matplotlib writes its text as paths a browser cannot
measure or a reader select), every label is a <text> element whose box the page's
test can read, and every point carries a <title> that shows on hover.

Axes choose their scale from the data: logarithmic when it spans more than a decade
(a board a hundred times slower than this machine), else linear with a padding that
never lets identical values fill the plot with empty precision."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

# Colour-blind-safe (Okabe-Ito, then Tol's bright) and assigned in the report's order.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#7a5195", "#999933",
           "#882255", "#44aa99")
MARKERS = ("circle", "square", "triangle", "diamond", "down", "cross", "star")
FONT_PX = 11
CHAR_EM = 0.62  # generous average glyph width of system-ui: a placed label never overlaps when drawn


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def text_width(text: str, size: float = FONT_PX) -> float:
    return len(text) * size * CHAR_EM


@dataclass(frozen=True)
class Scale:
    lo: float
    hi: float
    px0: float
    px1: float
    log: bool = False

    def __call__(self, v: float) -> float:
        if self.log:
            a, b, v = math.log10(self.lo), math.log10(self.hi), math.log10(max(v, self.lo))
        else:
            a, b = self.lo, self.hi
        return self.px0 + (v - a) / (b - a) * (self.px1 - self.px0)

    def ticks(self) -> list[float]:
        if self.log:
            out = []
            for k in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1):
                out += [m * 10 ** k for m in (1, 2, 5) if self.lo <= m * 10 ** k <= self.hi]
            return out
        step = nice_step((self.hi - self.lo) / 5)
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step + 1e-9) + 1)]


def nice_step(raw: float) -> float:
    k = 10 ** math.floor(math.log10(raw))
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= raw)


def choose_scale(values: list[float], px0: float, px1: float, min_span: float, positive: bool = True) -> Scale:
    """Log when the positive data spans more than a decade; linear otherwise, padded by
    8% of the span and widened to at least `min_span` around the data's middle."""
    lo, hi = min(values), max(values)
    if positive and lo > 0 and hi / lo > 10:
        return Scale(lo / 1.25, hi * 1.25, px0, px1, log=True)
    span = max(hi - lo, min_span)
    mid = (lo + hi) / 2
    lo2, hi2 = mid - span / 2 * 1.16, mid + span / 2 * 1.16
    if positive and lo >= 0 and lo2 < 0:
        lo2, hi2 = 0.0, hi2 - lo2
    return Scale(lo2, hi2, px0, px1)


def fmt_tick(v: float, scale: Scale) -> str:
    if scale.log:
        return f"{v:g}"
    step = nice_step((scale.hi - scale.lo) / 5)
    digits = max(0, -math.floor(math.log10(step)) + (1 if step / 10 ** math.floor(math.log10(step)) == 2.5 else 0))
    return f"{v:.{digits}f}"


def marker(shape: str, x: float, y: float, colour: str, r: float = 5.0, extra: str = "") -> str:
    """One point's symbol; `extra` holds attributes (class, data-*)."""
    fill = f'fill="{colour}" stroke="#ffffff" stroke-width="1"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {fill} {extra}/>'
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {fill} {extra}/>'
    pts = {
        "triangle": [(0, -1.2), (1.1, 0.8), (-1.1, 0.8)],
        "down": [(0, 1.2), (1.1, -0.8), (-1.1, -0.8)],
        "diamond": [(0, -1.3), (1.1, 0), (0, 1.3), (-1.1, 0)],
        "cross": [(-0.4, -1.1), (0.4, -1.1), (0.4, -0.4), (1.1, -0.4), (1.1, 0.4), (0.4, 0.4), (0.4, 1.1),
                  (-0.4, 1.1), (-0.4, 0.4), (-1.1, 0.4), (-1.1, -0.4), (-0.4, -0.4)],
        "star": [(math.cos(a) * (1.3 if i % 2 == 0 else 0.55), math.sin(a) * (1.3 if i % 2 == 0 else 0.55))
                 for i, a in enumerate(-math.pi / 2 + k * math.pi / 5 for k in range(10))],
    }[shape]
    path = " ".join(f"{x + dx * r:.1f},{y + dy * r:.1f}" for dx, dy in pts)
    return f'<polygon points="{path}" {fill} {extra}/>'


def legend_marker(shape: str, colour: str) -> str:
    return f'<svg class="key" width="14" height="14" viewBox="0 0 14 14" aria-hidden="true">{marker(shape, 7, 7, colour)}</svg>'


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(points: list[tuple[float, float, str]], area: Box, obstacles: list[Box] | None = None,
                 size: float = FONT_PX) -> list[tuple[float, float, str] | None]:
    """Greedy placement: each label tries eight positions around its point, near then
    far, and takes the first whose box stays inside `area` and clear of every point and
    every label placed before; None when none is clear (the point keeps its hover title).
    Labels are served in the given order: callers put the important ones (the front) first."""
    placed: list[Box] = []
    marks = [(x - 6, y - 6, x + 6, y + 6) for x, y, _ in points] + list(obstacles or [])
    out: list[tuple[float, float, str] | None] = []
    h = size * 1.25
    for x, y, text in points:
        w = text_width(text, size)
        chosen = None
        for d in (8, 16, 28):
            for dx, dy in ((d, -d / 2), (d, d / 2 + h / 2), (-d - w, -d / 2), (-d - w, d / 2 + h / 2),
                           (-w / 2, -d), (-w / 2, d + h), (d, h / 3), (-d - w, h / 3)):
                box = (x + dx - 2, y + dy - h + 2, x + dx + w + 2, y + dy + 4)
                if box[0] < area[0] or box[2] > area[2] or box[1] < area[1] or box[3] > area[3]:
                    continue
                if any(_overlaps(box, b) for b in placed) or any(_overlaps(box, m) for m in marks):
                    continue
                chosen = (x + dx, y + dy, text)
                placed.append(box)
                break
            if chosen:
                break
        out.append(chosen)
    return out


def axes(sx: Scale, sy: Scale, xlabel: str, ylabel: str, width: float, height: float) -> str:
    """Grid, ticks and axis titles."""
    parts = []
    for t in sx.ticks():
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" y1="{sy.px1:.1f}" x2="{x:.1f}" y2="{sy.px0:.1f}" class="grid"/>'
                     f'<text x="{x:.1f}" y="{sy.px0 + 15:.1f}" text-anchor="middle" class="tick">{fmt_tick(t, sx)}</text>')
    for t in sy.ticks():
        y = sy(t)
        parts.append(f'<line x1="{sx.px0:.1f}" y1="{y:.1f}" x2="{sx.px1:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{sx.px0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt_tick(t, sy)}</text>')
    parts.append(f'<rect x="{sx.px0:.1f}" y="{sy.px1:.1f}" width="{sx.px1 - sx.px0:.1f}" '
                 f'height="{sy.px0 - sy.px1:.1f}" class="frame"/>')
    log = " (log scale)" if sx.log else ""
    parts.append(f'<text x="{(sx.px0 + sx.px1) / 2:.1f}" y="{height - 6:.1f}" text-anchor="middle" '
                 f'class="axis-title">{esc(xlabel + log)}</text>')
    ylog = " (log scale)" if sy.log else ""
    parts.append(f'<text transform="translate(14 {(sy.px0 + sy.px1) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'class="axis-title">{esc(ylabel + ylog)}</text>')
    return "".join(parts)


def svg(width: float, height: float, body: str, title: str, cls: str = "chart") -> str:
    return (f'<svg class="{cls}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{esc(title)}</title>{body}</svg>')

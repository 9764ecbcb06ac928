"""The charts of the reports, as inline SVG: a scatter with p50-p90 bars, the noise-aware
Pareto front and collision-free labels; horizontal bars (with a p50-p90 whisker where
there is one); a history line. Each returns (svg, caption) or the svg alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.html.pareto import Point, noise_front
from benchmarks.html.svg import (FONT_PX, MARKERS, PALETTE, Scale, axes, choose_scale, esc, legend_marker, marker,
                                 place_labels, svg, text_width)

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 46
NAME_CHARS = 36  # a bar's name beyond this loses its middle


@dataclass
class Styles:
    """Colour per target; marker per target, or per device when the run measured several."""
    targets: list[str]
    devices: list[str]
    fixed: dict[str, str] | None = None   # colours chosen by the caller (tune.html's trial kinds)

    def colour(self, target: str) -> str:
        if self.fixed and target in self.fixed:
            return self.fixed[target]
        return PALETTE[self.targets.index(target) % len(PALETTE)] if target in self.targets else "#666666"

    def shape(self, target: str, device: str) -> str:
        if len(self.devices) > 1:
            return MARKERS[self.devices.index(device) % len(MARKERS)] if device in self.devices else "circle"
        return MARKERS[self.targets.index(target) % len(MARKERS)] if target in self.targets else "circle"

    def legend(self, extra: str = "") -> str:
        items = []
        for t in self.targets:
            shape = "circle" if len(self.devices) > 1 else self.shape(t, "")
            items.append(f'<span class="item">{legend_marker(shape, self.colour(t))}{esc(t)}</span>')
        if len(self.devices) > 1:
            items += [f'<span class="item">{legend_marker(self.shape("", d), "#555555")}{esc(d)}</span>'
                      for d in self.devices]
        return f'<div class="legend">{"".join(items)}{extra}</div>'


@dataclass
class Dot:
    name: str          # the full row name (hover)
    label: str         # what is printed beside it
    target: str
    device: str
    x: float
    y: float
    x_lo: float | None = None   # p50-p90 bar (latency plots)
    x_hi: float | None = None
    samples: list[float] | None = field(default=None, repr=False)
    hover: str = ""


def scatter(dots: list[Dot], styles: Styles, xlabel: str, ylabel: str, title: str, x_min_span: float,
            y_min_span: float, fronts_by: str = "device", lower_y_better: bool = False) -> tuple[str, str]:
    """The plot and its caption (what the front means here, which labels hover only)."""
    xs = [d.x for d in dots] + [d.x_hi for d in dots if d.x_hi] + [d.x_lo for d in dots if d.x_lo]
    sx = choose_scale(xs, LEFT, W - RIGHT, x_min_span)
    sy = choose_scale([d.y for d in dots], H - BOTTOM, TOP, y_min_span)
    body = [axes(sx, sy, xlabel, ylabel, W, H)]
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(dots):
        groups.setdefault(d.device if fronts_by == "device" else "", []).append(i)
    on_front: set[int] = set()
    notes = []
    for gname, idx in groups.items():
        sign = -1.0 if lower_y_better else 1.0
        front = noise_front([Point(dots[i].x, sign * dots[i].y, dots[i].samples) for i in idx])
        steps = [idx[s] for s in front.steps]
        tied = {idx[a]: idx[b] for a, b in front.tied.items()}
        where = f" on {gname}" if len(groups) > 1 else ""
        if not front.any_difference:
            notes.append(f"no Pareto front{where}: no artifact beats another beyond the timing noise")
            continue
        on_front.update(steps, tied)
        if len(steps) > 1:
            pts = " ".join(f"{sx(dots[i].x):.1f},{sy(dots[i].y):.1f}" for i in steps)
            body.append(f'<polyline points="{pts}" class="front"/>')
        if tied:
            notes.append(f"{len(tied)} artifact{'s' if len(tied) > 1 else ''}{where} on the front within the noise "
                         f"of a step (ringed, not joined)")
    for i, d in enumerate(dots):
        if d.x_lo is not None and d.x_hi is not None:
            y = sy(d.y)
            a, b = sx(d.x_lo), sx(d.x_hi)
            body.append(f'<path d="M{a:.1f} {y:.1f}H{b:.1f}M{b:.1f} {y - 3:.1f}V{y + 3:.1f}" class="range" '
                        f'stroke="{styles.colour(d.target)}"/>')
    for i, d in enumerate(dots):
        x, y = sx(d.x), sy(d.y)
        if i in on_front:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" class="ring"/>')
        hover = esc(d.hover or d.name)
        body.append(f'<g class="point" data-name="{esc(d.name)}"><title>{hover}</title>'
                    f'{marker(styles.shape(d.target, d.device), x, y, styles.colour(d.target))}</g>')
    order = sorted(range(len(dots)), key=lambda i: (i not in on_front, dots[i].x))
    placed = place_labels([(sx(dots[i].x), sy(dots[i].y), dots[i].label) for i in order],
                          (LEFT + 2, TOP + 2, W - RIGHT - 2, H - BOTTOM - 2))
    hidden = 0
    for i, p in zip(order, placed):
        if p is None:
            hidden += 1
            continue
        body.append(f'<text x="{p[0]:.1f}" y="{p[1]:.1f}" class="point-label" '
                    f'data-for="{esc(dots[i].name)}">{esc(p[2])}</text>')
    if hidden:
        notes.append(f"{hidden} label{'s' if hidden > 1 else ''} left off where {'they' if hidden > 1 else 'it'} "
                     "would overlap: hover a point for its name")
    caption = "; ".join(notes)
    return svg(W, H, "".join(body), title), caption


def hbars(items: list[tuple[str, float]], xlabel: str, title: str, colours: list[str] | None = None,
          whiskers: list[tuple[float, float] | None] | None = None, hovers: list[str] | None = None,
          value_fmt: str = "{:.3g}", width: float = W) -> str:
    """One bar per item, top to bottom in the given order; names on the left (never cut:
    the left margin fits the longest), the value at the bar's end. A whisker spans p50-p90."""
    if not items:
        return ""
    row = 20
    hovers = hovers or [f"{k}: {value_fmt.format(v)}" for k, v in items]  # the full name, before shortening
    items = [(_short(k), v) for k, v in items]
    left = 12 + max(text_width(k) for k, _ in items)
    top, bottom = 8, 40
    height = top + bottom + row * len(items)
    values = [v for _, v in items] + [w[1] for w in (whiskers or []) if w]
    hi = max(values) if values else 1.0
    lo_pos = min((v for v in values if v > 0), default=1.0)
    log = hi / lo_pos > 200  # bars on a log axis only when the small ones would vanish
    sx = Scale(lo_pos / 2 if log else 0.0, hi * 1.18 if hi > 0 else 1.0, left, width - 16, log=log)
    parts = []
    for t in sx.ticks():
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" class="grid"/>'
                     f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle" class="tick">{t:g}</text>')
    for i, (name, v) in enumerate(items):
        y = top + i * row
        colour = (colours or [])[i] if colours and i < len(colours) else PALETTE[0]
        x0, x1 = sx(sx.lo), sx(max(v, sx.lo))
        hover = esc(hovers[i] if i < len(hovers) else f"{name}: {value_fmt.format(v)}")
        parts.append(f'<g class="bar"><title>{hover}</title><rect x="{x0:.1f}" y="{y + 3}" width="{max(0.5, x1 - x0):.1f}" '
                     f'height="{row - 6}" fill="{colour}"/></g>')
        parts.append(f'<text x="{left - 6:.1f}" y="{y + row / 2 + 4:.1f}" text-anchor="end" '
                     f'class="bar-label">{esc(name)}</text>')
        end = x1
        w = (whiskers or [None] * len(items))[i] if whiskers else None
        if w:
            a, b = sx(max(w[0], sx.lo)), sx(w[1])
            yy = y + row / 2
            parts.append(f'<path d="M{a:.1f} {yy:.1f}H{b:.1f}M{b:.1f} {yy - 4:.1f}V{yy + 4:.1f}" class="whisker"/>')
            end = max(end, b)
        parts.append(f'<text x="{end + 4:.1f}" y="{y + row / 2 + 4:.1f}" class="value">{value_fmt.format(v)}</text>')
    parts.append(f'<text x="{(left + width) / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                 f'class="axis-title">{esc(xlabel + (" (log scale)" if log else ""))}</text>')
    return svg(width, height, "".join(parts), title)


def _short(name: str, most: int = NAME_CHARS) -> str:
    """A bar's name fits the left margin: long ones lose their middle (the hover has it whole)."""
    return name if len(name) <= most else name[: most // 2 - 1] + "…" + name[-(most - most // 2):]


def history(points: list[tuple[float, float, str, str]], best_line: list[tuple[float, float]], xlabel: str,
            ylabel: str, title: str, y_min_span: float, colours: dict[str, str]) -> str:
    """Trials as dots (x, y, kind, hover), coloured by kind, and the best-so-far as a step line."""
    if not points:
        return ""
    sx = choose_scale([p[0] for p in points], LEFT, W - RIGHT, 2.0, positive=False)
    sy = choose_scale([p[1] for p in points], H - BOTTOM, TOP, y_min_span)
    body = [axes(sx, sy, xlabel, ylabel, W, H)]
    if len(best_line) > 1:
        d = f"M{sx(best_line[0][0]):.1f} {sy(best_line[0][1]):.1f}"
        for (x, y) in best_line[1:]:
            d += f"H{sx(x):.1f}V{sy(y):.1f}"
        d += f"H{sx(max(p[0] for p in points)):.1f}"
        body.append(f'<path d="{d}" class="best-line"/>')
    shapes = {"over budget": "cross", "failed": "cross"}
    for x, y, kind, hover in points:
        body.append(f'<g class="point"><title>{esc(hover)}</title>'
                    f'{marker(shapes.get(kind, "circle"), sx(x), sy(y), colours.get(kind, "#666666"), r=4.5)}</g>')
    return svg(W, H, "".join(body), title)


__all__ = ["Styles", "Dot", "scatter", "hbars", "history", "FONT_PX"]

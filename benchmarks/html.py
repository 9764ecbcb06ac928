"""One self-contained HTML file per run: the table and the plots people would rather
look at than read. Plots are inline SVG drawn by matplotlib (no scripts, no network)."""

from __future__ import annotations

import html
import io
from pathlib import Path

from benchmarks.report import rows as table_rows
from compressor.fsutil import write_text


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (cost) and higher y (accuracy)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def svg_of(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    pyplot().close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog: the SVG sits inside HTML


def scatter_figure(names: list[str], xs: list[float], ys: list[float], xlabel: str, title: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    front = pareto_front(list(zip(xs, ys)))
    others = [i for i in range(len(xs)) if i not in front]
    ax.scatter([xs[i] for i in others], [ys[i] for i in others], color="#9aa5b1", label="dominated", zorder=2)
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="#d9480f", label="Pareto front", zorder=3)
    for i, name in enumerate(names):
        ax.annotate(name, (xs[i], ys[i]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.2, y=0.15)  # room for the labels
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def bars_figure(title: str, values: dict[str, float], xlabel: str):
    plt = pyplot()
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:40]
    fig, ax = plt.subplots(figsize=(6.4, 0.25 * len(items) + 1.2), dpi=100)
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#1c7ed6")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def render(report: dict) -> str:
    header, cells = table_rows(report)
    batch = report["benchmark"]["batch_sizes"][0]
    ok = [r for r in report["artifacts"] if r.get("metrics") and r["metrics"].get("accuracy") is not None]
    plots = []
    if len(ok) >= 2:
        names = [r["name"] for r in ok]
        acc = [100 * r["metrics"]["accuracy"] for r in ok]
        p50 = [next(l["p50_ms"] for l in r["metrics"]["latency"] if l["batch"] == batch) for r in ok]
        size = [r["metrics"]["size_bytes"] / 1e6 for r in ok]
        plots.append(svg_of(scatter_figure(names, p50, acc, f"p50 latency (ms, batch {batch})",
                                         "Latency against accuracy")))
        plots.append(svg_of(scatter_figure(names, size, acc, "size on disk (MB)", "Size against accuracy")))
    # Per-layer views from steps that produce them (sensitivity, sparsity): {title: {layer: value}}.
    for title, values in (report.get("per_layer") or {}).items():
        if values:
            plots.append(svg_of(bars_figure(title, values, title)))
    table = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    cpu = report["machine"]["cpu"]
    notes = "".join(f"<li><b>{html.escape(r['name'])}</b>: {html.escape(n)}</li>"
                    for r in report["artifacts"] for n in r.get("notes", []))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>compressor: {html.escape(report['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #212529; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ padding: 0.3rem 0.6rem; border-bottom: 1px solid #dee2e6; text-align: right; }}
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1rem; margin-top: 1.5rem; }}
.meta {{ color: #495057; font-size: 0.85rem; }}
</style></head><body>
<h1>compressor: {html.escape(report['name'])}</h1>
<p class="meta">{html.escape(report.get('created', ''))} · {html.escape(cpu['model'])} ·
device {html.escape(report['benchmark']['device'])} · {report['benchmark']['threads']} threads · batch {batch}</p>
<table><thead><tr>{table}</tr></thead><tbody>{body}</tbody></table>
{f'<ul>{notes}</ul>' if notes else ''}
<div class="plots">{''.join(plots)}</div>
</body></html>
"""


def write_html(path: Path, report: dict) -> None:
    write_text(path, render(report))

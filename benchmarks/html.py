"""One self-contained HTML file per run: the table and the plots people would rather
look at than read. Plots are inline SVG drawn by matplotlib (no scripts, no network)."""

from __future__ import annotations

import html
import io
from pathlib import Path

from benchmarks.device_report import (artifact_key, describe, device_emulated, device_names, device_notes, device_of,
                                      has_devices, p50_at, reference_device, side_by_side, side_by_side_caption)
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


def device_bars_figure(report: dict, batch: int):
    """p50 latency of each artifact on each device, grouped by artifact; emulated
    devices hatched and named so in the legend (their clock is qemu's)."""
    plt = pyplot()
    devices = device_names(report)
    keys = list(dict.fromkeys(artifact_key(r) for r in report["artifacts"]))[:40]
    by = {(device_of(r), artifact_key(r)): r for r in report["artifacts"]}
    height = 0.8 / len(devices)
    fig, ax = plt.subplots(figsize=(6.4, 0.3 * len(keys) * len(devices) + 1.4), dpi=100)
    values, failed = [], []
    for j, d in enumerate(devices):
        ys = [i + (j - (len(devices) - 1) / 2) * height for i in range(len(keys))]
        xs = [p50_at(by.get((d, k)), batch) or 0.0 for k in keys]  # a failed or missing row: no bar
        values += [x for x in xs if x > 0]
        failed += [(y, f"{d}: {by[(d, k)].get('status')}") for y, k in zip(ys, keys)
                   if (d, k) in by and by[(d, k)].get("status") != "ok"]
        emulated = device_emulated(report, d)
        ax.barh(ys, xs, height=height * 0.95, label=f"{d} (emulated)" if emulated else d,
                hatch="//" if emulated else None, edgecolor="#343a40" if emulated else None,
                alpha=0.55 if emulated else 1.0)
    log = bool(values) and max(values) / min(values) > 30  # a board can be a hundred times slower than this machine
    if log:
        ax.set_xscale("log")
    for y, text in failed:  # where its bar would start
        ax.text(min(values) if log else 0.0, y, f" {text}", va="center", fontsize=7, color="#c92a2a")
    ax.set_yticks(range(len(keys)), keys, fontsize=7)
    ax.invert_yaxis()  # the run's first artifact on top
    ax.set_xlabel(f"p50 latency (ms, batch {batch})")
    ax.set_title("Latency on each device", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _scatter_rows(report: dict) -> list[dict]:
    """The rows of the accuracy plots: one device's, since a front across devices mixes
    machines (the reference device, this machine when it measured)."""
    ref = reference_device(report) if has_devices(report) else None
    return [r for r in report["artifacts"] if r.get("metrics") and r["metrics"].get("accuracy") is not None
            and (ref is None or device_of(r) == ref)]


def render(report: dict) -> str:
    header, cells = table_rows(report)
    batch = report["benchmark"]["batch_sizes"][0]
    ok = [r for r in _scatter_rows(report) if any(l["batch"] == batch for l in r["metrics"]["latency"])]
    on = f" on {device_of(ok[0])}" if ok and has_devices(report) else ""
    plots = []
    if len(ok) >= 2:
        names = [r["name"] for r in ok]
        acc = [100 * r["metrics"]["accuracy"] for r in ok]
        p50 = [next(l["p50_ms"] for l in r["metrics"]["latency"] if l["batch"] == batch) for r in ok]
        size = [r["metrics"]["size_bytes"] / 1e6 for r in ok]
        plots.append(svg_of(scatter_figure(names, p50, acc, f"p50 latency (ms, batch {batch})",
                                         f"Latency against accuracy{on}")))
        plots.append(svg_of(scatter_figure(names, size, acc, "size on disk (MB)", "Size against accuracy")))
    if len(device_names(report)) > 1:
        plots.insert(0, svg_of(device_bars_figure(report, batch)))
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
{f'<ul>{notes}</ul>' if notes else ''}{devices_html(report)}
<div class="plots">{''.join(plots)}</div>
</body></html>
"""


def devices_html(report: dict) -> str:
    """The side-by-side table (several devices) and what each device is; empty for a
    report of this machine alone."""
    if not has_devices(report):
        return ""
    out = []
    if len(device_names(report)) > 1:
        header, cells = side_by_side(report)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
        out.append(f'<h2>Latency on each device</h2>\n<p class="meta">{html.escape(side_by_side_caption(report))}</p>'
                   f"\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    items = []
    for d in device_names(report):
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in device_notes(report, d))
        items.append(f"<li><b>{html.escape(d)}</b>: {html.escape(describe(report, d))}"
                     + (f"<ul>{notes}</ul>" if notes else "") + "</li>")
    out.append(f"<h2>Devices</h2>\n<ul>{''.join(items)}</ul>")
    return "".join("\n" + part for part in out)


def write_html(path: Path, report: dict) -> None:
    write_text(path, render(report))

"""One self-contained HTML file per run (report.html) and per study (tune.html): the
plots people would rather look at than read, as inline SVG drawn here (no scripts, no
network), then every section of the Markdown report."""

from __future__ import annotations

from pathlib import Path

from benchmarks.html.pareto import pareto_front
from benchmarks.html.run_report import render
from compressor.fsutil import write_text


def write_html(path: Path, report: dict) -> None:
    write_text(path, render(report))


__all__ = ["pareto_front", "render", "write_html"]

"""The self-contained HTML report."""

import re

from benchmarks.html import pareto_front, render
from gate_reports import report


def test_pareto_front_keeps_only_undominated_points():
    # (latency, accuracy): the slow-and-worse point is dominated by the first.
    points = [(1.0, 99.0), (2.0, 98.0), (0.5, 97.0), (3.0, 99.5)]
    assert pareto_front(points) == [2, 0, 3]


def test_html_is_self_contained_with_table_and_both_plots():
    r = report()
    r["per_layer"] = {"sensitivity (cosine loss)": {"features.0": 0.01, "classifier": 0.002}}
    page = render(r)
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and not re.search(r"(src|href)=\"https?://", page)
    assert page.count("<svg") == 3  # latency/accuracy, size/accuracy, per-layer bars
    assert "Latency against accuracy" in page and "Size against accuracy" in page and "Pareto front" in page
    assert "<td>onnx/int8-static</td>" in page

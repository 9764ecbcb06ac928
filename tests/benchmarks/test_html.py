"""The self-contained HTML report: its noise-aware front, data-chosen axes, label
placement and sections (the browser tests check the rendered page)."""

import re

from benchmarks.html import pareto_front, render
from benchmarks.html.pareto import Point, noise_front
from benchmarks.html.svg import choose_scale, place_labels, text_width
from gate_reports import report, timings
from html_reports import noisy_fourteen, sectioned


def test_pareto_front_keeps_only_undominated_points():
    # (latency, accuracy): the slow-and-worse point is dominated by the first.
    points = [(1.0, 99.0), (2.0, 98.0), (0.5, 97.0), (3.0, 99.5)]
    assert pareto_front(points) == [2, 0, 3]


def test_front_steps_only_through_differences_beyond_the_noise():
    same = [Point(0.042, 99.33, timings(0.042, seed=s)) for s in range(4)]  # one distribution, four draws
    front = noise_front(same)
    assert not front.any_difference and len(front.steps) == 1
    real = [Point(2.0, 99.3, timings(2.0, seed=1)), Point(1.0, 99.0, timings(1.0, seed=2)),
            Point(2.02, 99.3, timings(2.02, seed=3)), Point(3.0, 98.0, timings(3.0, seed=4))]
    front = noise_front(real)
    assert [real[i].x for i in front.steps] == [1.0, 2.0]  # 2.02 ties 2.0 at equal accuracy
    assert front.tied == {2: 0} and front.dominated == [3]


def test_axes_are_chosen_from_the_data():
    flat = choose_scale([99.33] * 5, 0, 100, min_span=1.0)
    assert not flat.log and flat.hi - flat.lo < 1.3 and flat.lo < 99.33 < flat.hi  # not 94-104 %
    wide = choose_scale([1.0, 12.0, 40.0], 0, 100, min_span=0.1)
    assert wide.log and wide.lo < 1.0 and wide.hi > 40.0
    padded = choose_scale([0.2, 1.0], 0, 100, min_span=0.1)
    assert not padded.log and 0.1 < padded.lo < 0.2 and 1.0 < padded.hi < 1.1


def test_labels_never_share_space_or_leave_the_plot():
    pts = [(100 + 3 * i, 100.0, f"artifact-{i}") for i in range(14)]  # a tight cluster
    placed = place_labels(pts, (0, 0, 640, 400))
    boxes = [(x, y - 11, x + text_width(t), y) for x, y, t in (p for p in placed if p)]
    assert len(boxes) >= 6
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= 640
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_html_is_self_contained_with_colour_per_target_and_p50_p90_bars():
    page = render(noisy_fourteen())
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and not re.search(r"(src|href)=\"https?://", page)
    assert "max-width: 1100px" not in page
    fills = set(re.findall(r'<g class="point" data-name="(\w+)/[^"]*"><title>[^<]*</title><\w+ [^>]*fill="(#\w+)"',
                           page))
    assert len({c for _, c in fills}) == 4 and len(fills) == 4  # one colour per target, four targets
    assert page.count('class="range"') == 14  # p50-p90 on the latency scatter
    assert "<td class=num>268.1 KB</td>" in page


def test_every_section_of_report_md_is_in_the_page():
    page = render(sectioned())
    for sid in ("plots", "summary", "batches", "pruning", "qat", "fallback", "per-layer"):
        assert f'<section id="{sid}">' in page
    assert "batch 32: samples/s" in page and "Kept in float" in page and "<code>classifier</code>" in page
    assert 'class="front"' in page  # int8 at 0.8 ms and fp32 at 2.0 ms are told apart


def test_a_two_row_report_keeps_its_table_and_plots():
    r = report()
    r["per_layer"] = {"sensitivity (cosine loss)": {"features.0": 0.01, "classifier": 0.002}}
    page = render(r)
    assert "Latency against accuracy" in page and "Size against accuracy" in page
    assert "<td>onnx/int8-static</td>" in page and "features.0" in page


def test_long_layer_names_are_shortened_in_the_middle_and_whole_on_hover():
    r = report()
    long = "encoder.layer.11.attention.output.dense.weight_quantizer"
    r["per_layer"] = {"sensitivity (cosine loss)": {long: 0.02, "head": 0.01}}
    page = render(r)
    assert f"<title>{long}: 0.02</title>" in page
    assert ">encoder.layer.11.…e.weight_quantizer</text>" in page  # 36 characters

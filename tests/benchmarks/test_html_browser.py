"""report.html as a reader sees it, in headless Chromium: no label over another or cut
at the plot's edge, every section there, numbers on one line at 1400 px, nothing loaded
from anywhere, no console errors."""

from __future__ import annotations

import pytest

from benchmarks.html import render
from browser import chromium, look
from device_reports import devices_report
from html_reports import noisy_fourteen, sectioned


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def _clean(seen: dict) -> None:
    assert seen["overlaps"] == []
    assert seen["console"] == []
    assert seen["resources"] == 0  # one file: no image, font, style or script fetched
    assert seen["wrapped"] == []   # "268.1 KB" and every other number on one line
    assert seen["width"] <= seen["inner"]  # fits the window: no sideways scroll of the page


def test_fourteen_noisy_artifacts_read_cleanly(browser, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(noisy_fourteen()), encoding="utf-8")
    seen = look(browser, page)
    _clean(seen)
    ids = [s[0] for s in seen["sections"]]
    assert ids[:2] == ["plots", "summary"] and all(s[2] for s in seen["sections"])
    assert seen["points"] == 28  # fourteen on each scatter
    assert seen["labels"] >= 10   # most named in place; the rest on hover
    # The fastest beats the slowest beyond the noise, but no two steps are told apart: no
    # front line through noise, the tied ones ringed and said so.
    assert browser.find_elements("css selector", "#plots polyline.front") == []
    assert "within the noise of a step" in browser.find_element("id", "plots").text


def test_every_section_of_report_md_is_on_the_page(browser, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(sectioned()), encoding="utf-8")
    seen = look(browser, page)
    _clean(seen)
    assert [s[0] for s in seen["sections"]] == ["plots", "summary", "batches", "pruning", "qat", "fallback",
                                                "per-layer"]
    assert "batch 32: p50 ms" in browser.find_element("id", "batches").text
    assert "1.67x" in browser.find_element("id", "pruning").text
    assert browser.find_elements("css selector", "#plots polyline.front")  # real differences: a front


def test_devices_report_reads_cleanly(browser, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(devices_report()), encoding="utf-8")
    seen = look(browser, page)
    _clean(seen)
    assert "devices" in [s[0] for s in seen["sections"]]
    assert "qemu" in browser.find_element("id", "devices").text


@pytest.mark.slow  # a real 4-trial study on the digits CNN (~40 s on 2 cores)
def test_tune_html_shows_history_and_importance(browser, tmp_path):
    import json

    from compressor.flows.cli import main
    from recipes import digits_head

    recipe = tmp_path / "r.yaml"
    recipe.write_text(digits_head("tuned", calibration=64, evaluation=True) + """\
targets: [onnx]
benchmark: {batch_sizes: [1], runs: 20, warmup: 2, warmup_s: 0.02, memory: false}
tune:
  trials: 4
  seed: 3
  budget: {max_accuracy_drop: 1.0}
  benchmark: {runs: 20, warmup: 2, warmup_s: 0.02}
  space: {modes: [static, dynamic, fp16], calibration: [minmax, percentile], per_channel: [true, false]}
""")
    out = tmp_path / "study"
    assert main(["tune", str(recipe), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "tune.json").read_text())
    seen = look(browser, out / "tune.html")
    _clean(seen)
    assert [s[0] for s in seen["sections"]] == ["plots", "trials"]
    charts = [e.get_attribute("textContent") for e in browser.find_elements("css selector", "#plots svg.chart > title")]
    assert charts[:2] == ["Trials: latency against size", "Study history"]
    assert "Parameter importance" in browser.find_element("id", "plots").get_attribute("textContent")
    imp = report["importance"]
    assert imp.get("error") or abs(sum(imp["values"].values()) - 1.0) < 1e-6


@pytest.mark.slow  # a real run of the digits CNN (~30 s on 2 cores)
def test_a_real_run_shows_where_the_time_goes(browser, tmp_path):
    import json

    from compressor.flows.cli import main
    from recipes import digits_head

    recipe = tmp_path / "r.yaml"
    recipe.write_text(digits_head("ops", calibration=64, evaluation=True) + """\
steps:
  - quantize: {variants: [{mode: static, calibration: minmax}, {mode: dynamic}]}
targets: [onnx]
benchmark: {batch_sizes: [1, 8], runs: 30, warmup: 2, warmup_s: 0.02, memory: false}
""")
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--no-progress"]) in (0, 1)
    report = json.loads((out / "report.json").read_text())
    profiled = report["op_profile"]
    assert "slowest" in sum((p["why"] for p in profiled.values()), [])
    assert all(p["by_op_type"] and p["runtime"].startswith("ONNX Runtime") for p in profiled.values())
    seen = look(browser, out / "report.html")
    _clean(seen)
    assert [s[0] for s in seen["sections"]][:4] == ["plots", "summary", "batches", "operators"]
    ops = browser.find_element("id", "operators").text
    assert all(name in ops for name in profiled) and "Slowest nodes" in ops

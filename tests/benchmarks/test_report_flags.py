"""An int8 artifact slower than its fp32 twin is flagged loudly: `slower_than_fp32` in
report.json, a warning in the table's status column and a SLOWER note in Markdown and
HTML, a red row and a note in the terminal. A faster one, or one whose slowdown is
within the timing noise, is not. The rows are the run's own record types
(ArtifactRow, Metrics, Latency.from_samples) around seeded per-run timings."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from benchmarks.html import render
from benchmarks.metrics import Latency, Metrics
from benchmarks.report import build, print_table, to_markdown
from benchmarks.rows import ArtifactRow
from benchmarks.stats import significantly_slower
from compressor.config.recipe import BenchmarkSpec
from compressor.fsutil import write_json
from compressor.sysinfo import machine

FP32_SIZE, INT8_SIZE = 268_053, 74_316
INT8 = "onnx/int8-static"


def timings_ms(p50_ms: float, runs: int = 100, seed: int = 0) -> list[float]:
    """Skewed like real timings: a floor and a long right tail (the median lands near p50_ms)."""
    rng = np.random.default_rng(seed)
    return list(p50_ms * (1 + rng.lognormal(mean=np.log(0.03), sigma=0.6, size=runs) - 0.03))


def metrics(samples_ms: list[float], size: int, path: str) -> dict:
    lat = Latency.from_samples(1, [x / 1e3 for x in samples_ms], keep=True, block=10,
                               ref_blocks_ms=[0.9] * (len(samples_ms) // 10))
    return Metrics(path=path, target="onnx", runtime="onnxruntime 1.32.0", provider="CPUExecutionProvider",
                   device="cpu", threads=2, size_bytes=size, gzip_bytes=int(size * 0.9), load_s=0.003,
                   first_inference_ms=0.2, latency=[lat], reference_p50_ms=0.9, accuracy=0.99,
                   eval_samples=200).to_json()


def make_report(tmp_path, fp32_ms: list[float], int8_ms: list[float]) -> dict:
    """Built as the run builds it, written as report.json and read back."""
    rows = [ArtifactRow(target="onnx", label="fp32", precision="fp32", file="artifacts/d.fp32.onnx",
                        fidelity={"cosine_mean": 1.0},
                        metrics=metrics(fp32_ms, FP32_SIZE, "artifacts/d.fp32.onnx")),
            ArtifactRow(target="onnx", label="int8-static", precision="int8", intent={"mode": "static"},
                        file="artifacts/d.int8-static.onnx", fidelity={"cosine_mean": 0.9999},
                        metrics=metrics(int8_ms, INT8_SIZE, "artifacts/d.int8-static.onnx"))]
    runs = min(len(fp32_ms), len(int8_ms))
    report = build(name="digits",
                   model={"source": "compressor.zoo.digits:digits_cnn", "parameters": 65834,
                          "inputs": [{"name": "pixels", "shape": [1, 1, 8, 8], "dtype": "float32"}]},
                   reference={"framework": "pytorch", "eval_samples": 200, "accuracy": 0.99},
                   bench=BenchmarkSpec(batch_sizes=[1], runs=runs, memory=False).model_dump(),
                   machine=machine(), artifacts=[r.to_json() for r in rows])
    write_json(tmp_path / "report.json", report)
    return json.loads((tmp_path / "report.json").read_text())


def table_row(md: str, name: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def status_and_speedup(md: str, name: str) -> tuple[str, str]:
    header = table_row(md, "artifact")
    cells = table_row(md, name)
    return cells[header.index("status")], cells[header.index("speedup")]


def terminal(report: dict) -> str:
    out = io.StringIO()
    print_table(report, Console(file=out, force_terminal=True, color_system="standard", width=120))
    return out.getvalue()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def rows_by_name(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["artifacts"]}


def test_int8_clearly_slower_than_fp32_is_flagged_in_json_markdown_html_and_terminal(tmp_path):
    fp32_ms, int8_ms = timings_ms(2.0, seed=1), timings_ms(3.0, seed=2)
    assert significantly_slower(int8_ms, fp32_ms)  # the input really is slower, beyond the noise
    report = make_report(tmp_path, fp32_ms, int8_ms)
    rows = rows_by_name(report)
    fp32, int8 = rows["onnx/fp32"], rows[INT8]

    speedup = fp32["metrics"]["latency"][0]["p50_ms"] / int8["metrics"]["latency"][0]["p50_ms"]
    assert int8["speedup_vs_fp32"] == pytest.approx(speedup, rel=1e-12) and 0.6 < speedup < 0.75
    assert int8.get("slower_than_fp32") is True
    assert int8["notes"] == [f"SLOWER than fp32 onnx ({speedup:.2f}x at batch 1): "
                             "do not ship it for speed on this machine"]
    assert "slower_than_fp32" not in fp32 and fp32["notes"] == []

    md = to_markdown(report)
    assert status_and_speedup(md, INT8) == ("⚠ slower than fp32", f"{speedup:.2f}x")
    assert status_and_speedup(md, "onnx/fp32") == ("ok", "1.00x")
    assert f"- **{INT8}**: SLOWER than fp32 onnx ({speedup:.2f}x at batch 1)" in md

    page = render(report)
    assert page.count("<td>⚠ slower than fp32</td>") == 1
    assert f"<li><b>{INT8}</b>: SLOWER than fp32 onnx ({speedup:.2f}x at batch 1)" in page

    lines = terminal(report).splitlines()
    int8_line = next(ln for ln in lines if INT8 in ln and "SLOWER" not in ln)
    fp32_line = next(ln for ln in lines if "onnx/fp32" in ln)
    assert int8_line.startswith("\x1b[31m") and "\x1b[31m" not in fp32_line  # the row is red
    note = next(ln for ln in lines if "SLOWER" in ln)
    assert note.startswith("\x1b[33m")  # and the note below the table yellow
    assert plain(note) == f"{INT8}: SLOWER than fp32 onnx ({speedup:.2f}x at batch 1): " \
                          "do not ship it for speed on this machine"


def test_int8_clearly_faster_than_fp32_is_not_flagged(tmp_path):
    fp32_ms, int8_ms = timings_ms(2.0, seed=1), timings_ms(1.0, seed=2)
    report = make_report(tmp_path, fp32_ms, int8_ms)
    int8 = rows_by_name(report)[INT8]

    speedup = report["artifacts"][0]["metrics"]["latency"][0]["p50_ms"] / int8["metrics"]["latency"][0]["p50_ms"]
    assert int8["speedup_vs_fp32"] == pytest.approx(speedup, rel=1e-12) and 1.8 < speedup < 2.2
    assert "slower_than_fp32" not in int8 and int8["notes"] == []
    assert int8["size_ratio_vs_fp32"] == pytest.approx(INT8_SIZE / FP32_SIZE)

    md = to_markdown(report)
    assert status_and_speedup(md, INT8) == ("ok", f"{speedup:.2f}x")
    assert "⚠" not in md and "SLOWER" not in md and "Notes:" not in md
    page = render(report)
    assert "⚠" not in page and "SLOWER" not in page
    out = terminal(report)
    assert "\x1b[31m" not in out and "SLOWER" not in out


@pytest.mark.parametrize("fp32_ms, int8_ms, significant", [
    # Medians 1.10 and 1.15 ms (0.96x) but five runs each that overlap: not beyond the noise.
    ([1.00, 1.20, 0.90, 1.10, 1.30], [1.25, 0.95, 1.15, 1.35, 1.05], False),
    # Every run 2% slower: beyond the noise (100 runs) but under the 3% that matters.
    (timings_ms(2.0, seed=1), [x * 1.02 for x in timings_ms(2.0, seed=1)], True),
], ids=["within-noise", "under-3-percent"])
def test_a_slowdown_that_is_noise_or_small_is_noted_but_not_flagged(tmp_path, fp32_ms, int8_ms, significant):
    assert significantly_slower(int8_ms, fp32_ms) is significant
    report = make_report(tmp_path, fp32_ms, int8_ms)
    int8 = rows_by_name(report)[INT8]
    assert int8["speedup_vs_fp32"] < 1.0
    assert "slower_than_fp32" not in int8
    assert int8["notes"] == ["no measurable speedup over fp32 onnx at batch 1 "
                             "(the difference is within the timing noise)"]
    md = to_markdown(report)
    assert status_and_speedup(md, INT8)[0] == "ok" and "⚠" not in md and "SLOWER" not in md
    assert f"- **{INT8}**: no measurable speedup over fp32 onnx" in md

"""The recommendation per device and the gate's `recommended` budget, on reports with
realistic (skewed, seeded) timings."""

from __future__ import annotations

import copy

import pytest

from benchmarks.gate import evaluate
from benchmarks.recommend import line, lines, markdown, recommend
from benchmarks.report import build, to_markdown
from compressor.config.budgets import BudgetsSpec
from compressor.errors import RecipeError

from gate_reports import metrics, report as two_rows


def _row(target: str, label: str, precision: str, ms: float, size: int, seed: int, cosine: float = 0.999,
         status: str = "ok", device: str | None = None) -> dict:
    r = {"name": f"{target}/{label}" if device is None else f"{device}:{target}/{label}", "target": target,
         "label": label, "precision": precision, "status": status, "fidelity": {"cosine_mean": cosine},
         "notes": [], "metrics": metrics(ms, size, 0.99, seed)}
    if device is not None:
        r["device"] = device
    if status != "ok":
        r["error"] = "cosine 0.91 below 0.99"
        del r["metrics"]
    return r


def _report(rows: list[dict], devices: dict | None = None) -> dict:
    return build(name="m", model={"source": "x", "inputs": []}, reference={"accuracy": 0.99, "eval_samples": 450},
                 bench={"batch_sizes": [1], "threads": 2, "device": "cpu", "runs": 100},
                 machine={"cpu": {"model": "test", "kernel_flags": []}}, artifacts=copy.deepcopy(rows),
                 devices=devices)


FIVE = [_row("onnx", "fp32", "fp32", 26.2, 46_000_000, 1), _row("onnx", "int8-static", "int8", 9.7, 11_700_000, 2),
        _row("openvino", "fp32", "fp32", 28.0, 46_000_000, 3),
        _row("openvino", "int8-static", "int8", 8.4, 11_900_000, 4, cosine=0.9997),
        _row("tflite", "int8-static", "int8", 13.0, 11_800_000, 5)]


def test_the_fastest_validated_artifact_against_the_fastest_fp32_of_any_target():
    got = recommend(_report(FIVE))["local"]
    assert got["artifact"] == "openvino/int8-static"
    assert got["fastest_fp32"] == "onnx/fp32"  # not openvino's own fp32: the fastest of any target
    assert got["speedup"] == pytest.approx(got["fastest_fp32_p50_ms"] / got["p50_ms"])
    assert 3.0 < got["speedup"] < 3.3
    assert got["ties"] == []  # 9.7 ms is slower than 8.4 ms beyond the noise
    text = line("local", got)
    assert text.startswith("recommended on local: openvino/int8-static 8.")
    assert "x the fastest fp32, onnx/fp32 26." in text and "cosine 0.9997" in text


def test_a_row_that_failed_validation_or_a_budget_is_never_recommended():
    rows = [*FIVE[:3], _row("openvino", "int8-static", "int8", 8.4, 1, 4, status="failed"), FIVE[4]]
    assert recommend(_report(rows))["local"]["artifact"] == "onnx/int8-static"
    over = recommend(_report(FIVE), failed={"onnx/int8-static", "openvino/int8-static"})["local"]
    assert over["artifact"] == "tflite/int8-static"
    assert over["over_budget"] == ["onnx/int8-static", "openvino/int8-static"]


def test_ties_within_the_noise_are_named():
    rows = [FIVE[0], _row("onnx", "int8-static", "int8", 8.4, 1, 9), FIVE[3]]  # the same speed, other draws
    got = recommend(_report(rows))["local"]
    assert got["ties"] and got["ties"][0] in ("onnx/int8-static", "openvino/int8-static")
    assert "within the timing noise of" in line("local", got)


def test_fp32_itself_can_be_the_answer_and_nothing_measured_says_why():
    rows = [FIVE[0], _row("onnx", "int8-static", "int8", 40.0, 1, 2)]
    got = recommend(_report(rows))["local"]
    assert got["artifact"] == "onnx/fp32" and got["speedup"] == 1.0
    assert "fp32 itself is the fastest" in line("local", got)
    none = recommend(_report([FIVE[0]]), failed={"onnx/fp32"})["local"]
    assert none["artifact"] is None and "budgets" in none["why"]
    assert line("local", none) == "recommended on local: none (no artifact passed validation and the budgets)"


def test_one_recommendation_per_device_and_none_under_qemu():
    rows = [*FIVE[:2], _row("tflite", "fp32", "fp32", 90.0, 1, 6, device="pi5"),
            _row("tflite", "int8-static", "int8", 30.0, 1, 7, device="pi5"),
            _row("tflite", "int8-static", "int8", 300.0, 1, 8, device="qemu-arm")]
    rep = _report(rows, devices={"local": {}, "pi5": {"kind": "ssh"}, "qemu-arm": {"kind": "ssh", "emulated": True}})
    got = recommend(rep)
    assert list(got) == ["local", "pi5", "qemu-arm"]
    assert got["pi5"]["artifact"] == "tflite/int8-static" and got["pi5"]["speedup"] == pytest.approx(3.0, rel=0.1)
    assert got["qemu-arm"]["artifact"] is None and "qemu" in got["qemu-arm"]["why"]
    rep["recommended"] = got
    assert [t.split(":")[0] for t in lines(rep)] == ["recommended on local", "recommended on pi5",
                                                     "recommended on qemu-arm"]
    md = to_markdown(rep)
    assert "**Recommended**" in md and "- recommended on pi5: tflite/int8-static" in md
    assert markdown({**rep, "recommended": {}}) == []


def _spec(**kw) -> BudgetsSpec:
    return BudgetsSpec.model_validate(kw)


def test_the_gate_holds_the_recommendation_to_min_speedup():
    rep = _report(FIVE)
    ok = evaluate(rep, _spec(recommended={"min_speedup": 2.5}))
    assert [(c.artifact, c.passed) for c in ok] == [("recommended on local", True)]
    assert "openvino/int8-static against onnx/fp32" in ok[0].detail
    bad = evaluate(rep, _spec(recommended={"min_speedup": 3.5, "max_p50_ms": 5.0}))
    assert [c.passed for c in bad] == [False, False]
    assert bad[0].line().startswith("FAIL recommended on local: min_speedup 3.5x, measured 3.")


def test_a_budget_that_fails_moves_the_recommendation_the_gate_checks():
    # openvino/int8-static is larger than 11.8 MB: the next fastest that holds is onnx int8
    spec = _spec(limits={"*/int8": {"max_size": "11.8MB"}}, recommended={"min_speedup": 2.5})
    checks = evaluate(_report(FIVE), spec)
    rec = [c for c in checks if c.artifact == "recommended on local"]
    assert rec[0].passed and "onnx/int8-static against onnx/fp32" in rec[0].detail


def test_recommended_budget_refusals():
    with pytest.raises(ValueError, match="name min_speedup or max_p50_ms"):
        _spec(recommended={})
    with pytest.raises(ValueError, match="give 'limits'"):
        _spec()
    with pytest.raises(RecipeError, match="names device 'pi9'"):
        evaluate(_report(FIVE), _spec(recommended={"min_speedup": 2, "devices": ["pi9"]}))
    no_fp32 = _report([FIVE[1], FIVE[3]])
    with pytest.raises(RecipeError, match="no fp32 artifact there"):
        evaluate(no_fp32, _spec(recommended={"min_speedup": 2}))


def test_the_two_row_report_of_the_gate_tests_recommends_int8():
    rep = two_rows()
    got = recommend(rep)["local"]
    assert got["artifact"] == "onnx/int8-static" and got["speedup"] == pytest.approx(2.0, rel=0.1)

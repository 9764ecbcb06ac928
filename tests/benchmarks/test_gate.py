"""The gate's verdicts on reports with known differences."""

import pytest

from benchmarks.gate import check_compatible, evaluate, not_gated, number, unsigned_zero
from compressor.config.budgets import BudgetsSpec, Limits
from compressor.errors import RecipeError
from gate_reports import report


def spec(**limits) -> BudgetsSpec:
    sel = limits.pop("selector", "onnx/int8")
    normalize = limits.pop("normalize", True)
    return BudgetsSpec(limits={sel: Limits(**limits)}, latency={"normalize": normalize})


def verdicts(checks) -> dict:
    return {(c.artifact, c.limit_name): c.passed for c in checks}


def test_absolute_limits_pass_and_fail_with_the_measured_value():
    checks = evaluate(report(int8_size=250_000), spec(max_size="300KB", max_p50_ms=0.5, min_accuracy=98.5))
    v = verdicts(checks)
    assert v[("onnx/int8-static", "max_size")] is True
    assert v[("onnx/int8-static", "max_p50_ms")] is False
    assert v[("onnx/int8-static", "min_accuracy")] is True
    failed = next(c for c in checks if not c.passed)
    assert failed.measured == pytest.approx(1.0, rel=0.1)
    assert "max_p50_ms 0.5 ms, measured" in failed.line() and "over by" in failed.line()


def test_accuracy_drop_is_in_points_below_the_reference():
    checks = evaluate(report(int8_acc=0.985), spec(max_accuracy_drop=0.5))
    assert checks[0].measured == pytest.approx(0.8) and not checks[0].passed


def test_relative_limits_against_the_fp32_twin_skip_the_twin_itself():
    checks = evaluate(report(fp32_ms=2.0, int8_ms=1.0), spec(selector="*", min_speedup=1.5, max_size_ratio=0.3))
    assert {c.artifact for c in checks} == {"onnx/int8-static"}
    assert all(c.passed for c in checks)
    assert evaluate(report(int8_ms=1.6), spec(min_speedup=1.5))[0].passed is False


def test_same_model_twice_passes_a_5_percent_latency_budget():
    checks = evaluate(report(seed=10), spec(max_latency_regression=5), baseline=report(seed=20))
    assert checks[0].passed, checks[0].line()


def test_thirty_percent_more_work_fails_a_5_percent_latency_budget():
    checks = evaluate(report(int8_ms=1.3, seed=10), spec(max_latency_regression=5), baseline=report(seed=20))
    assert not checks[0].passed
    assert 25 < checks[0].measured < 35
    assert "95% interval" in checks[0].detail


def test_normalisation_forgives_a_uniformly_slower_runner():
    slower = report(seed=10, slow=1.25)
    assert evaluate(slower, spec(max_latency_regression=5), baseline=report(seed=20))[0].passed
    assert not evaluate(slower, spec(max_latency_regression=5, normalize=False), baseline=report(seed=20))[0].passed


def test_size_and_accuracy_regressions_against_the_baseline():
    checks = evaluate(report(int8_size=260_000, int8_acc=0.985),
                      spec(max_size_regression=1, max_accuracy_regression=0.3), baseline=report())
    v = verdicts(checks)
    assert v[("onnx/int8-static", "max_size_regression")] is False
    assert v[("onnx/int8-static", "max_accuracy_regression")] is False


def test_regression_limits_without_a_baseline_are_a_usage_error():
    with pytest.raises(RecipeError, match="no baseline was given"):
        evaluate(report(), spec(max_latency_regression=5))


def test_baseline_of_another_model_is_refused():
    with pytest.raises(RecipeError, match="baseline is for another model"):
        check_compatible(report(), report(source="pkg.other:model"))


def test_budget_naming_a_missing_artifact_is_a_usage_error():
    with pytest.raises(RecipeError, match=r"'onnx/fp16', which the report does not have \(it has: onnx/fp32"):
        evaluate(report(), spec(selector="onnx/fp16", max_size=1000))


def test_wildcard_selectors_match_label_or_precision():
    checks = evaluate(report(), spec(selector="*/int8", max_size="1MB"))
    assert [c.artifact for c in checks] == ["onnx/int8-static"]
    checks = evaluate(report(), spec(selector="onnx/*", max_size="1MB"))
    assert [c.artifact for c in checks] == ["onnx/fp32", "onnx/int8-static"]


def test_a_failed_artifact_fails_every_budget_that_selects_it():
    r = report()
    r["artifacts"][1].update(status="failed", error="output 'logits' differs", metrics=None)
    checks = evaluate(r, spec(max_size="1MB"))
    assert not checks[0].passed and "artifact failed" in checks[0].detail


def with_skipped(r: dict, error: str = "the torchscript target does not offer fp16 quantization (it offers: "
                 "static, dynamic)", target: str = "torchscript", label: str = "fp16") -> dict:
    r["artifacts"].append({"name": f"{target}/{label}", "target": target, "label": label, "precision": "fp16",
                           "status": "skipped", "error": error, "notes": []})
    return r


def test_a_wildcard_budget_skips_an_artifact_the_run_skipped_and_says_why():
    checks = evaluate(with_skipped(report()), spec(selector="*", max_size="2MB", max_accuracy_drop=0.5))
    skipped = [c for c in checks if c.artifact == "torchscript/fp16"]
    assert [(c.limit_name, c.passed, c.skipped, c.verdict) for c in skipped] == [
        ("max_size", True, True, "skip"), ("max_accuracy_drop", True, True, "skip")]
    assert skipped[0].detail == ("skipped: the run skipped this artifact: the torchscript target does not offer "
                                 "fp16 quantization (it offers: static, dynamic)")
    assert not_gated(checks) == {"torchscript/fp16": "the torchscript target does not offer fp16 quantization "
                                                     "(it offers: static, dynamic)"}
    assert all(c.passed and not c.skipped for c in checks if c.artifact != "torchscript/fp16")


def test_an_exact_budget_on_an_artifact_the_run_skipped_is_a_usage_error():
    with pytest.raises(RecipeError, match=r"^the budgets name artifact 'torchscript/fp16', which the run skipped "
                                          r"\(torchscript/fp16: the torchscript target does not offer fp16"):
        evaluate(with_skipped(report()), spec(selector="torchscript/fp16", max_size="2MB"))


def test_a_variant_skipped_because_its_fp32_export_failed_still_fails():
    r = report()
    r["artifacts"][0].update(status="failed", error="export failed: unsupported op", metrics=None)
    r["artifacts"][1].update(status="skipped", error="the fp32 export failed", metrics=None)
    checks = evaluate(r, spec(selector="*/int8", max_size="2MB"))
    assert [(c.artifact, c.passed, c.skipped) for c in checks] == [("onnx/int8-static", False, False)]
    assert checks[0].detail == "artifact skipped: the fp32 export failed" and not not_gated(checks)


def test_a_latency_regression_keeps_the_raw_change_beside_the_normalised_one():
    slower = report(seed=10, slow=1.7)  # a runner 70% slower at everything, the reference workload included
    check = evaluate(slower, spec(max_latency_regression=5), baseline=report(seed=20))[0]
    lat = check.latency
    assert check.passed and lat.normalised and lat.statistic == "median" and lat.reference_ms == (1.0, 1.7)
    assert 65 < lat.raw < 75 and abs(lat.estimate) < 3 and lat.low < lat.estimate < lat.high
    assert check.measured == lat.estimate
    assert "raw change +7" in check.detail and "normalised by the reference workload (1 -> 1.7 ms)" in check.detail
    raw = evaluate(slower, spec(max_latency_regression=5, normalize=False), baseline=report(seed=20))[0]
    assert not raw.passed and not raw.latency.normalised and raw.latency.estimate == pytest.approx(raw.latency.raw)
    assert raw.latency.how == "raw: normalisation is off (latency.normalize: false)"


def test_each_check_records_the_gates_own_time_on_it():
    checks = evaluate(report(seed=10), spec(max_size="2MB", max_latency_regression=5), baseline=report(seed=20))
    by = {c.limit_name: c.seconds for c in checks}
    assert by["max_latency_regression"] > by["max_size"] > 0  # the bootstrap costs more than a lookup
    assert by["max_latency_regression"] < 5


@pytest.mark.parametrize("x, spec, shown", [(-0.0, ".4g", "0"), (-1e-9, ".3g", "-1e-09"), (-0.04, "+.1f", "±0.0"),
                                             (0.04, "+.1f", "±0.0"), (-0.004, ".2f", "0.00"), (-0.4, "+.1f", "-0.4"),
                                             (1.0, "+.1f", "+1.0"), (0.0, ".4g", "0"), (-10, ".4g", "-10")])
def test_a_rounded_zero_has_no_sign(x, spec, shown):
    assert number(x, spec) == shown


def test_unsigned_zero_reads_units_too():
    assert unsigned_zero("-0.00 pt") == "0.00 pt" and unsigned_zero("+0.0%", plus=True) == "±0.0%"
    assert unsigned_zero("-0.01 pt") == "-0.01 pt"


def test_an_accuracy_drop_of_nothing_reads_0_pt():
    r = report(int8_acc=0.993)  # the reference's accuracy exactly
    check = evaluate(r, spec(max_accuracy_drop=0.5))[0]
    assert check.line() == "ok   onnx/int8-static: max_accuracy_drop 0.5 pt, measured 0 pt (below the PyTorch fp32 model)"

"""Budgets over several devices: a DEVICE: prefix on selectors, unprefixed selectors
meaning this machine, emulated latency not gated, a failed device row failing its
budgets, baselines matched per device, and what CI reads (JUnit, Markdown)."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import pytest

from benchmarks import ci_outputs
from benchmarks.gate import EMULATED_SKIP, evaluate
from compressor.config.budgets import BudgetsSpec, Limits, load_budgets
from compressor.errors import RecipeError
from compressor.flows.cli import main
from device_reports import devices_report


def spec(limits: dict[str, dict]) -> BudgetsSpec:
    return BudgetsSpec(limits={sel: Limits(**lim) for sel, lim in limits.items()})


def checked(checks) -> dict[tuple[str, str], object]:
    return {(c.artifact, c.limit_name): c for c in checks}


def test_unprefixed_selectors_select_this_machines_rows_only():
    checks = evaluate(devices_report(), spec({"*": {"max_size": "2MB"}, "onnx/int8": {"min_speedup": 1.2}}))
    assert {c.artifact for c in checks} == {"onnx/fp32", "onnx/int8-static", "onnx/int8-dynamic"}
    assert checked(checks)[("onnx/int8-static", "min_speedup")].measured == pytest.approx(2.0)


def test_a_device_prefix_selects_that_devices_rows():
    checks = checked(evaluate(devices_report(), spec({"pi5:onnx/int8-static": {"min_speedup": 2.5,
                                                                                 "max_p50_ms": 5.0}})))
    assert set(checks) == {("pi5:onnx/int8-static", "min_speedup"), ("pi5:onnx/int8-static", "max_p50_ms")}
    speed = checks[("pi5:onnx/int8-static", "min_speedup")]
    assert speed.passed and speed.measured == pytest.approx(3.0) and speed.detail == "against fp32 onnx on pi5, batch 1"
    assert checks[("pi5:onnx/int8-static", "max_p50_ms")].measured == pytest.approx(4.0)


def test_wildcard_prefixes_select_across_devices():
    any_device = evaluate(devices_report(), spec({"*:onnx/int8-static": {"max_size": "300KB"}}))
    assert sorted(c.artifact for c in any_device) == ["onnx/int8-static", "pi5:onnx/int8-static",
                                                       "qemu-a76:onnx/int8-static"]
    every_pi5 = evaluate(devices_report(), spec({"pi5:*": {"max_size": "2MB"}}))
    assert sorted(c.artifact for c in every_pi5) == ["pi5:onnx/fp32", "pi5:onnx/int8-dynamic", "pi5:onnx/int8-static"]
    pi5_int8 = evaluate(devices_report(), spec({"pi5:*/int8": {"max_size": "2MB"}}))
    assert sorted(c.artifact for c in pi5_int8) == ["pi5:onnx/int8-dynamic", "pi5:onnx/int8-static"]


def test_emulated_latency_is_skipped_and_size_accuracy_cosine_are_judged():
    limits = {"max_p50_ms": 1.0, "max_p90_ms": 1.0, "max_p99_ms": 1.0, "min_speedup": 1.5, "max_size": "200KB",
              "max_accuracy_drop": 0.1, "min_cosine": 0.99}
    checks = checked(evaluate(devices_report(), spec({"qemu-a76:onnx/int8-static": limits})))
    name = "qemu-a76:onnx/int8-static"
    for key in ("max_p50_ms", "max_p90_ms", "max_p99_ms", "min_speedup"):
        c = checks[(name, key)]
        assert c.passed and c.measured is None and c.detail == EMULATED_SKIP
    assert EMULATED_SKIP == "skipped: emulated latency (qemu) is not gated"
    assert not checks[(name, "max_size")].passed                                   # 250 KB over 200 KB
    assert not checks[(name, "max_accuracy_drop")].passed                          # 0.3 points
    assert checks[(name, "max_accuracy_drop")].measured == pytest.approx(0.3)
    assert checks[(name, "min_cosine")].passed


def test_a_failed_device_row_fails_its_budgets():
    checks = checked(evaluate(devices_report(), spec({"pi5:onnx/int8-dynamic": {"max_size": "1MB"}})))
    c = checks[("pi5:onnx/int8-dynamic", "max_size")]
    assert not c.passed and c.detail == "artifact failed: pi5: connection lost mid-run (ssh exited 255)"


def test_a_device_the_report_lacks_is_a_usage_error_naming_the_devices():
    with pytest.raises(RecipeError, match=r"^the budgets name device 'pi6' \(in 'pi6:onnx/int8-static'\), which the "
                                          r"report does not have \(it has: local, pi5, qemu-a76\)$"):
        evaluate(devices_report(), spec({"pi6:onnx/int8-static": {"max_size": "1MB"}}))
    with pytest.raises(RecipeError, match="the budgets name device 'pi6'"):
        evaluate(devices_report(), spec({"pi6:*": {"max_size": "1MB"}}))  # the device part names it exactly


def test_an_artifact_the_device_lacks_is_a_usage_error_naming_what_it_has():
    with pytest.raises(RecipeError, match=r"the budgets name artifact 'qemu-a76:onnx/int8-dynamic', which the "
                                          r"report does not have on device 'qemu-a76' \(it has there: "
                                          r"qemu-a76:onnx/fp32, qemu-a76:onnx/int8-static\)"):
        evaluate(devices_report(), spec({"qemu-a76:onnx/int8-dynamic": {"max_size": "1MB"}}))


def test_a_wildcard_device_that_matches_nothing_is_fine_beside_another_selector():
    checks = evaluate(devices_report(), spec({"rk*:*": {"max_size": "1MB"}, "onnx/fp32": {"max_size": "2MB"}}))
    assert [c.artifact for c in checks] == ["onnx/fp32"]


@pytest.mark.parametrize("selector, says", [
    ("pi5:", "selector 'pi5:' has nothing after ':'"),
    (":onnx/int8", "selector ':onnx/int8' has nothing before ':'"),
    ("a:b:c/d", "selector 'a:b:c/d' has more than one ':'"),
    ("pi 5:onnx/int8", "'pi 5' is not a device name"),
    ("pi5:onnx", "selector 'pi5:onnx': use [DEVICE:]TARGET/LABEL-OR-PRECISION"),
])
def test_malformed_selectors_are_one_line_naming_the_form(tmp_path, capsys, selector, says):
    (tmp_path / "budgets.yaml").write_text(f"version: 1\nlimits:\n  '{selector}': {{max_size: 1MB}}\n")
    (tmp_path / "r.json").write_text(json.dumps(devices_report()))
    assert main(["gate", str(tmp_path / "r.json"), "--budgets", str(tmp_path / "budgets.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "[DEVICE:]TARGET/LABEL-OR-PRECISION" in err[0]


def test_unknown_device_in_a_budgets_file_is_exit_2(tmp_path, capsys):
    (tmp_path / "budgets.yaml").write_text("version: 1\nlimits:\n  'pi6:onnx/int8': {max_size: 1MB}\n")
    (tmp_path / "r.json").write_text(json.dumps(devices_report()))
    assert load_budgets(tmp_path / "budgets.yaml").limits  # valid in form: the report decides
    assert main(["gate", str(tmp_path / "r.json"), "--budgets", str(tmp_path / "budgets.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(it has: local, pi5, qemu-a76)" in err[0]


def test_baseline_regressions_compare_rows_of_the_same_device():
    base = devices_report(devices=("local",), failed=False)       # a baseline of this machine only
    new = devices_report()
    for r in new["artifacts"]:
        if r["name"] == "onnx/int8-static":
            r["metrics"]["size_bytes"] = 300_000                    # local int8 grew 20%
    checks = checked(evaluate(new, spec({"*:onnx/int8-static": {"max_size_regression": 1}}), base))
    assert not checks[("onnx/int8-static", "max_size_regression")].passed
    assert checks[("onnx/int8-static", "max_size_regression")].measured == pytest.approx(20.0)
    pi5 = checks[("pi5:onnx/int8-static", "max_size_regression")]
    assert pi5.passed and pi5.detail == "skipped: no baseline for this artifact"  # not held against local


def test_latency_regression_on_an_emulated_row_is_skipped():
    base, new = devices_report(), devices_report()
    for r in new["artifacts"]:
        if r.get("device") == "qemu-a76":
            r["metrics"] = copy.deepcopy(r["metrics"]) | {"reference_p50_ms": 1.0}
            r["metrics"]["latency"][0]["samples_ms"] = [3 * x for x in r["metrics"]["latency"][0]["samples_ms"]]
    checks = checked(evaluate(new, spec({"qemu-a76:*": {"max_latency_regression": 5}}), base))
    assert all(c.passed and c.detail == EMULATED_SKIP for c in checks.values()) and len(checks) == 2


def test_junit_and_markdown_name_the_device_rows():
    report = devices_report()
    checks = evaluate(report, spec({"*:onnx/int8-static": {"max_size": "300KB", "max_p50_ms": 10}}))
    xml = ET.fromstring(ci_outputs.junit_xml(checks, "compressor.gate.digits"))
    classes = {case.get("classname") for case in xml.iter("testcase")}
    assert classes == {"compressor.gate.digits.onnx/int8-static", "compressor.gate.digits.pi5:onnx/int8-static",
                       "compressor.gate.digits.qemu-a76:onnx/int8-static"}
    comment = ci_outputs.comment_markdown(report, None, checks)
    assert "| pi5:onnx/int8-static | 4.000 |" in comment
    assert "| qemu-a76:onnx/int8-static | 50.000 (emulated) | - |" in comment
    assert "| pi5:onnx/int8-dynamic | failed |" in comment
    assert f"| ⏭️ | qemu-a76:onnx/int8-static | max_p50_ms | 10 ms | n/a | {EMULATED_SKIP} |" in comment
    skipped = xml.find("testsuite").get("skipped")
    assert skipped == "1" and next(xml.iter("skipped")).get("message") == EMULATED_SKIP

"""`compressor run` with `benchmark: {devices: [local, loop]}` over the real loopback
sshd: one row per artifact and device, the device's own accuracy and fidelity, reports
with the device dimension, and gates with a device prefix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sshd import write_devices_yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from hostile_cli import cli  # noqa: E402
from recipes import digits_head  # noqa: E402


@pytest.fixture(scope="module")
def device_run(tmp_path_factory, sshd):
    """One run of the digits CNN (fp32 and static int8 ONNX) on local and loop."""
    tmp = tmp_path_factory.mktemp("device-run")
    write_devices_yaml(tmp / "devices.yaml", sshd, threads=1)  # the recipe's inventory: beside it
    recipe = tmp / "r.yaml"
    recipe.write_text(digits_head("dev", calibration=128, evaluation=True) +
                      "steps:\n  - quantize: {variants: [{mode: static}]}\ntargets: [onnx]\n"
                      "benchmark: {threads: 1, runs: 30, warmup: 3, warmup_s: 0.05, devices: [local, loop], "
                      "inventory: devices.yaml}\n")
    from compressor.flows.cli import main

    code = main(["run", str(recipe), "--out", str(tmp / "out"), "--no-progress"])
    if code != 0:
        pytest.fail(f"run exited {code}")
    return tmp, json.loads((tmp / "out" / "report.json").read_text())


def test_every_artifact_has_a_row_per_device_with_its_own_accuracy_and_fidelity(device_run):
    _, report = device_run
    rows = {r["name"]: r for r in report["artifacts"]}
    assert set(rows) == {"onnx/fp32", "onnx/int8-static", "loop:onnx/fp32", "loop:onnx/int8-static"}
    for label in ("fp32", "int8-static"):
        here, there = rows[f"onnx/{label}"], rows[f"loop:onnx/{label}"]
        assert there["device"] == "loop" and there["status"] == "ok" and there["file"] == here["file"]
        assert there["metrics"]["accuracy"] == pytest.approx(here["metrics"]["accuracy"], abs=1e-9)
        assert there["fidelity"]["cosine_mean"] == pytest.approx(here["fidelity"]["cosine_mean"], abs=1e-6)
        assert there["fidelity"]["samples"] == here["fidelity"]["samples"] > 0
        assert there["metrics"]["threads"] == 1 and there["metrics"]["latency"][0]["runs"] >= 30
    assert rows["loop:onnx/int8-static"]["speedup_vs_fp32"] > 0  # against loop's own fp32
    assert report["schema_version"] == 2 and set(report["devices"]) == {"local", "loop"}
    assert report["devices"]["loop"]["kind"] == "ssh"


def test_reports_show_the_devices_side_by_side(device_run):
    tmp, _ = device_run
    md = (tmp / "out" / "report.md").read_text()
    assert "| loop:onnx/int8-static | int8 |" in md
    assert "| artifact | local | loop |" in md and "\n| onnx/int8-static | " in md
    assert "- **loop**: " in md and "Python 3." in md.split("- **loop**: ")[1]
    html = (tmp / "out" / "report.html").read_text()
    assert html.count("<svg") >= 3 and "loop" in html
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    assert sorted(a["artifact"] for a in manifest["artifacts"]) == ["onnx/fp32", "onnx/int8-static"]


def test_gate_selects_rows_by_device(capsys, device_run):
    tmp, _ = device_run
    ok = tmp / "ok.yaml"
    ok.write_text("version: 1\nlimits:\n  'loop:onnx/int8-static': {max_p50_ms: 1000, min_cosine: 0.99, "
                  "min_accuracy: 90}\n  'onnx/int8-static': {min_cosine: 0.99}\n")
    code, out, err = cli(capsys, "gate", tmp / "out" / "report.json", "--budgets", ok)
    assert code == 0, out + err
    tight = tmp / "tight.yaml"
    tight.write_text("version: 1\nlimits:\n  'loop:onnx/*': {max_p50_ms: 0.000001}\n")
    code, out, err = cli(capsys, "gate", tmp / "out" / "report.json", "--budgets", tight)
    assert code == 1 and "loop:onnx/fp32" in out and "loop:onnx/int8-static" in out
    missing = tmp / "missing.yaml"
    missing.write_text("version: 1\nlimits:\n  'pi5:onnx/fp32': {max_p50_ms: 5}\n")
    code, _, err = cli(capsys, "gate", tmp / "out" / "report.json", "--budgets", missing)
    assert code == 2 and "pi5" in err and "local, loop" in err


def test_compare_holds_one_device_against_another(capsys, device_run):
    tmp, _ = device_run
    report = tmp / "out" / "report.json"
    code, out, err = cli(capsys, "compare", report, report, "--map", "local=loop")
    assert code == 0 and "int8-static" in out, err

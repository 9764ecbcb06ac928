"""The emulated aarch64 device (tests/devices/arm64/build.sh: Debian arm64 under qemu-user,
reached over the real loopback sshd): the outputs of int8 artifacts through the ARM
kernels of onnxruntime and ai-edge-litert, held against this machine's; the latency is
marked emulated in every report and never gated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sshd import write_devices_yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from hostile_cli import cli  # noqa: E402
from recipes import digits_head  # noqa: E402

ARM_PYTHON = Path("/opt/compressor-arm64-python")


@pytest.fixture
def arm(sshd, tmp_path) -> Path:
    if not ARM_PYTHON.exists():
        pytest.skip(f"no emulated aarch64 device: {ARM_PYTHON} is missing (build it as root with "
                    "tests/devices/arm64/build.sh; .ci/run does)")
    return write_devices_yaml(tmp_path / "devices.yaml", sshd, name="arm", python=str(ARM_PYTHON), threads=1)


def test_probe_sees_an_emulated_cortex_a76(capsys, arm):
    code, out, err = cli(capsys, "devices", "probe", "arm", "--devices", arm, "--json")
    assert code == 0, err
    p = json.loads(out)["arm"]
    assert p["arch"] == "aarch64" and p["emulated"] is True and "Cortex-A76" in p["cpu"]
    assert {"numpy", "onnxruntime", "ai-edge-litert"} <= set(p["runtimes"])


@pytest.mark.slow  # over 30 s: `make test-slow` and CI run it
def test_a_run_measures_int8_fidelity_on_arm_and_the_gate_skips_its_latency(capsys, arm, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(digits_head("arm", calibration=128, evaluation=True) +
                      "steps:\n  - quantize: {variants: [{mode: static}]}\ntargets: [onnx, tflite]\n"
                      f"benchmark: {{threads: 1, runs: 10, warmup: 2, warmup_s: 0, devices: [local, arm], "
                      f"inventory: {arm}}}\n")
    code, out, err = cli(capsys, "run", recipe, "--out", tmp_path / "out", "--no-progress")
    assert code == 0, out + err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {r["name"]: r for r in report["artifacts"]}
    assert report["devices"]["arm"]["emulated"] is True and report["devices"]["arm"]["arch"] == "aarch64"
    for name in ("onnx/fp32", "onnx/int8-static", "tflite/fp32", "tflite/int8-static"):
        here, there = rows[name], rows[f"arm:{name}"]
        assert there["status"] == "ok" and there["metrics"]["emulated"] is True, there.get("error")
        # ARM kernels: not bit-identical to x86, but the same model
        assert there["fidelity"]["cosine_mean"] > 0.99 and there["fidelity"]["top1_agreement"] > 0.97
        assert abs(there["metrics"]["accuracy"] - here["metrics"]["accuracy"]) < 0.02
    assert "emulated" in (tmp_path / "out" / "report.md").read_text()
    budgets = tmp_path / "b.yaml"
    budgets.write_text("version: 1\nlimits:\n  'arm:*/int8*': {max_p50_ms: 0.000001, min_cosine: 0.99}\n")
    code, out, err = cli(capsys, "gate", tmp_path / "out" / "report.json", "--budgets", budgets,
                         "--json", tmp_path / "gate.json")
    assert code == 0, out + err
    checks = json.loads((tmp_path / "gate.json").read_text())["checks"]
    latency = [c for c in checks if c["limit_name"] == "max_p50_ms"]
    assert len(latency) == 2 and all("emulated" in c["detail"] for c in latency)

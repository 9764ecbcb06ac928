"""The example GitHub Actions workflow in docs/ci/, run step by step as written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from recipes import digits_head

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "ci" / "compressor-gate.yml"
RECIPE = digits_head("ci-digits", outputs=False, calibration=64, evaluation=True) + """\
steps:
  - quantize: {variants: [{mode: static}]}
targets: [onnx]
benchmark: {runs: 40, warmup: 5, warmup_s: 0.05, memory: false}
"""
BUDGETS = """\
version: 1
limits:
  "*": {max_accuracy_drop: 0.5, max_size_regression: 1, max_latency_regression: 25}
"""


def step(name: str) -> str:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["compress-and-gate"]["steps"]
    return next(s["run"] for s in steps if s.get("name") == name)


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A model repository as the workflow sees it, after its 'Run the recipe' step."""
    d = tmp_path_factory.mktemp("model-repo")
    (d / "recipe.yaml").write_text(RECIPE)
    (d / "budgets.yaml").write_text(BUDGETS)
    proc = sh(step("Run the recipe"), d)
    assert proc.returncode == 0, proc.stderr
    (d / "baselines").mkdir()
    shutil.copy(d / "runs" / "ci" / "report.json", d / "baselines" / "report.json")
    return d


def test_gate_step_passes_against_a_baseline_of_the_same_run(repo):
    proc = sh(step("Gate"), repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "runs" / "ci" / "gate.xml").is_file() and (repo / "runs" / "ci" / "comment.md").is_file()
    assert (repo / "runs" / "ci" / "report.html").is_file()


def test_gate_step_fails_when_the_model_grew(repo):
    base = json.loads((repo / "baselines" / "report.json").read_text())
    for row in base["artifacts"]:
        row["metrics"]["size_bytes"] = int(row["metrics"]["size_bytes"] * 0.9)  # the baseline was smaller
    (repo / "baselines" / "report.json").write_text(json.dumps(base))
    try:
        proc = sh(step("Gate"), repo)
    finally:
        shutil.copy(repo / "runs" / "ci" / "report.json", repo / "baselines" / "report.json")
    assert proc.returncode == 1
    assert "FAIL onnx/fp32: max_size_regression 1%, measured 11.11%, over by 10.1 points" in proc.stdout

"""A recipe with a prune step, through `compressor run`: the report's before/after and
per-layer facts, validation against the pruned model, and bad input as one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressor.flows.cli import main
from compressor.zoo.digits import WEIGHTS_PATH
from recipes import digits_head

ZOO = WEIGHTS_PATH
HEAD = digits_head("pruned", calibration=64, evaluation=True, train=True) + """\
targets: [onnx]
benchmark: {batch_sizes: [1], runs: 5, warmup: 1, warmup_s: 0, memory: false}
"""


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("prune-run")
    (d / "r.yaml").write_text(HEAD + """\
steps:
  - prune:
      unstructured: {sparsity: 0.8}
      finetune: {epochs: 4}
  - quantize:
      variants: [{mode: static}]
""")
    assert main(["run", str(d / "r.yaml"), "--out", str(d / "run"), "--no-progress"]) == 0
    return d / "run"


def test_report_has_pruning_before_after_and_per_layer_sparsity(sparse_run):
    report = json.loads((sparse_run / "report.json").read_text())
    p = report["pruning"]
    assert p["methods"] == ["unstructured"] and p["sparsity"] == pytest.approx(0.8, abs=0.002)
    assert p["macs_before"] == p["macs_after"] and p["params_before"] == p["params_after"]
    assert p["steps"][0]["finetune"]["epochs"] and p["steps"][0]["finetune"]["wall_s"] > 0
    ba = p["before_after"]["onnx"]
    assert ba["dense"]["p50_ms"] > 0 and ba["pruned"]["p50_ms"] > 0
    assert ba["gzip_ratio"] < 0.6 and ba["size_ratio"] > 0.95  # zeros compress; the raw file does not shrink
    assert set(report["per_layer"]["sparsity (%)"]) == {"features.0.0", "features.1.0", "features.3.0",
                                                         "features.4.0"}
    # Reference accuracy is the dense model's; deltas say what pruning cost.
    assert report["reference"]["accuracy"] == pytest.approx(p["accuracy_dense"])
    fp32 = report["artifacts"][0]
    assert fp32["accuracy_delta"] >= -0.01
    # Validation is against the pruned PyTorch model: the export is exact.
    assert fp32["fidelity"]["cosine_mean"] > 0.99999 and fp32["fidelity"]["top1_agreement"] == 1.0
    assert all(any("do not get faster" in n for n in r["notes"]) for r in report["artifacts"])
    md = (sparse_run / "report.md").read_text()
    assert "Pruning (unstructured)" in md and "gzip ratio" in md
    assert "sparsity (%)" in (sparse_run / "report.html").read_text()


def test_structured_run_reports_channels_and_macs(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(HEAD + """\
steps:
  - prune:
      structured: {ratio: 0.5, round_to: 8}
      finetune: {epochs: 4, lr: 0.002}
""")
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    p = report["pruning"]
    assert p["macs_after"] < 0.3 * p["macs_before"]
    assert report["per_layer"]["channels pruned (%)"]["features.0.0"] == 50.0
    assert report["artifacts"][0]["metrics"]["accuracy"] >= 0.97


BAD = [
    ("structured: {ratio: 1.0}", "less than 1"),
    ("unstructured: {sparsity: 1.5}", "less than 1"),
    ("structured: {ratio: 0.3}\n      ignore: [clasifier]", "did you mean 'classifier'"),
    ("structured: {ratio: 0.3, layers: {features.9.0: 0.5}}", "not a layer of the model"),
]


@pytest.mark.parametrize("body,message", BAD)
def test_bad_prune_input_is_one_line_and_exit_2(tmp_path, capsys, body, message):
    (tmp_path / "r.yaml").write_text(HEAD + f"steps:\n  - prune:\n      {body}\n")
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_untraceable_model_names_the_module_exit_2(tmp_path, capsys):
    (tmp_path / "weird.py").write_text("""\
import numpy as np, torch
from torch import nn

class Squash(nn.Module):
    def forward(self, x):
        return torch.from_numpy(np.tanh(x.detach().numpy()))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.squash, self.fc = nn.Conv2d(1, 8, 3), Squash(), nn.Linear(8, 10)
    def forward(self, x):
        return self.fc(self.squash(self.conv(x)).mean((2, 3)))

def make():
    return Net().eval()
""")
    (tmp_path / "r.yaml").write_text(HEAD.replace("compressor.zoo.digits:digits_cnn", "weird:make")
                                     .replace(f"  weights: {ZOO}\n", "") +
                                     "steps:\n  - prune:\n      structured: {ratio: 0.5}\n")
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "module 'squash' (Squash)" in err, err

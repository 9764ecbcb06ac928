"""Hostile cases, QAT resume: a `--resume` from a checkpoint of another recipe, a
truncated one or one damaged inside is one line on stderr, exit 2, and a QAT run writes
nothing to stderr at all. Importing torchao makes torch log a deprecation line
(`torch/utils/_pytree.py ... <enum 'KernelPreference'> is an Enum subclass`) once per
process, past any warnings filter, so only a real process shows it. The checkpoint is
read before the minutes of preparing and calibrating, so a refused resume costs seconds.

Small on purpose: 256 training digits, one epoch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from hostile_cli import cli, cli_process, one_line
from recipes import digits_head

RECIPE = digits_head("qat", evaluation=200, train=256) + """\
targets: [onnx]
benchmark: {batch_sizes: [1], runs: 5, warmup: 1, warmup_s: 0, memory: false}
steps:
  - qat:
      weight_bits: 4
      compare_ptq: false
      calibration_samples: 64
      finetune: {epochs: 1, lr: 0.001}
"""


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory) -> tuple[Path, str]:
    """A finished QAT run directory (real process) and the stderr of that run."""
    d = tmp_path_factory.mktemp("qat-resume")
    (d / "r.yaml").write_text(RECIPE)
    proc = cli_process("run", d / "r.yaml", "--out", d / "run", "--no-progress", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert (d / "run" / "checkpoints" / "qat-x86.pt").is_file()
    return d / "run", proc.stderr


def copy_run(qat_run, tmp_path: Path) -> Path:
    shutil.copytree(qat_run[0], tmp_path / "run")
    return tmp_path / "run" / "checkpoints" / "qat-x86.pt"


def test_a_qat_run_writes_nothing_to_stderr(qat_run):
    assert qat_run[1] == ""


def test_resume_with_a_changed_recipe_is_exactly_one_line(qat_run, tmp_path):
    checkpoint = copy_run(qat_run, tmp_path)
    (tmp_path / "r.yaml").write_text(RECIPE.replace("lr: 0.001", "lr: 0.002"))
    proc = cli_process("run", tmp_path / "r.yaml", "--out", tmp_path / "run", "--resume", "--no-progress",
                       cwd=tmp_path)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (f"compressor: error: checkpoint {checkpoint} was written "
                                     "for a different model or recipe (fingerprint mismatch); delete it, or run "
                                     "without --resume to start over")


def test_resume_from_a_truncated_checkpoint_is_exactly_one_line(qat_run, tmp_path):
    checkpoint = copy_run(qat_run, tmp_path)
    checkpoint.write_bytes(checkpoint.read_bytes()[:4096])
    (tmp_path / "r.yaml").write_text(RECIPE)
    proc = cli_process("run", tmp_path / "r.yaml", "--out", tmp_path / "run", "--resume", "--no-progress",
                       cwd=tmp_path)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert f"checkpoint {checkpoint} cannot be read (" in line
    assert line.endswith("); delete it to start over")


def test_resume_from_a_checkpoint_damaged_inside_is_one_line(qat_run, tmp_path, capsys):
    """Its fingerprint matches, its module state is another model's: refused, not a
    traceback from load_state_dict."""
    checkpoint = copy_run(qat_run, tmp_path)
    saved = torch.load(checkpoint, weights_only=True)
    saved["module"] = {"classifier.weight": torch.zeros(3, 3)}
    torch.save(saved, checkpoint)
    (tmp_path / "r.yaml").write_text(RECIPE)
    code, _, err = cli(capsys, "run", tmp_path / "r.yaml", "--out", tmp_path / "run", "--resume", "--no-progress")
    assert code == 2
    line = one_line(err)
    assert f"checkpoint {checkpoint} does not fit this run's model (RuntimeError: Error(s) in loading " in line
    assert line.endswith("delete it to start over")

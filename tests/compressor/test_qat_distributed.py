"""Distributed QAT: 2 processes on gloo launched by torchrun against one process with
the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

JOB = Path(__file__).with_name("qat_ddp_job.py")


@pytest.mark.slow  # over 30 s: `make test-slow` and CI run it
def test_two_gloo_processes_match_one(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    env = {**os.environ, "COMPRESSOR_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    procs = [subprocess.Popen(launcher + [str(JOB), str(multi)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True),
             subprocess.Popen([sys.executable, str(JOB), str(single)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    one = torch.load(single / "result.pt", weights_only=True)
    two = torch.load(multi / "result.pt", weights_only=True)
    assert two["world"] == 2 and one["world"] == 1
    # Same global batches and gradients (averaged by DDP); what differs is float summation
    # order and the activation observers, which each process runs on its half-batch.
    assert abs(one["accuracy"] - two["accuracy"]) <= 0.01
    worst = 0.0
    for k, a in one["state"].items():
        b = two["state"][k]
        if a.is_floating_point():
            worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-6)))
    print(f"accuracy {one['accuracy']:.4f} (1 process) vs {two['accuracy']:.4f} (2); worst relative weight difference {worst:.3g}")
    assert worst < 0.05, f"largest relative weight difference {worst:.3g}"
    assert (multi / "ckpt.pt").is_file()  # rank 0 wrote the checkpoint

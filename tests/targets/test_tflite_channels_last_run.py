"""`channels_last: true` through `compressor run`: the digits recipe gives NHWC TFLite
artifacts; validation and the harness's accuracy feed them NHWC (and read NHWC outputs
back), so they validate against the NCHW PyTorch model and keep its accuracy."""

import json

import numpy as np
import pytest

from compressor.flows.cli import main
from compressor.errors import InputShapeError
from recipes import digits_head
from targets.base import Device
from targets.tflite.runtime import LiteSession

RECIPE = digits_head("nhwc", calibration=128, evaluation=True) + """\
steps:
  - quantize:
      variants: [{mode: static}, {mode: fp16}]
targets: {tflite: {channels_last: true}}
benchmark: {threads: 1, batch_sizes: [1], warmup: 2, warmup_s: 0, runs: 5, memory: false}
"""


def test_channels_last_artifacts_validate_and_keep_accuracy(write_recipe, tmp_path, digits_test):
    recipe = write_recipe(RECIPE)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    rows = {r["label"]: r for r in report["artifacts"]}
    assert sorted(rows) == ["fp16", "fp32", "int8-static"] and all(r["status"] == "ok" for r in rows.values())
    ref_acc = report["reference"]["accuracy"]
    assert ref_acc > 0.95
    for r in rows.values():
        assert r["export"]["nhwc_inputs"] == ["pixels"] and r["export"]["nhwc_outputs"] == []
        s = LiteSession(tmp_path / "run" / r["file"], Device(), 1)
        assert s.inputs[0].shape == (1, 8, 8, 1)  # the file itself is NHWC
        assert r["metrics"]["inputs"][0]["shape"] == [1, 8, 8, 1]
        assert r["metrics"]["eval_samples"] == len(digits_test[1])
        assert ref_acc - r["metrics"]["accuracy"] <= 0.005, r["label"]
    assert rows["fp32"]["fidelity"]["max_abs"] < 1e-4
    assert rows["int8-static"]["fidelity"]["cosine_mean"] > 0.98
    # Without the transposition the artifact refuses the recipe's NCHW samples.
    s = LiteSession(tmp_path / "run" / rows["fp32"]["file"], Device(), 1)
    with pytest.raises(InputShapeError, match="pixels"):
        s.run({"pixels": digits_test[0][:1]})


def test_nhwc_outputs_come_back_in_the_declared_layout(tmp_path):
    """A model with a 4-D (feature map) output, exported channels-last: its NHWC input and
    output are recorded, and feeds_for/outputs_from give back PyTorch's NCHW numbers."""
    import torch

    import targets
    from compressor.model import Model
    from compressor.config.recipe import InputSpec
    from targets.layout import feeds_for, outputs_from

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.ReLU()).eval()
    model = Model(module=module, inputs=[InputSpec(name="image", shape=[1, 3, 6, 7])], output_names=["features"])
    art = targets.get("tflite").export(model, None, tmp_path / "fm", {"channels_last": True}, None)
    assert art.meta["nhwc_inputs"] == ["image"] and art.meta["nhwc_outputs"] == ["features"]
    x = np.random.default_rng(0).random((1, 3, 6, 7), dtype=np.float32)
    s = LiteSession(art.path, Device(), 1)
    got = outputs_from(s.run(feeds_for({"image": x}, art.meta)), s.output_names, art.meta)[0]
    assert got.shape == (1, 5, 6, 7)
    np.testing.assert_allclose(got, model.run({"image": x})[0], atol=1e-5)

"""int8 of a model whose activations are tiny (1e-6 and below, as in random-weight
MobileNetV2's late layers): the observers' smallest scale must not round them to zero."""

import numpy as np
import pytest
import torch
from torch import nn

import targets
from compressor.data import Dataset
from compressor.model import Model
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import InputSpec
from targets.base import Device, run_batched
from targets.validate import compare


def tiny_activation_model() -> Model:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    with torch.no_grad():
        for m in module:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(1e-2)  # each layer shrinks the signal: 1e-2, 1e-4, 1e-6 after three
                m.bias.zero_()
    return Model(module=module, inputs=[InputSpec(name="input", shape=[1, 3, 16, 16])])


@pytest.mark.parametrize("target_name", ["torchscript", "tflite"])
def test_tiny_activations_survive_int8(target_name, tmp_path):
    model = tiny_activation_model()
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    val = {"input": rng.standard_normal((8, 3, 16, 16)).astype(np.float32)}
    ref = model.run(val)
    assert np.abs(ref[0]).max() < 1e-5  # below both runtimes' former smallest scale
    target = targets.get(target_name)
    art = target.export(model, QuantVariant(mode="static", calibration_samples=16), tmp_path / "m", {},
                        Dataset({"input": calib}))
    got = run_batched(target.open_session(art.path, Device(), 1), val, 1)
    fid = compare(ref, got, ["output"])
    assert not fid.outputs[0].all_zero
    assert fid.cosine > 0.99

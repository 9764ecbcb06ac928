"""Hostile catalog, executorch: .pte files cut short, emptied or of another format (refused
in one line by check_file and by `compressor bench`), an op XNNPACK cannot take (recorded
for fp32, refused for int8 when its int8 neighbours would fall outside the delegate), and
the run flow end to end with the target in a recipe."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

import targets
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import InputSpec
from compressor.data import Dataset
from compressor.errors import ArtifactError, UnsupportedOpError
from compressor.model import Model
from hostile_cli import refused
from targets.base import Device

FAST = ["--runs", "3", "--warmup", "0", "--warmup-s", "0", "--no-isolate"]


@pytest.fixture(scope="module")
def pte(tmp_path_factory, digits_model):
    out = tmp_path_factory.mktemp("pte")
    return targets.get("executorch").export(digits_model, None, out / "digits", {}, None).path


@pytest.mark.parametrize("content", ["empty", "truncated", "header-only", "onnx-bytes"])
def test_bad_pte_files_are_refused_in_one_line(pte, tmp_path, capsys, content):
    good = pte.read_bytes()
    bad = tmp_path / "bad.pte"
    bad.write_bytes({"empty": b"", "truncated": good[: len(good) // 2], "header-only": good[:40],
                     "onnx-bytes": b"\x08\x07\x12\x07pytorch" + bytes(64)}[content])
    with pytest.raises(ArtifactError) as info:
        targets.get("executorch").check_file(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    line = refused(capsys, "bench", str(bad), *FAST, says=str(bad))
    assert "Traceback" not in line


def test_a_missing_pte_is_named(tmp_path):
    with pytest.raises(ArtifactError, match="no such file"):
        targets.get("executorch").check_file(tmp_path / "none.pte")


class CumsumNet(nn.Module):
    """A convolution, a cumulative sum (no XNNPACK kernel) and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.cumsum(self.conv(x), 1).flatten(1))


@pytest.fixture(scope="module")
def cumsum_model():
    torch.manual_seed(0)
    return Model(module=CumsumNet().eval(), inputs=[InputSpec(name="x", shape=[1, 1, 8, 8])])


def test_fp32_records_the_op_xnnpack_cannot_take_and_runs_it(cumsum_model, tmp_path):
    art = targets.get("executorch").export(cumsum_model, None, tmp_path / "cs", {}, None)
    assert "aten.cumsum.default" in art.meta["undelegated_ops"] and "portable" in art.meta["undelegated_note"]
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    got = targets.get("executorch").open_session(art.path, Device("cpu"), 1).run({"x": x})[0]
    assert np.abs(got - cumsum_model.run({"x": x})[0]).max() < 1e-4


def test_int8_runs_the_float_op_between_two_delegates(cumsum_model, tmp_path):
    """XNNPACK takes the quantize/dequantize pairs around cumsum into its delegates: the
    op runs in float between them, which the artifact records, and the result holds."""
    data = Dataset({"x": np.random.default_rng(1).random((32, 1, 8, 8), dtype=np.float32)})
    art = targets.get("executorch").export(cumsum_model, QuantVariant(mode="static"), tmp_path / "cs", {}, data)
    assert "aten.cumsum.default" in art.meta["undelegated_ops"]
    assert not [op for op in art.meta["undelegated_ops"] if "quant" in op]
    x = data.inputs["x"][:8]
    got = targets.get("executorch").open_session(art.path, Device("cpu"), 1).run({"x": x})[0]
    ref = cumsum_model.run({"x": x})[0]
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.mean() >= 0.99


def test_an_int8_op_this_runtime_has_no_kernel_for_is_refused_in_one_line():
    """The pybindings carry no quantized_decomposed kernels: such an op outside the delegate
    would stop the method loading, so the export names it and what to do."""
    from targets.executorch.export import refuse_missing_kernels

    refuse_missing_kernels(["aten.cumsum.default", "aten.view_copy.default"], "fp32")  # portable kernels exist
    with pytest.raises(UnsupportedOpError) as info:
        refuse_missing_kernels(["quantized_decomposed.dequantize_per_tensor.default"], "int8-static")
    text = str(info.value)
    assert "\n" not in text and "dequantize_per_tensor" in text and "exclude_ops" in text

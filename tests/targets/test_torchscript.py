"""The TorchScript target on the shipped digits CNN and small purpose-built modules:
real torch.jit sessions, real quantized kernels, real digits data."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import targets
from compressor.data import Dataset
from compressor.errors import ExportError, RecipeError
from compressor.model import Model
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import InputSpec
from targets.base import Device
from fixed_batch import FixedBatch


@pytest.fixture(scope="module")
def ts_artifacts(tmp_path_factory, digits_model, calibration_data) -> dict:
    target = targets.get("torchscript")
    out = tmp_path_factory.mktemp("torchscript")
    arts = {"fp32": target.export(digits_model, None, out / "digits.fp32", {}, None)}
    for v in (QuantVariant(mode="static"), QuantVariant(name="static-percentile", mode="static",
                                                        calibration="percentile"), QuantVariant(mode="dynamic")):
        arts[v.label] = target.export(digits_model, v, out / f"digits.{v.label}", {}, calibration_data)
    return arts


def open_(path):
    return targets.get("torchscript").open_session(path, Device("cpu"), 2)


def graph_ops(path) -> str:
    return str(torch.jit.load(str(path)).graph)


def test_fp32_matches_pytorch_and_declares_a_batch_axis(ts_artifacts, digits_test, torch_test_logits):
    session = open_(ts_artifacts["fp32"].path)
    assert [s.name for s in session.inputs] == ["pixels"] and session.output_names == ["logits"]
    assert session.inputs[0].batch_dynamic and session.inputs[0].shape[1:] == (1, 8, 8)
    got = session.run({"pixels": digits_test[0]})[0]
    assert np.abs(got - torch_test_logits).max() < 1e-4
    assert ts_artifacts["fp32"].meta["capture"] == "trace"


@pytest.mark.parametrize("label", ["int8-static", "static-percentile"])
def test_static_int8_keeps_accuracy_within_half_a_point(ts_artifacts, digits_test, torch_test_logits, top1, label):
    x, y = digits_test
    got = open_(ts_artifacts[label].path).run({"pixels": x})[0]
    assert top1(got, y) >= top1(torch_test_logits, y) - 0.005
    assert ts_artifacts[label].meta["observer"] == ("MinMaxObserver" if label == "int8-static" else "HistogramObserver")


def test_static_int8_runs_real_quantized_kernels_and_is_small(ts_artifacts):
    ops = graph_ops(ts_artifacts["int8-static"].path)
    assert "quantized::conv2d_relu" in ops and "quantized::linear" in ops
    assert "aten::conv2d" not in ops and "fake_quantize" not in ops
    assert ts_artifacts["int8-static"].size_bytes <= 0.35 * ts_artifacts["fp32"].size_bytes


def test_dynamic_int8_quantizes_the_linear_layer(ts_artifacts, digits_test, torch_test_logits, top1):
    assert "quantized::linear_dynamic" in graph_ops(ts_artifacts["int8-dynamic"].path)
    x, y = digits_test
    got = open_(ts_artifacts["int8-dynamic"].path).run({"pixels": x})[0]
    assert top1(got, y) >= top1(torch_test_logits, y) - 0.005


def test_archive_loads_and_runs_without_project_code(ts_artifacts, digits_test, tmp_path):
    """What a deployment does: torch.jit.load in a bare interpreter (-I: no cwd, no
    user site), the project's packages never imported."""
    path = ts_artifacts["int8-static"].path
    np.save(tmp_path / "x.npy", digits_test[0][:16])
    code = ("import json, sys, numpy as np, torch\n"
            f"m = torch.jit.load({str(path)!r})\n"
            f"y = m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy()\n"
            "print(json.dumps({'shape': list(y.shape), 'project': [k for k in sys.modules "
            "if k.split('.')[0] in ('compressor', 'targets', 'benchmarks')]}))")
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"shape": [16, 10], "project": []}
    with zipfile.ZipFile(path) as z:
        meta = json.loads(next(z.read(n) for n in z.namelist() if n.endswith("extra/compressor.json")))
    assert meta["inputs"][0] == {"name": "pixels", "shape": ["batch", 1, 8, 8], "dtype": "float32"}


def test_exclude_keeps_the_named_layer_in_float(digits_model, calibration_data, tmp_path):
    target = targets.get("torchscript")
    art = target.export(digits_model, QuantVariant(mode="static", exclude=["classifier"]), tmp_path / "ex", {},
                        calibration_data)
    ops = graph_ops(art.path)
    assert "quantized::conv2d_relu" in ops and "quantized::linear" not in ops and "aten::linear" in ops
    with pytest.raises(RecipeError, match=r"exclude names \['clasifier'\]"):
        target.export(digits_model, QuantVariant(mode="static", exclude=["clasifier"]), tmp_path / "bad", {},
                      calibration_data)


class ConvBnReLU6(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                                  nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def test_relu6_is_fused_into_the_convolution_and_still_clamps_at_six(tmp_path):
    torch.manual_seed(0)
    module = ConvBnReLU6().eval()
    with torch.no_grad():  # large activations, so that ReLU6's clamp at 6 matters
        module.body[0].weight.mul_(20)
    model = Model(module=module, inputs=[InputSpec(name="x", shape=[1, 3, 8, 8])])
    data = Dataset({"x": np.random.default_rng(0).random((64, 3, 8, 8), dtype=np.float32)})
    art = targets.get("torchscript").export(model, QuantVariant(mode="static"), tmp_path / "r6", {}, data)
    assert art.meta["relu6_fused"] == 2
    ops = graph_ops(art.path)
    assert ops.count("quantized::conv2d_relu") == 2 and "hardtanh" not in ops
    x = data.inputs["x"][:16]
    ref = model.run({"x": x})[0]
    got = open_(art.path).run({"x": x})[0]
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.99


class SharedReLU6(nn.Module):
    """One ReLU6 module called after a convolution and again after an add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.conv2, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.ReLU6()

    def forward(self, x):
        y = self.act(self.conv(x))
        return self.act(y + self.conv2(y)).flatten(1)


class ConvReLU6(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6()

    def forward(self, x):
        return self.act(self.conv(x)).flatten(1)


@pytest.mark.parametrize("module_cls, exclude", [(SharedReLU6, []), (ConvReLU6, ["conv"])],
                         ids=["reused-after-an-add", "after-an-excluded-conv"])
def test_relu6_that_cannot_be_fused_still_clamps_at_six(tmp_path, module_cls, exclude):
    # Fusing means the int8 output range of the convolution does the clamping; a ReLU6
    # module reused elsewhere, or one after a float convolution, has no such range.
    torch.manual_seed(0)
    module = module_cls().eval()
    with torch.no_grad():
        module.conv.weight.mul_(20)  # pre-activations up to ~12: the clamp at 6 matters
    model = Model(module=module, inputs=[InputSpec(name="x", shape=[1, 3, 8, 8])])
    data = Dataset({"x": np.random.default_rng(0).random((64, 3, 8, 8), dtype=np.float32)})
    art = targets.get("torchscript").export(model, QuantVariant(mode="static", exclude=exclude), tmp_path / "r6",
                                            {}, data)
    assert art.meta["relu6_fused"] == 0
    x = data.inputs["x"][:16]
    ref, got = model.run({"x": x})[0], open_(art.path).run({"x": x})[0]
    assert ref.max() == pytest.approx(6.0) and got.max() < 6.25  # one int8 step above 6 at most (was 11 to 13)
    assert np.abs(got - ref).max() < 0.5


def test_int8_of_a_fixed_batch_model_fails_in_one_line_naming_the_batch(tmp_path):
    model = Model(module=FixedBatch().eval(), inputs=[InputSpec(name="x", shape=[1, 3, 8, 8])])
    data = Dataset({"x": np.random.default_rng(0).random((20, 3, 8, 8), dtype=np.float32)})
    with pytest.raises(ExportError, match=r"calibrating on batches of 16 \(RuntimeError: shape .*any batch size") as info:
        targets.get("torchscript").export(model, QuantVariant(mode="static"), tmp_path / "fixed", {}, data)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent: a trace would keep one branch
            return x * 2
        return -x


def test_data_dependent_branch_is_scripted_in_auto_mode_and_refused_in_trace_mode(tmp_path):
    model = Model(module=Branchy(), inputs=[InputSpec(name="x", shape=[1, 4])])
    target = targets.get("torchscript")
    art = target.export(model, None, tmp_path / "b", {}, None)
    assert art.meta["capture"] == "script"
    session = open_(art.path)
    ones = np.ones((2, 4), np.float32)
    assert session.run({"x": ones})[0].tolist() == (2 * ones).tolist()
    assert session.run({"x": -ones})[0].tolist() == ones.tolist()
    with pytest.raises(ExportError, match=r"data-dependent control flow at test_torchscript\.py:\d+"):
        target.export(model, None, tmp_path / "t", {"capture": "trace"}, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pt"]  # nothing half-written


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(6, 16, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y[:, -1])


def test_dynamic_int8_lstm_runs_quantized_and_close_to_float(tmp_path):
    torch.manual_seed(0)
    model = Model(module=TinyLSTM().eval(), inputs=[InputSpec(name="seq", shape=[1, 5, 6])])
    art = targets.get("torchscript").export(model, QuantVariant(mode="dynamic"), tmp_path / "lstm", {}, None)
    assert art.meta["layers"] == 2
    assert "quantized_lstm" in graph_ops(art.path) or "quantized::" in graph_ops(art.path)
    x = np.random.default_rng(0).standard_normal((8, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(open_(art.path).run({"seq": x})[0], model.run({"seq": x})[0], atol=0.05)

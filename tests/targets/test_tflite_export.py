"""PyTorch -> TFLite on the shipped digits CNN: every precision through the real
interpreter, against the PyTorch model, on the real held-out digits."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import targets
from compressor.errors import UnsupportedOpError
from compressor.model import Model
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import InputSpec
from targets.base import Device, run_batched
from targets.tflite import flatbuf
from targets.tflite.runtime import LiteSession


@pytest.fixture(scope="session")
def tflite_artifacts(tmp_path_factory, digits_model, calibration_data) -> dict:
    """fp32 and every TFLite lowering of the digits CNN, converted once: label -> Artifact."""
    target = targets.get("tflite")
    out = tmp_path_factory.mktemp("tflite-artifacts")
    arts = {"fp32": target.export(digits_model, None, out / "digits.fp32", {}, calibration_data)}
    for v, opts in ((QuantVariant(mode="static"), {"io": "float"}),
                    (QuantVariant(name="int8-io", mode="static"), {"io": "int8"}),
                    (QuantVariant(mode="dynamic"), {}), (QuantVariant(mode="fp16"), {})):
        arts[v.label] = target.export(digits_model, v, out / f"digits.{v.label}", opts, calibration_data,
                                      base=arts["fp32"])
    return arts


def run(path, x):
    session = LiteSession(path, Device(), 2)
    return run_batched(session, {session.inputs[0].name: x}, 64)[0]


def cosine(a, b):
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())


def test_fp32_matches_pytorch(tflite_artifacts, digits_test, torch_test_logits):
    got = run(tflite_artifacts["fp32"].path, digits_test[0])
    assert np.abs(got - torch_test_logits).max() < 1e-4


def test_session_reports_runtime_xnnpack_and_recipe_names(tflite_artifacts):
    session = LiteSession(tflite_artifacts["fp32"].path, Device(), 2)
    assert session.runtime.startswith("ai-edge-litert ") and session.runtime.endswith("(XNNPACK)")
    assert [(s.name, s.shape, s.dtype) for s in session.inputs] == [("pixels", (1, 1, 8, 8), "float32")]
    assert session.output_names == ["logits"]


@pytest.mark.parametrize("label,io_dtype", [("int8-static", np.float32), ("int8-io", np.int8)])
def test_full_integer_int8_keeps_accuracy_with_float_and_int8_io(tflite_artifacts, digits_test, torch_test_logits,
                                                                 top1, label, io_dtype):
    x, y = digits_test
    art = tflite_artifacts[label]
    interp = LiteSession(art.path, Device(), 1)._interp
    assert interp.get_input_details()[0]["dtype"] == io_dtype
    assert interp.get_output_details()[0]["dtype"] == io_dtype
    assert art.meta["io"] == ("float" if label == "int8-static" else "int8")
    loss = top1(torch_test_logits, y) - top1(run(art.path, x), y)
    assert loss <= 0.005, f"{label}: {100 * loss:.2f} points lost"
    assert cosine(run(art.path, x), torch_test_logits) >= 0.99


def test_full_integer_weights_and_activations_are_int8(tflite_artifacts):
    m = flatbuf.read(tflite_artifacts["int8-static"].path)
    sg = m.subgraphs[0]
    conv_inputs = [sg.tensors[op.inputs[0]].type for op in sg.operators
                   if m.operatorCodes[op.opcodeIndex].builtinCode in (3, 4)]  # CONV_2D, DEPTHWISE_CONV_2D
    assert conv_inputs and set(conv_inputs) == {9}  # TensorType.INT8


@pytest.mark.parametrize("label", ["int8-dynamic", "fp16"])
def test_dynamic_and_fp16_keep_cosine(tflite_artifacts, digits_test, torch_test_logits, label):
    assert cosine(run(tflite_artifacts[label].path, digits_test[0]), torch_test_logits) >= 0.999


def test_int8_is_at_most_035_of_fp32_and_fp16_about_half(tflite_artifacts):
    fp32 = tflite_artifacts["fp32"].size_bytes
    assert tflite_artifacts["int8-static"].size_bytes <= 0.35 * fp32
    assert tflite_artifacts["fp16"].size_bytes <= 0.55 * fp32


def test_export_leaves_only_the_artifacts_in_the_output_dir(tflite_artifacts):
    out = tflite_artifacts["fp32"].path.parent
    assert {p.name for p in out.iterdir()} == {a.path.name for a in tflite_artifacts.values()}


def test_compaction_is_exact(tflite_artifacts, digits_test, tmp_path):
    """Re-writing an artifact with shared zero points and short names changes no output bit."""
    src = tflite_artifacts["int8-static"].path
    m = flatbuf.read(src)
    sg = m.subgraphs[0]
    for i, t in enumerate(sg.tensors):  # undo the short names, then compact again
        if i not in sg.inputs + sg.outputs:
            t.name = f"a.rather.long.generated.name.{i}".encode()
    flatbuf.write(m, tmp_path / "long.tflite")
    m = flatbuf.read(tmp_path / "long.tflite")
    assert flatbuf.compact(m)["renamed_tensors"] > 5
    size = flatbuf.write(m, tmp_path / "short.tflite")
    assert size < (tmp_path / "long.tflite").stat().st_size
    x = digits_test[0][:32]
    np.testing.assert_array_equal(run(tmp_path / "short.tflite", x), run(src, x))


def test_channels_last_takes_and_gives_nhwc(tmp_path, digits_model, digits_test, torch_test_logits):
    art = targets.get("tflite").export(digits_model, None, tmp_path / "nhwc", {"channels_last": True}, None)
    session = LiteSession(art.path, Device(), 2)
    assert session.inputs[0].shape == (1, 8, 8, 1)
    x = digits_test[0][:16]
    got = run_batched(session, {"pixels": x.transpose(0, 2, 3, 1)}, 1)[0]
    assert np.abs(got - torch_test_logits[:16]).max() < 1e-4


class Det(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.det(x)


def test_an_op_the_converter_cannot_lower_is_named_with_a_target_that_works(tmp_path):
    model = Model(module=Det().eval(), inputs=[InputSpec(name="m", shape=[2, 3, 3])])
    with pytest.raises(UnsupportedOpError) as err:
        targets.get("tflite").export(model, None, tmp_path / "det", {}, None)
    msg = str(err.value)
    assert "\n" not in msg and "aten._linalg_det" in msg and "onnx target exports this model" in msg
    assert list(tmp_path.iterdir()) == []


def test_importing_the_target_loads_no_converter_runtime_or_tensorflow():
    code = ("import json, sys, targets, targets.tflite\n"
            "print(json.dumps([m for m in ('tensorflow', 'litert_torch', 'ai_edge_litert', 'torch') "
            "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_byte_breakdown_adds_up_and_counts_each_weight_once(tflite_artifacts, digits_model):
    """targets.tflite.bytes: the int8 file's categories sum to its size; the int8 weights,
    int32 biases and per-channel scales are exactly what the digits CNN's layers hold."""
    from targets.tflite.bytes import breakdown

    path = tflite_artifacts["int8-static"].path
    parts = breakdown(path)
    assert sum(parts.values()) == path.stat().st_size and parts["tables, shapes, operators, padding"] > 0
    layers = [m for m in digits_model.module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    channels = sum(m.weight.shape[0] for m in layers)
    assert parts["weight data"] == sum(m.weight.numel() + 4 for m in layers)  # int8: a byte each
    assert parts["bias data"] == sum(4 * m.weight.shape[0] + 4 for m in layers)  # int32
    assert parts["weight scales"] == parts["bias scales"] == 4 * channels + 4 * len(layers)
    fp32 = breakdown(tflite_artifacts["fp32"].path)
    assert fp32["weight data"] == sum(4 * m.weight.numel() + 4 for m in layers) and "weight scales" not in fp32

"""Hostile cases, ONNX file sources: a file that is missing, empty, truncated, random, of
another format, rejected by the checker, or whose external data points outside its own
folder (or nowhere) is refused before anything is written: exit 2, one line naming the
problem, no run directory. So are the recipe's asks a file cannot meet."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from compressor.data import digits_arrays
from hostile_cli import debris, refused

RECIPE = """version: 1
name: t
model:
  onnx: '{file}'
{extra}data:
  calibration: {{source: digits, split: train, limit: 32}}
steps:
  - quantize:
      variants: [{variant}]
targets: {{onnx: {{}}}}
benchmark: {{runs: 5, warmup: 1, warmup_s: 0, memory: false}}
"""


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A real model: a small conv net on the digits' 8x8 pixels, legacy-exported."""
    import torch

    d = tmp_path_factory.mktemp("onnx-hostile")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(144, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(d / "good.onnx"), dynamo=False,
                          input_names=["pixels"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"pixels": {0: "N"}})
    return d / "good.onnx"


def refuse(tmp_path: Path, capsys, file, says, variant="{mode: static}", extra="") -> str:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(file=file, variant=variant, extra=extra))
    out = tmp_path / "run"
    line = refused(capsys, "run", recipe, "--out", out, "--no-progress", says=says)
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    assert debris(tmp_path) == []
    return line


def test_missing_file(tmp_path, capsys):
    refuse(tmp_path, capsys, "nope.onnx", ("nope.onnx", "no such file"))


def test_empty_file(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"")
    refuse(tmp_path, capsys, "m.onnx", "empty (0 bytes)")


def test_truncated_file(tmp_path, capsys, good):
    data = good.read_bytes()
    (tmp_path / "m.onnx").write_bytes(data[: len(data) // 2])
    refuse(tmp_path, capsys, "m.onnx", ("m.onnx", "truncated"))


def test_random_bytes(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    refuse(tmp_path, capsys, "m.onnx", "not an ONNX model")


def test_a_tflite_file_given_as_onnx_says_what_it_is(tmp_path, capsys):
    from targets.tflite.keras import tensorflow

    tf = tensorflow()
    fn = tf.function(lambda x: tf.nn.relu(x) * 2.0, input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    flat = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    (tmp_path / "m.onnx").write_bytes(flat)
    refuse(tmp_path, capsys, "m.onnx", ("TFLite flatbuffer", "tflite:"))


def test_a_torch_pickle_given_as_onnx(tmp_path, capsys):
    import pickle

    (tmp_path / "m.onnx").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    refuse(tmp_path, capsys, "m.onnx", "pickle")


def test_a_graph_the_checker_rejects(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["not_defined"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    refuse(tmp_path, capsys, "m.onnx", "the ONNX checker rejects it")


def _external(tmp_path: Path, good: Path, location: str) -> Path:
    """The good model with its weights in external data at `location` (written relative to
    the model's folder, then pointed wherever the case wants)."""
    import onnx

    model = onnx.load(str(good))
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    model = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(model, str(tmp_path / "m.onnx"))
    return tmp_path / "m.onnx"


def test_external_data_at_an_absolute_path(tmp_path, capsys, good):
    secret = tmp_path.parent / f"{tmp_path.name}-secret.bin"
    secret.write_bytes(b"\0" * 4096)
    _external(tmp_path, good, str(secret))
    refuse(tmp_path, capsys, "m.onnx", ("absolute path", "beside the model"))


def test_external_data_up_the_tree(tmp_path, capsys, good):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "w.bin").write_bytes(b"\0" * 4096)
    _external(model_dir, good, "../w.bin")
    refuse(tmp_path, capsys, "model/m.onnx", "outside the model's folder")


def test_external_data_through_a_symlink_out_of_the_folder(tmp_path, capsys, good):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    _external(model_dir, good, "w.bin")
    outside = tmp_path / "elsewhere.bin"
    os.replace(model_dir / "w.bin", outside)
    (model_dir / "w.bin").symlink_to(outside)
    refuse(tmp_path, capsys, "model/m.onnx", "links outside the model's folder")


def test_external_data_missing(tmp_path, capsys, good):
    _external(tmp_path, good, "w.bin")
    (tmp_path / "w.bin").unlink()
    refuse(tmp_path, capsys, "m.onnx", ("'w.bin'", "missing"))


def test_external_data_truncated(tmp_path, capsys, good):
    _external(tmp_path, good, "w.bin")
    with open(tmp_path / "w.bin", "r+b") as f:
        f.truncate(100)
    refuse(tmp_path, capsys, "m.onnx", "truncated")


def test_exclude_by_a_pytorch_module_name_is_refused_up_front(tmp_path, capsys, good):
    line = refuse(tmp_path, capsys, good, "by ONNX node name", variant="{mode: static, exclude: ['0']}")
    assert "'0'" in line


def test_symbolic_dim_past_the_batch_needs_the_recipe(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    refuse(tmp_path, capsys, "m.onnx", ("input 'x'", "symbolic dim 1 ('width')", "fix it in the recipe"))


def test_recipe_input_that_contradicts_the_file(tmp_path, capsys, good):
    refuse(tmp_path, capsys, good, ("dim 2 is 9", "fixed at 8"),
           extra="  inputs: [{name: pixels, shape: [1, 1, 9, 8]}]\n")


def test_simulated_sensitivity_is_refused_for_a_file(tmp_path, capsys, good):
    refuse(tmp_path, capsys, good, "'simulated'",
           variant="{mode: static, fallback: {min_cosine: 0.99, sensitivity: simulated}}")


def test_the_digits_still_fit_a_good_file(tmp_path, capsys, good):
    """The control: the same recipe with the good file runs (so the refusals above are the files')."""
    from hostile_cli import cli

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(file=good, variant="{mode: static}", extra=""))
    code, _, err = cli(capsys, "run", recipe, "--out", tmp_path / "run", "--no-progress")
    assert code == 0, err
    assert digits_arrays("test")[0].shape[1:] == (1, 8, 8)

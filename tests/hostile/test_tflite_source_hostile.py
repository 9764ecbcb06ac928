"""Hostile `model: {tflite: ...}` sources: a missing, empty, truncated, random or foreign
file, options and variants a .tflite file cannot take, and files already quantized. Each
is one line and exit 2 before the run directory exists, and the given file is untouched."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from hostile_cli import cli, debris, refused

RECIPE = """
version: 1
name: hostile-tfl
model:
  tflite: {file}
{extra}steps:
  - quantize:
      variants: {variants}
targets: {{tflite: {options}}}
benchmark: {{threads: 1, batch_sizes: [1], warmup: 1, warmup_s: 0, runs: 5, memory: false}}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A float .tflite from TFLiteConverter (a small untrained conv net), its dynamic-range and
    full-integer twins made by the same converter, and an ONNX file."""
    from targets.tflite.keras import tensorflow

    tf = tensorflow()
    tf.keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("hostile-tflite")
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 1), name="pixels"),
                                 tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                                 tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    (d / "float.tflite").write_bytes(conv.convert())
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    (d / "dynamic.tflite").write_bytes(conv.convert())
    conv.target_spec.supported_types = [tf.float16]
    (d / "fp16.tflite").write_bytes(conv.convert())
    conv.target_spec.supported_types = []
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    (d / "int8.tflite").write_bytes(conv.convert())
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, producer_name="pytorch"), d / "model.onnx")
    (d / "model-onnx.tflite").write_bytes((d / "model.onnx").read_bytes())
    data = (d / "float.tflite").read_bytes()
    (d / "truncated.tflite").write_bytes(data[:len(data) // 2])
    (d / "random.tflite").write_bytes(np.random.default_rng(1).bytes(4096))
    (d / "empty.tflite").write_bytes(b"")
    (d / "folder.tflite").mkdir()
    return d


def _refused(capsys, files, tmp_path, says, file="float.tflite", variants="[{mode: dynamic}]", options="{}",
             extra=""):
    recipe = files / f"r-{tmp_path.name}.yaml"
    recipe.write_text(RECIPE.format(file=file, variants=variants, options=options, extra=extra).lstrip())
    given = files / file
    before = hashlib.sha256(given.read_bytes()).hexdigest() if given.is_file() else None
    line = refused(capsys, "run", recipe, "--out", tmp_path / "run", "--no-progress", says=says)
    assert not (tmp_path / "run").exists() and debris(files) == []
    if before is not None:
        assert hashlib.sha256(given.read_bytes()).hexdigest() == before
    return line


@pytest.mark.parametrize("file, says", [
    ("absent.tflite", ("absent.tflite", "no such file")),
    ("empty.tflite", ("empty", "0 bytes")),
    ("folder.tflite", "is a directory"),
    ("random.tflite", ("not a TFLite model", "TFL3")),
    ("model-onnx.tflite", ("not a TFLite model", "looks like an ONNX model", "model: {onnx")),
    ("model.onnx", "looks like an ONNX model"),
    ("truncated.tflite", ("truncated.tflite", "truncated or corrupt")),
])
def test_a_bad_file_is_one_line(capsys, files, tmp_path, file, says):
    _refused(capsys, files, tmp_path, says, file=file)


@pytest.mark.parametrize("variants, options, says", [
    ("[{mode: dynamic}]", "{channels_last: true}", ("channels_last", "layout")),
    ("[{mode: dynamic}]", "{signature: nope}", ("no signature 'nope'", "serving_default")),
    ("[{mode: static, fallback: {min_cosine: 0.99}}]", "{}", ("fallback", "exclude_ops")),
    ("[{mode: static, calibration: percentile}]", "{}", ("min/max", "drop calibration")),
    ("[{mode: dynamic, exclude_ops: [Softmax]}]", "{}", ("['Softmax']", "CONV_2D", "FULLY_CONNECTED")),
    ("[{mode: dynamic, exclude: ['conv(']}]", "{}", ("not a regular expression", "tensor names")),
    ("[{mode: weight_only, bits: 4, group_size: 32, compute: float}]", "{}", "per output channel only"),
])
def test_what_a_tflite_file_cannot_take_is_refused_up_front(capsys, files, tmp_path, variants, options, says):
    _refused(capsys, files, tmp_path, says, variants=variants, options=options,
             extra="data: {calibration: {source: c.npz}}\n" if "static" in variants else "")


def test_the_recipe_outputs_must_count_the_files(capsys, files, tmp_path):
    _refused(capsys, files, tmp_path, ("names 2 outputs", "has 1 (output_0)"), extra="  outputs: [a, b]\n")


def test_the_recipe_inputs_must_be_the_files(capsys, files, tmp_path):
    _refused(capsys, files, tmp_path, ("'image' is not an input", "pixels"),
             extra="  inputs: [{name: image, shape: [1, 8, 8, 1]}]\n")
    _refused(capsys, files, tmp_path, ("[1, 1, 8, 8]", "only symbolic dims"),
             extra="  inputs: [{name: pixels, shape: [1, 1, 8, 8]}]\n")


@pytest.mark.parametrize("file, variants, says", [
    ("int8.tflite", "[{mode: dynamic}]", ("already quantized", "int8 weights and int8 activations", "int8-dynamic",
                                          "as given", "float .tflite")),
    ("dynamic.tflite", "[{mode: fp16}]", ("already quantized (int8 weights)", "fp16 of an int8 model")),
    ("fp16.tflite", "[{mode: dynamic}, {mode: fp16}]", ("already quantized (fp16 weights)", "int8-dynamic, "
                                                       "fp16 cannot", "fp16 already")),
])
def test_an_already_quantized_file_is_not_quantized_again(capsys, files, tmp_path, file, variants, says):
    _refused(capsys, files, tmp_path, says, file=file, variants=variants)


def test_an_already_quantized_file_is_benchmarked_as_given(capsys, files, tmp_path):
    recipe = files / "as-given.yaml"
    recipe.write_text(RECIPE.format(file="int8.tflite", variants="[]", options="{}", extra="")
                      .replace("steps:\n  - quantize:\n      variants: []\n", "").lstrip())
    code, _, err = cli(capsys, "run", recipe, "--out", tmp_path / "run", "--no-progress")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    (row,) = report["artifacts"]
    assert row["status"] == "ok" and row["export"]["as_given"] == "already quantized: int8 weights and int8 activations"
    assert row["fidelity"]["max_abs"] == 0 and report["reference"]["framework"] == "tflite"
    assert (tmp_path / "run" / row["file"]).read_bytes() == (files / "int8.tflite").read_bytes()

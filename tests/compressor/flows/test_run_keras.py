"""`model: {keras: path}` in a recipe: `compressor run` converts a Keras model with
TFLiteConverter in four precisions, validates each against the Keras model's own outputs
and benchmarks it; PyTorch-only targets are refused with one line."""

import json

import numpy as np
import pytest

from compressor.flows.cli import main
from compressor.data import digits_arrays

RECIPE = """
version: 1
name: kdigits
model:
  keras: digits.keras
  inputs: [{{name: pixels, shape: [1, 8, 8, 1]}}]
  outputs: [logits]
data:
  calibration: {{source: train.npz, limit: 128}}
  evaluation: {{source: test.npz}}
steps:
  - quantize:
      variants: [{{mode: static}}, {{mode: dynamic}}, {{mode: fp16}}]
targets: {targets}
benchmark: {{threads: 1, batch_sizes: [1], warmup: 2, warmup_s: 0, runs: 5, memory: false}}
"""


@pytest.fixture(scope="module")
def keras_dir(tmp_path_factory):
    """A small NHWC conv net fitted on the real digits, saved as .keras, with its data as .npz."""
    from targets.tflite.keras import tensorflow

    tf = tensorflow()
    tf.keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("keras-recipe")
    for split in ("train", "test"):
        x, y = digits_arrays(split)
        np.savez(d / f"{split}.npz", pixels=x.transpose(0, 2, 3, 1), labels=y)
    x, y = digits_arrays("train")
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="pixels"),
        tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10)])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.transpose(0, 2, 3, 1), y, epochs=8, batch_size=64, verbose=0)
    model.save(d / "digits.keras")
    return d


def test_run_converts_validates_and_benchmarks_four_precisions(keras_dir, write_recipe, tmp_path):
    recipe = write_recipe(RECIPE.format(targets="{tflite: {}}"), directory=keras_dir)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    rows = {r["label"]: r for r in report["artifacts"]}
    assert sorted(rows) == ["fp16", "fp32", "int8-dynamic", "int8-static"]
    assert all(r["status"] == "ok" for r in rows.values())
    ref = report["reference"]
    assert ref["framework"] == "keras" and ref["accuracy"] > 0.85 and ref["validation_on_real_data"]
    # Validated against the Keras model's own outputs, on the recipe's evaluation data.
    assert rows["fp32"]["fidelity"]["max_abs"] < 1e-4
    assert rows["fp16"]["fidelity"]["cosine_mean"] > 0.999
    assert rows["int8-static"]["fidelity"]["cosine_mean"] > 0.98
    for r in rows.values():
        assert r["metrics"]["latency"][0]["p50_ms"] > 0
        assert abs(r["metrics"]["accuracy"] - ref["accuracy"]) <= 0.02, r["label"]
    assert rows["int8-static"]["export"]["input_names"] == ["pixels"]
    assert rows["int8-static"]["export"]["output_names"] == ["logits"]
    assert rows["int8-static"]["size_ratio_vs_fp32"] < 0.5
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["sha256"] and len(manifest["artifacts"]) == 4


@pytest.mark.parametrize("targets", ["{tflite: {}, onnx: {}}", "[torchscript]"])
def test_pytorch_targets_are_refused_for_a_keras_model(write_recipe, tmp_path, capsys, targets):
    recipe = write_recipe(RECIPE.format(targets=targets))
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tflite" in err and "Keras" in err
    assert not (tmp_path / "run").exists()


def test_a_keras_variant_with_settings_the_converter_lacks_is_refused(keras_dir, write_recipe, tmp_path, capsys):
    text = RECIPE.format(targets="{tflite: {}}").replace("{mode: dynamic}", "{mode: static, name: p, "
                                                        "calibration: percentile}")
    recipe = write_recipe(text, directory=keras_dir)
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibration" in err and "'p'" in err
    assert not (tmp_path / "run").exists()


def test_a_missing_keras_model_is_one_line_and_exit_2(write_recipe, tmp_path, capsys):
    recipe = write_recipe(RECIPE.format(targets="{tflite: {}}"))  # no digits.keras beside it
    assert main(["run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "digits.keras" in err and "no such file" in err
    assert not (tmp_path / "run").exists()

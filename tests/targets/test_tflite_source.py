"""`model: {tflite: model.tflite}`: ai-edge-quantizer compresses an existing float .tflite
(one made by TensorFlow's converter from a Keras CNN fitted on the real digits, one made
by litert-torch from the shipped PyTorch digits CNN) and every artifact is held to the
file itself run on LiteRT."""

import json

import numpy as np
import pytest

from compressor.config.recipe import InputSpec, ModelSpec
from compressor.data import digits_arrays
from compressor.flows.cli import main
from targets.tflite.source import load_tflite_model

RECIPE = """
version: 1
name: {name}
model:
  tflite: {file}
{extra}data:
  calibration: {{source: {calibration}, limit: 128}}
  evaluation: {{source: {evaluation}}}
steps:
  - quantize:
      variants: {variants}
targets: {{tflite: {{}}}}
benchmark: {{threads: 1, batch_sizes: [1], warmup: 2, warmup_s: 0, runs: 5, memory: false}}
"""


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A float .tflite from TFLiteConverter: an NHWC conv net fitted on the digits, its data as .npz."""
    from targets.tflite.keras import tensorflow

    tf = tensorflow()
    tf.keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("tflite-source")
    for split in ("train", "test"):
        x, y = digits_arrays(split)
        np.savez(d / f"{split}.npz", pixels=x.transpose(0, 2, 3, 1), labels=y)
    x, y = digits_arrays("train")
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="pixels"),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem"),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="body"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10)])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.transpose(0, 2, 3, 1), y, epochs=15, batch_size=64, verbose=0)
    (d / "digits.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return d


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory, digits_model):
    """A float .tflite from litert-torch: the shipped PyTorch digits CNN (NCHW, batch fixed at 1)."""
    import targets

    d = tmp_path_factory.mktemp("tflite-torch")
    art = targets.get("tflite").export(digits_model, None, d / "cnn", {}, None)
    return art.path


def _run(directory, tmp_path, write_recipe, variants, name="tfl", file="digits.tflite", extra="",
         calibration="train.npz", evaluation="test.npz"):
    text = RECIPE.format(name=name, file=file, extra=extra, variants=variants, calibration=calibration,
                         evaluation=evaluation)
    recipe = write_recipe(text, directory=directory)
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    return out, report, {r["label"]: r for r in report["artifacts"]}


def test_a_converter_made_file_compresses_in_four_precisions(keras_file, tmp_path, write_recipe):
    variants = ("[{mode: static}, {mode: dynamic}, {mode: fp16}, "
                "{mode: weight_only, bits: 8, group_size: channel}]")
    out, report, rows = _run(keras_file, tmp_path, write_recipe, variants)
    assert sorted(rows) == ["fp16", "fp32", "int8-dynamic", "int8-static", "int8-weight-only"]
    assert all(r["status"] == "ok" for r in rows.values()), rows
    ref = report["reference"]
    assert ref["framework"] == "tflite" and ref["accuracy"] > 0.8 and ref["validation_on_real_data"]
    # The fp32 artifact is the given file itself, byte for byte (no rename asked).
    assert (out / rows["fp32"]["file"]).read_bytes() == (keras_file / "digits.tflite").read_bytes()
    assert rows["fp32"]["fidelity"]["max_abs"] == 0
    assert rows["int8-static"]["fidelity"]["cosine_mean"] >= 0.99
    assert rows["int8-dynamic"]["fidelity"]["cosine_mean"] >= 0.99
    assert rows["fp16"]["fidelity"]["cosine_mean"] > 0.9999
    for r in rows.values():
        assert abs(r["metrics"]["accuracy"] - ref["accuracy"]) <= 0.02, r["label"]
        assert r["metrics"]["latency"][0]["p50_ms"] > 0
    static = rows["int8-static"]["export"]
    assert static["op_types"]["QUANTIZE"] == 1 and static["op_types"]["DEQUANTIZE"] == 1  # float io only
    assert rows["int8-static"]["size_ratio_vs_fp32"] < 0.5
    assert rows["int8-dynamic"]["size_ratio_vs_fp32"] < 0.5
    assert rows["fp16"]["size_ratio_vs_fp32"] < 0.65
    assert report["model"]["parameters"] == 16 * 9 + 16 + 16 * 16 * 9 + 16 + 16 * 10 + 10  # not the axes of MEAN


def test_exclude_ops_keeps_an_operator_float_and_outputs_take_the_recipe_names(keras_file, tmp_path,
                                                                                 write_recipe):
    variants = ("[{mode: static}, {mode: static, name: mean-float, exclude_ops: [MEAN]}, {mode: dynamic}, "
                "{mode: dynamic, name: body-float, exclude: [body]}]")
    out, report, rows = _run(keras_file, tmp_path, write_recipe, variants, extra="  outputs: [logits]\n")
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows["mean-float"]["export"]["kept_float"] == ["MEAN"]
    # The 'body' conv (its output tensor is named after the Keras layer) keeps its 2,304 fp32 weights.
    assert rows["body-float"]["export"]["kept_float"] == ["ops writing /body/"]
    grown = (rows["body-float"]["size_ratio_vs_fp32"] - rows["int8-dynamic"]["size_ratio_vs_fp32"]) * \
        (out / rows["fp32"]["file"]).stat().st_size
    assert 2304 * 3 - 200 < grown < 2304 * 3 + 200
    # MEAN in float: a DEQUANTIZE in front of it and a QUANTIZE after, beyond the io pair.
    ops = rows["mean-float"]["export"]["op_types"]
    assert ops["QUANTIZE"] == rows["int8-static"]["export"]["op_types"]["QUANTIZE"] + 1
    assert rows["mean-float"]["fidelity"]["cosine_mean"] >= 0.99
    for r in rows.values():
        assert r["export"]["output_names"] == ["logits"]
        assert [o["name"] for o in r["fidelity"]["outputs"]] == ["logits"]


def test_a_litert_torch_file_calibrates_on_the_digits(torch_file, tmp_path, write_recipe, digits_test):
    variants = "[{mode: static}, {mode: dynamic, per_channel: false}]"
    out, report, rows = _run(torch_file.parent, tmp_path, write_recipe, variants, file=torch_file.name,
                             calibration="digits, split: train", evaluation="digits, split: test")
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert report["model"]["inputs"] == [{"name": "pixels", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    ref = report["reference"]["accuracy"]
    assert ref > 0.9
    for label in ("int8-static", "int8-dynamic"):
        assert rows[label]["fidelity"]["cosine_mean"] >= 0.99, label
        assert ref - rows[label]["metrics"]["accuracy"] <= 0.02, label
    assert rows["int8-static"]["size_ratio_vs_fp32"] < 0.5


def test_the_handle_reads_the_file_and_takes_the_recipe_overrides(keras_file, digits_test):
    spec = ModelSpec(tflite=keras_file / "digits.tflite")
    model = load_tflite_model(spec, keras_file, {}, [])
    assert model.framework == "tflite" and model.quantized is None
    assert [(s.name, s.shape, s.dtype) for s in model.inputs] == [("pixels", [1, 8, 8, 1], "float32")]
    assert model.output_names == model.file_outputs == ["output_0"]
    x, y = digits_test
    logits = model.run({"pixels": x.transpose(0, 2, 3, 1)})[0]
    assert logits.shape == (len(x), 10) and (logits.argmax(1) == y).mean() > 0.8
    # The symbolic batch can be chosen by the recipe; fixed dims cannot.
    over = ModelSpec(tflite=keras_file / "digits.tflite", inputs=[InputSpec(name="pixels", shape=[4, 8, 8, 1])])
    assert load_tflite_model(over, keras_file, {}, []).inputs[0].shape == [4, 8, 8, 1]
    assert model.example_feeds(3)["pixels"].shape == (3, 8, 8, 1)

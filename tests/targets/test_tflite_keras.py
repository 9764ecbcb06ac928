"""Keras sources -> .tflite with TensorFlow's TFLiteConverter, validated against the Keras
model's own outputs (a tiny model built and trained here on the real digits)."""

import numpy as np
import pytest

from compressor.errors import FidelityError
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import Tolerance
from targets.tflite.keras import convert_keras, keras_outputs, load_keras, tensorflow, validate_keras


@pytest.fixture(scope="module")
def keras_digits(tmp_path_factory, digits_test):
    """A small conv net on NHWC digits, fitted for a few epochs, saved as .keras."""
    from compressor.data import digits_arrays

    tf = tensorflow()
    tf.keras.utils.set_random_seed(0)
    x, y = digits_arrays("train")
    x = x.transpose(0, 2, 3, 1)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="pixels"),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10)])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("keras") / "digits.keras"
    model.save(path)
    return path, x


@pytest.fixture(scope="module")
def keras_artifacts(keras_digits, tmp_path_factory):
    path, x_train = keras_digits
    out = tmp_path_factory.mktemp("keras-tflite")
    arts = {"fp32": convert_keras(path, None, out / "k.fp32")}
    for v in (QuantVariant(mode="static"), QuantVariant(mode="dynamic"), QuantVariant(mode="fp16")):
        arts[v.label] = convert_keras(path, v, out / f"k.{v.label}", {"pixels": x_train})
    arts["int8-io"] = convert_keras(path, QuantVariant(name="int8-io", mode="static"), out / "k.int8-io",
                                    {"pixels": x_train}, io="int8")
    return arts


TOL = {"fp32": Tolerance(max_abs=1e-4, min_cosine=0.99999), "fp16": Tolerance(min_cosine=0.999),
       "int8-dynamic": Tolerance(min_cosine=0.99), "int8-static": Tolerance(min_cosine=0.98, min_top1=0.95),
       "int8-io": Tolerance(min_cosine=0.98, min_top1=0.95)}


@pytest.mark.parametrize("label", list(TOL))
def test_every_precision_validates_against_the_keras_model(keras_digits, keras_artifacts, digits_test, label):
    path, _ = keras_digits
    x = digits_test[0].transpose(0, 2, 3, 1)
    fid = validate_keras(keras_artifacts[label], load_keras(path), {"pixels": x}, TOL[label])
    assert fid.samples == len(x)


def test_full_integer_keras_keeps_accuracy(keras_digits, keras_artifacts, digits_test):
    from targets.base import Device, run_batched
    from targets.tflite.runtime import LiteSession

    path, _ = keras_digits
    x, y = digits_test[0].transpose(0, 2, 3, 1), digits_test[1]
    ref = (keras_outputs(load_keras(path), {"pixels": x})[0].argmax(1) == y).mean()
    assert ref > 0.75  # a fitted model, so that accuracy is a meaningful yardstick
    for label in ("int8-static", "int8-io"):
        s = LiteSession(keras_artifacts[label].path, Device(), 2)
        got = (run_batched(s, {s.inputs[0].name: x}, 64)[0].argmax(1) == y).mean()
        assert ref - got <= 0.01, label
    assert keras_artifacts["int8-static"].size_bytes < 0.6 * keras_artifacts["fp32"].size_bytes


def test_validation_names_the_worst_output_beyond_tolerance(keras_digits, keras_artifacts, digits_test):
    path, _ = keras_digits
    with pytest.raises(FidelityError, match="max abs difference"):
        validate_keras(keras_artifacts["int8-static"], load_keras(path),
                       {"pixels": digits_test[0].transpose(0, 2, 3, 1)}, Tolerance(max_abs=1e-6))

"""The digits data source's `resolution`: scikit-learn's 8x8 digits upsampled bilinearly
to the side a model takes, and the values it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import targets
from compressor.config.recipe import DataSource, InputSpec, parse_recipe
from compressor.data import digits_arrays, load_dataset
from compressor.errors import DataError, RecipeError

PIXELS_32 = [InputSpec(name="pixels", shape=[1, 1, 32, 32])]


def test_digits_upsample_to_the_requested_side_as_torch_interpolates():
    x8, y8 = digits_arrays("test")
    for side in (8, 13, 32):
        x, y = digits_arrays("test", side)
        assert x.shape == (450, 1, side, side) and x.dtype == np.float32
        np.testing.assert_array_equal(y, y8)  # the same images in the same order
        want = torch.nn.functional.interpolate(torch.from_numpy(x8), size=(side, side), mode="bilinear",
                                               align_corners=False).numpy()
        np.testing.assert_allclose(x, want, atol=1e-6)
    x32, _ = digits_arrays("test", 32)
    assert 0.0 <= x32.min() and x32.max() <= 1.0
    # Upsampling keeps the ink: each image's mean brightness is that of its original.
    np.testing.assert_allclose(x32.mean((1, 2, 3)), x8.mean((1, 2, 3)), atol=0.02)


def test_digits_source_takes_a_resolution():
    ds = load_dataset(DataSource(source="digits", split="train", resolution=32, limit=64), PIXELS_32)
    assert ds.inputs["pixels"].shape == (64, 1, 32, 32) and ds.labels.shape == (64,)


def test_a_model_of_another_resolution_is_told_the_setting():
    with pytest.raises(DataError) as e:
        load_dataset(DataSource(source="digits", split="test"), PIXELS_32)
    assert str(e.value) == ("data source 'digits' gives 8x8 images, the model declares 32x32; "
                            "set 'resolution: 32' on the data source")


def _recipe(data: str) -> str:
    return ("version: 1\nname: r\nmodel:\n  factory: compressor.zoo.digits_wide:digits_wide_cnn\n"
            "  inputs: [{name: pixels, shape: [1, 1, 32, 32]}]\n"
            f"data:\n  evaluation: {data}\ntargets: [onnx]\n")


@pytest.mark.parametrize("data, message", [
    ("{source: digits, resolution: 4}", r"^r\.yaml:7: .*resolution.*greater than or equal to 8"),
    ("{source: digits, resolution: 1000}", r"^r\.yaml:7: .*resolution.*less than or equal to 256"),
    ("{source: digits, resolution: 32.5}", r"^r\.yaml:7: .*resolution"),
    ("{source: sentences, resolution: 32}", r"'resolution' applies to the 'digits' source only, not 'sentences'"),
])
def test_bad_resolutions_are_refused_in_one_line(data, message):
    with pytest.raises(RecipeError, match=message) as e:
        parse_recipe(_recipe(data), "r.yaml", target_options=targets.option_models())
    assert len(str(e.value).splitlines()) == 1


def test_digits_arrays_refuse_a_side_below_the_originals():
    with pytest.raises(DataError) as e:
        digits_arrays("test", 4)
    assert str(e.value) == "digits resolution 4: give a side from 8 (the originals) to 256 pixels"

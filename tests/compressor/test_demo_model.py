"""The demo's model: the wide digits CNN's shipped weights and the demo recipe that runs
it on 32x32 digits."""

from __future__ import annotations

import pytest
from safetensors import safe_open

import targets
from compressor.config.recipe import load_recipe
from compressor.data import digits_arrays
from compressor.model import load_model
from compressor.recipes import DEMO_RECIPE
from compressor.zoo.digits_wide import SIDE, WEIGHTS_PATH
from compressor.zoo.train_digits import accuracy


def test_the_demo_recipe_runs_the_wide_model_on_32x32_digits():
    recipe = load_recipe(DEMO_RECIPE, target_options=targets.option_models())
    assert recipe.model.factory == "compressor.zoo.digits_wide:digits_wide_cnn"
    assert recipe.model.inputs[0].shape == [1, 1, SIDE, SIDE]
    assert recipe.data.calibration.resolution == recipe.data.evaluation.resolution == SIDE
    assert (recipe.base_dir / recipe.model.weights).resolve() == WEIGHTS_PATH


def test_shipped_wide_weights_reach_their_recorded_accuracy():
    recipe = load_recipe(DEMO_RECIPE, target_options=targets.option_models())
    model = load_model(recipe.model, recipe.base_dir)
    params = sum(p.numel() for p in model.module.parameters())
    assert 400_000 < params < 1_000_000
    assert WEIGHTS_PATH.stat().st_size < 5 * 2**20
    with safe_open(str(WEIGHTS_PATH), "pt") as f:
        recorded = float(f.metadata()["test_accuracy"])
    x, y = digits_arrays("test", SIDE)
    acc = accuracy(model.module, x, y)
    assert acc == pytest.approx(recorded, abs=1e-4)
    assert acc >= 0.99

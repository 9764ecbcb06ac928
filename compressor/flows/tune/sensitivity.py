"""The ranking the fallback dimension of the space draws from: layers ordered by the
damage quantizing each one alone does under the tuned target's quantizer family
(compressor.sensitivity: accuracy drop, then output cosine), most sensitive first.
Trial k keeps the first k in float."""

from __future__ import annotations

from typing import TYPE_CHECKING

from compressor.errors import DataError

if TYPE_CHECKING:
    from compressor.config.recipe import Recipe

SAMPLES = 256


def ranking(recipe: "Recipe", target: str) -> list[str]:
    import targets
    from compressor.data import load_dataset
    from compressor.model import load_model
    from compressor.sensitivity import layer_sensitivity

    model = load_model(recipe.model, recipe.base_dir)
    if recipe.data.calibration is None:
        raise DataError("tune.space.fallback ranks layers by quantizing them: add data.calibration to the recipe")
    tokenizer = getattr(model, "tokenizer", None)  # an hf source's own, for text data
    calibration = load_dataset(recipe.data.calibration, model.inputs, recipe.base_dir, tokenizer)
    source = recipe.data.evaluation or recipe.data.calibration
    data = load_dataset(source, model.inputs, recipe.base_dir, tokenizer).take(SAMPLES)
    family = targets.get(target).quantizer_family
    scores = layer_sensitivity(model, family, calibration, data.inputs, labels=data.labels)
    return [s.name for s in scores]

"""The ranking the fallback dimension of the space draws from: layers ordered by how far
quantizing that layer alone moves the model's outputs (most sensitive first). Trial k
keeps the first k in float."""

from __future__ import annotations

from typing import TYPE_CHECKING

from compressor.errors import DataError

if TYPE_CHECKING:
    from compressor.recipe import Recipe


def ranking(recipe: "Recipe") -> list[str]:
    from compressor.data import load_dataset
    from compressor.model import load_model
    from compressor.qat.config import QatStep
    from compressor.qat.run import sensitivity

    model = load_model(recipe.model, recipe.base_dir)
    source = recipe.data.evaluation or recipe.data.calibration
    if source is None:
        raise DataError("tune.space.fallback ranks layers on data: add data.evaluation or data.calibration")
    data = load_dataset(source, model.inputs, recipe.base_dir)
    return list(sensitivity(model, QatStep(), data, skip=[]))

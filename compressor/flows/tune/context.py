"""What the tuner's modules share: the study's context and the recipe as plain data.
Imports none of study, report, inc or inc_report, so that each of them may import it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressor.config.recipe import Recipe
from compressor.config.tune import TuneSpec
from compressor.flows.tune.space import absolute_paths


@dataclass
class TuneContext:
    recipe: Recipe
    spec: TuneSpec
    target: str
    out: Path
    base: dict             # the recipe as plain data, paths absolute
    ranking: list[str]     # layers by quantization sensitivity, most sensitive first
    target_options: dict


def base_dict(recipe: Recipe) -> dict:
    """The recipe as plain data, its paths absolute."""
    d = recipe.model_dump(mode="json", exclude_none=True)
    return absolute_paths(d, recipe.base_dir)

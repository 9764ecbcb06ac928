"""The base of every recipe model: strict (unknown keys are errors) and frozen.

Its own module so that step configs living beside their step (compressor.finetune,
compressor.config.prune) can inherit it without importing the recipe, which imports them.
"""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

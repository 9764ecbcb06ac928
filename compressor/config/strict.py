"""The base of every recipe and budgets model: strict (unknown keys are errors) and frozen."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

"""The recipe: a strict, versioned YAML document validated by pydantic.

Unknown keys are errors. A mistake is reported as one line that names the file, the
line, the place in the document and, for a misspelt key, the closest valid key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import (BaseModel, Field, PrivateAttr, ValidationError, WithJsonSchema, field_validator,
                      model_validator)

from compressor.config.budgets import BudgetsSpec
from compressor.config.prune import PruneStep
from compressor.config.qat import QatStep
from compressor.config.quantize import QuantizeStep, QuantVariant
from compressor.config.reading import closest, describe, line_of, read_yaml, validate_yaml
from compressor.config.strict import Strict
from compressor.config.tune import TuneSpec
from compressor.errors import RecipeError

DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class InputSpec(Strict):
    name: str
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    dtype: Literal[DTYPES] = "float32"  # type: ignore[valid-type]


class ModelSpec(Strict):
    factory: str | None = Field(None, description="Python factory 'pkg.module:callable' that builds the nn.Module")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory")
    weights: Path | None = Field(None, description="safetensors state dict for the factory's module")
    program: Path | None = Field(None, description="a torch.export .pt2 ExportedProgram (pickle inside: needs trusted)")
    keras: Path | None = Field(None, description="a Keras model (.keras/.h5 file) or a SavedModel directory; "
                               "TensorFlow's TFLiteConverter converts it (tflite target only)")
    trusted: bool = Field(False, description="allow formats that can run code when loaded (.pt2)")
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[str] | None = Field(None, description="names given to the model's outputs")

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, v: str | None) -> str | None:
        if v is not None and not FACTORY_RE.match(v):
            raise ValueError(f"factory must look like 'package.module:callable', got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSpec":
        if sum(x is not None for x in (self.factory, self.program, self.keras)) != 1:
            raise ValueError("give exactly one of 'factory' (with optional 'weights'), 'program' (.pt2) "
                             "or 'keras' (.keras/.h5 file or SavedModel directory)")
        if self.factory is None and self.weights is not None:
            raise ValueError("'weights' goes with 'factory'; a .pt2 program or a Keras model carries its own weights")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        return self


class DataSource(Strict):
    source: str = Field(description="'digits' or 'sentences' (built in), a path to an .npz file, or "
                        "'pkg.module:callable'")
    split: Literal["train", "test", "all"] = "all"
    limit: int | None = Field(None, ge=1, description="use at most this many samples")
    vocab_size: int | None = Field(None, ge=8, description="sentences: token ids stay below this "
                                   "(default 30522, BERT's vocabulary)")

    @model_validator(mode="after")
    def _vocab_for_sentences(self) -> "DataSource":
        if self.vocab_size is not None and self.source != "sentences":
            raise ValueError(f"'vocab_size' applies to the 'sentences' source only, not {self.source!r}")
        return self


class DataSpec(Strict):
    calibration: DataSource | None = None
    evaluation: DataSource | None = None
    train: DataSource | None = None


class Step(Strict):
    """One entry of `steps`: a mapping with a single key naming the step."""

    quantize: QuantizeStep | None = None
    prune: PruneStep | None = None
    qat: QatStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Step":
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"each step names exactly one of {list(type(self).model_fields)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)


class BenchmarkSpec(Strict):
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")
    threads: int = Field(2, ge=1)
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1], min_length=1)
    warmup: int = Field(10, ge=0, description="warm-up runs, at least this many")
    warmup_s: float = Field(0.2, ge=0, description="and at least this long, in seconds")
    runs: int = Field(100, ge=5, description="timed runs, at least this many")
    min_time_s: float = Field(0.0, ge=0, description="and keep timing for at least this long")
    memory: bool = Field(True, description="measure peak memory in a fresh process per artifact")


class Tolerance(Strict):
    max_abs: float | None = Field(None, gt=0)
    min_cosine: float | None = Field(None, ge=-1, le=1)
    min_top1: float | None = Field(None, ge=0, le=1)


class ValidationSpec(Strict):
    samples: int = Field(256, ge=1, description="evaluation inputs compared against the reference")
    fp32: Tolerance = Tolerance(max_abs=1e-3, min_cosine=0.99999, min_top1=0.99)
    fp16: Tolerance = Tolerance(min_cosine=0.999, min_top1=0.98)
    int8: Tolerance = Tolerance(min_cosine=0.98, min_top1=0.95)


class OutputSpec(Strict):
    dir: Path | None = Field(None, description="run directory; default runs/<name>")
    overwrite: bool = False


class Recipe(Strict):
    version: Literal[1]
    name: str = Field(pattern=r"^[\w.-]+$")
    model: ModelSpec
    data: DataSpec = DataSpec()
    steps: list[Step] = Field(default_factory=list)
    # Values: a mapping as written; read with the target registry, each becomes that
    # target's validated options model (validated once, handed to the target as it is).
    targets: dict[str, Annotated[Any, WithJsonSchema({"additionalProperties": True, "type": "object"})]] = Field(
        min_length=1, description="target name -> its options")
    benchmark: BenchmarkSpec = BenchmarkSpec()
    validation: ValidationSpec = ValidationSpec()
    output: OutputSpec = OutputSpec()
    budgets: BudgetsSpec | None = None
    tune: TuneSpec | None = Field(None, description="accuracy-aware tuning: `compressor tune` searches this "
                                  "space (ignored by `compressor run`)")

    @model_validator(mode="after")
    def _keras_goes_to_tflite(self) -> "Recipe":
        # TFLiteConverter is the one converter here that reads Keras; the other targets trace PyTorch.
        if self.model.keras is not None:
            other = [t for t in self.targets if t != "tflite"]
            if other:
                raise ValueError(f"a Keras model converts only to the tflite target (TensorFlow's TFLiteConverter); "
                                 f"{', '.join(other)} need a PyTorch model ('factory' or 'program'): use "
                                 "'targets: {tflite: {}}'")
            steps = sorted({s.kind for s in self.steps if s.kind != "quantize"})
            if steps:
                raise ValueError(f"a Keras model takes only 'quantize' steps; {', '.join(steps)} work on PyTorch "
                                 "models ('factory' or 'program')")
        return self

    @field_validator("targets", mode="before")
    @classmethod
    def _list_form(cls, v: Any) -> Any:
        # `targets: [onnx]` is shorthand for `targets: {onnx: {}}`.
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return {x: {} for x in v}
        return {k: ({} if o is None else o) for k, o in v.items()} if isinstance(v, dict) else v

    # Where the recipe came from; relative paths resolve against its directory.
    _base_dir: Path = PrivateAttr(Path("."))
    _source_text: str = PrivateAttr("")

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def source_text(self) -> str:
        return self._source_text

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self._base_dir / p)

    @property
    def quant_variants(self) -> list[QuantVariant]:
        return [v for s in self.steps if s.quantize for v in s.quantize.variants]

    @property
    def qat_steps(self) -> list[QatStep]:
        return [s.qat for s in self.steps if s.qat]

    @property
    def prune_steps(self) -> list[PruneStep]:
        return [s.prune for s in self.steps if s.prune]


def json_schema() -> str:
    """The recipe's JSON schema, for editors (yaml-language-server) to validate against."""
    schema = Recipe.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "compressor recipe"
    return json.dumps(schema, indent=2)


# --- loading ----------------------------------------------------------------------


def load_recipe(path: Path | str, target_options: Mapping[str, type[BaseModel]] | None = None) -> Recipe:
    """Read and validate a recipe file. `target_options` maps each known target name to
    the pydantic model of its options (the target registry supplies it)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path}: no such file")
    text = path.read_text(encoding="utf-8")
    return parse_recipe(text, str(path), base_dir=path.parent, target_options=target_options)


def parse_recipe(text: str, filename: str = "<recipe>", base_dir: Path = Path("."),
                 target_options: Mapping[str, type[BaseModel]] | None = None) -> Recipe:
    data, root = read_yaml(text, filename, "a recipe is a YAML mapping with 'version: 1', 'model', 'targets', ...")
    recipe = validate_yaml(Recipe, data, root, filename)
    recipe._base_dir, recipe._source_text = Path(base_dir), text
    if target_options is not None:
        _check_targets(recipe, root, filename, target_options)
    return recipe


def _check_targets(recipe: Recipe, root: yaml.Node, filename: str,
                   target_options: Mapping[str, type[BaseModel]]) -> None:
    validated: dict[str, BaseModel] = {}
    for name, opts in recipe.targets.items():
        if name not in target_options:
            hint = closest(name, target_options)
            line = line_of(root, ("targets", name), key=True)
            raise RecipeError(f"{filename}{line}: unknown target {name!r}{hint}; known targets: "
                              f"{', '.join(sorted(target_options))}")
        try:
            validated[name] = target_options[name].model_validate(opts)  # validated once, kept typed
        except ValidationError as e:
            raise RecipeError(describe(e, root, filename, target_options[name], prefix=("targets", name))) from None
    object.__setattr__(recipe, "targets", validated)

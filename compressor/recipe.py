"""The recipe: a strict, versioned YAML document validated by pydantic.

Unknown keys are errors. A mistake is reported as one line that names the file, the
line, the place in the document and, for a misspelt key, the closest valid key.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from compressor.budgets import BudgetsSpec
from compressor.errors import RecipeError
from compressor.prune.config import PruneStep
from compressor.qat.config import QatStep
from compressor.strict import Strict  # re-exported: step configs beside their steps share it
from compressor.tune.config import TuneSpec

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


class FallbackSpec(Strict):
    """A fidelity/accuracy budget an int8 variant must meet on its target's runtime, and
    how far the toolchain may go (float layers, other lowerings) to meet it."""

    min_cosine: float | None = Field(0.99, ge=-1, le=1, description="mean output cosine against the float model "
                                     "on the validation inputs, at least")
    max_accuracy_drop: float | None = Field(None, ge=0, le=100, description="accuracy drop against the float "
                                            "model on the evaluation data, in percentage points, at most")
    max_float_layers: int | None = Field(None, ge=0, description="at most this many layers kept in float "
                                         "(None: as many as it takes)")
    alternatives: bool = Field(True, description="when no float-layer set meets the budget, try the target's "
                               "other lowerings (calibration, per-tensor, symmetric, float op types)")
    granularity: Literal["layer", "block"] = Field(
        "layer", description="what is ranked and kept in float: leaf layers, or blocks (the model's top-level "
        "children, or its main stage's)")
    sensitivity: Literal["simulated", "target"] = Field(
        "simulated", description="how layers are ranked: simulated (the target's quantizer family in PyTorch, "
        "one layer at a time; every target) or target (the target's real lowering of one layer at a time, "
        "run on its runtime; onnx static int8)")
    sensitivity_samples: int = Field(128, ge=8, description="validation inputs the sensitivity ranking is "
                                     "measured on")

    @model_validator(mode="after")
    def _some_budget(self) -> "FallbackSpec":
        if self.min_cosine is None and self.max_accuracy_drop is None:
            raise ValueError("give min_cosine and/or max_accuracy_drop")
        return self


class QuantVariant(Strict):
    name: str | None = Field(None, description="artifact label; defaults to the precision, e.g. 'int8-static'")
    mode: Literal["static", "dynamic", "fp16", "qat"] = Field(
        description="qat: the model handed over already carries its learned quantization (the qat step makes "
        "it); the target lowers it without calibrating")
    calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(99.999, gt=50, le=100)
    calibration_samples: int = Field(128, ge=1)
    per_channel: bool = True
    symmetric_activations: bool = False
    exclude: list[str] = Field(default_factory=list, description="layers kept in float: PyTorch module names "
                               "on every target (a block's name keeps all of it; '<module>:ops' only the "
                               "operations of its own forward, such as a squeeze-excitation product or a residual "
                               "add, and ':ops' the model's own); ONNX node names on onnx too")
    exclude_ops: list[str] = Field(
        default_factory=list, description="operator kinds kept in float everywhere in the model. onnx: ONNX op "
        "types (HardSigmoid, Softmax, LayerNormalization, Mul, ...); torchscript, tflite, pt2: PyTorch module "
        "class names (Hardsigmoid, LayerNorm, Softmax, or a class of the model such as SqueezeExcite)")
    fallback: FallbackSpec | None = Field(
        None, description="keep the most sensitive layers in float, and try other lowerings, until this "
        "budget holds on the target's runtime (None: export as given)")

    @model_validator(mode="after")
    def _fallback_needs_int8(self) -> "QuantVariant":
        if self.fallback is not None and self.mode in ("fp16", "qat"):
            raise ValueError(f"fallback re-lowers the float model with layers kept in float: mode static or "
                             f"dynamic, not {self.mode} (drop 'fallback' or change the mode)")
        return self

    @property
    def label(self) -> str:
        return self.name or {"static": "int8-static", "dynamic": "int8-dynamic", "fp16": "fp16",
                             "qat": "int8-qat"}[self.mode]

    @property
    def precision(self) -> str:
        return "fp16" if self.mode == "fp16" else "int8"


class QuantizeStep(Strict):
    variants: list[QuantVariant] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_labels(self) -> "QuantizeStep":
        labels = [v.label for v in self.variants]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"variant names must be unique; {dup} appears more than once (give each a 'name')")
        return self


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
    targets: dict[str, dict[str, Any]] = Field(min_length=1, description="target name -> its options")
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


# --- loading and error reporting -------------------------------------------------


def load_recipe(path: Path | str, target_options: Mapping[str, type[BaseModel]] | None = None) -> Recipe:
    """Read and validate a recipe file. `target_options` maps each known target name to
    the pydantic model of its options (the target registry supplies it)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path}: no such file")
    text = path.read_text(encoding="utf-8")
    return parse_recipe(text, str(path), base_dir=path.parent, target_options=target_options)


def read_yaml(text: str, filename: str, what: str) -> tuple[dict, yaml.Node]:
    """Parse YAML into data plus its node tree (for line numbers in error messages)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{filename}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{filename}: {what}")
    return data, root


def validate_yaml(model: type[BaseModel], data: dict, root: yaml.Node, filename: str) -> Any:
    """model.model_validate(data), with errors as one line naming file, line and fix."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_describe(e, root, filename, model=model)) from None


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
    validated: dict[str, dict[str, Any]] = {}
    for name, opts in recipe.targets.items():
        if name not in target_options:
            hint = _closest(name, target_options)
            line = _line_of(root, ("targets", name), key=True)
            raise RecipeError(f"{filename}{line}: unknown target {name!r}{hint}; known targets: "
                              f"{', '.join(sorted(target_options))}")
        try:
            validated[name] = target_options[name].model_validate(opts).model_dump()
        except ValidationError as e:
            raise RecipeError(_describe(e, root, filename, prefix=("targets", name),
                                        model=target_options[name])) from None
    object.__setattr__(recipe, "targets", validated)


def _describe(err: ValidationError, root: yaml.Node | None, filename: str,
              prefix: tuple = (), model: type[BaseModel] = Recipe) -> str:
    # A misspelt key also shows up as a missing one; the misspelling is the useful half.
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = prefix + tuple(first["loc"])
    place = _dotted(loc)
    if first["type"] == "extra_forbidden":
        key = loc[-1]
        line = _line_of(root, loc, key=True)
        valid = _fields_at(model, loc[len(prefix):-1])
        msg = f"unknown key {key!r}" + (f" in {_dotted(loc[:-1])}" if len(loc) > 1 else "")
        msg += _closest(str(key), valid)
        if valid and not _closest(str(key), valid):
            msg += f"; valid keys: {', '.join(valid)}"
    elif first["type"] == "missing":
        line = _line_of(root, loc[:-1])
        msg = f"missing required key {place!r}"
    else:
        line = _line_of(root, loc)
        text = first["msg"].removeprefix("Value error, ")
        msg = f"{place or 'recipe'}: {text}" + (f" (got {first['input']!r})" if _short(first.get("input")) else "")
        if first["type"] == "literal_error" and isinstance(first.get("input"), str):
            msg += _closest(first["input"], re.findall(r"'([^']*)'", first["ctx"]["expected"]))
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{filename}{line}: {msg}{more}"


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) < 60


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _closest(word: str, options: Any) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _line_of(root: yaml.Node | None, loc: tuple, key: bool = False) -> str:
    """':LINE' of the node at `loc` (of its key when `key`), or of the deepest node found."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line = (k if key and part == loc[-1] else v).start_mark.line + 1
                    node = v
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    if line is None and root is not None:
        line = root.start_mark.line + 1
    return f":{line}" if line else ""


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Names of the fields valid at `loc` under `model`, walking lists, dicts and Optionals."""
    tp = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        else:
            args = typing.get_args(tp)
            tp = args[-1] if args else None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else members[0]
    if origin is Annotated:
        return typing.get_args(tp)[0]
    return tp

"""The recipe: a strict, versioned YAML document validated by pydantic.

Unknown keys are errors. A mistake is reported as one line that names the file, the
line, the place in the document and, for a misspelt key, the closest valid key.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import (BaseModel, Field, PrivateAttr, ValidationError, WithJsonSchema, field_validator,
                      model_validator)

from compressor.config.budgets import BudgetsSpec
# InputSpec and ModelSpec are re-exported: the recipe is where callers look for them.
from compressor.config.model import FILE_SOURCES, MAX_ELEMENTS, InputSpec, ModelSpec  # noqa: F401
from compressor.config.devices import DeviceName
from compressor.config.prune import PruneStep
from compressor.config.qat import QatStep
from compressor.config.quantize import QuantizeStep, QuantVariant
from compressor.config.reading import closest, describe, line_of, one_line, read_file, read_yaml, validate_yaml
from compressor.config.strict import (MAX_BATCH, MAX_SAMPLES, MAX_THREADS, Bool, Float, Int, Strict, UserPath,
                                      Version)
from compressor.config.tune import TuneSpec
from compressor.errors import RecipeError

MAX_NAME = 200  # bytes: a folder name (255 at most) with room for suffixes
MAX_WAIT_S = 3600.0  # warm-up or timing of one artifact at one batch size
DIGITS_SIDE = 8  # scikit-learn's digits are 8x8
MAX_DIGITS_SIDE = 256  # all 1,797 digits at 256x256 are 470 MB of float32: enough for any model that fits them


class DataSource(Strict):
    source: str | None = Field(None, min_length=1, description="'digits' or 'sentences' (built in), a path to an "
                               ".npz file, or 'pkg.module:callable'")
    text: UserPath | None = Field(None, description="a UTF-8 text file, one sample a line (blank lines skipped), "
                                  "tokenized by the model's own tokenizer (an 'hf' source) or by 'tokenizer'")
    tokenizer: UserPath | None = Field(None, description="text: a Hugging Face tokenizer folder, for models that "
                                       "do not bring one (an onnx, tflite or factory source)")
    split: Literal["train", "test", "all"] = "all"
    limit: Int | None = Field(None, ge=1, le=MAX_SAMPLES, description="use at most this many samples")
    vocab_size: Int | None = Field(None, ge=8, le=2**24, description="sentences: token ids stay below this "
                                   "(default 30522, BERT's vocabulary)")
    resolution: Int | None = Field(None, ge=DIGITS_SIDE, le=MAX_DIGITS_SIDE, description="digits: the images' "
                                   f"side in pixels, {DIGITS_SIDE} (the originals, the default) to {MAX_DIGITS_SIDE}, "
                                   "upsampled bilinearly")

    @model_validator(mode="after")
    def _one_kind(self) -> "DataSource":
        if (self.source is None) == (self.text is None):
            raise ValueError("give exactly one of 'source' ('digits', 'sentences', an .npz file or "
                             "'pkg.module:callable') and 'text' (a text file, one sample a line)")
        if self.tokenizer is not None and self.text is None:
            raise ValueError("'tokenizer' turns 'text' into token ids; it goes with 'text', not 'source'")
        if self.vocab_size is not None and self.source != "sentences":
            raise ValueError(f"'vocab_size' applies to the 'sentences' source only, not "
                             f"{self.source or 'text'!r}")
        if self.resolution is not None and self.source != "digits":
            raise ValueError(f"'resolution' applies to the 'digits' source only, not {self.source or 'text'!r}")
        return self

    @property
    def name(self) -> str:
        """The source as messages name it."""
        return self.source if self.source is not None else str(self.text)


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
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d{1,3})?)$")
    threads: Int = Field(2, ge=1, le=MAX_THREADS, description=f"intra-op threads of the runtime, 1 to {MAX_THREADS}")
    batch_sizes: list[Annotated[Int, Field(ge=1, le=MAX_BATCH)]] = Field(
        default_factory=lambda: [1], min_length=1, max_length=32,
        description=f"batch sizes measured, each 1 to {MAX_BATCH} (the batch axis the exports declare)")
    warmup: Int = Field(10, ge=0, le=1_000_000, description="warm-up runs, at least this many")
    warmup_s: Float = Field(0.2, ge=0, le=MAX_WAIT_S,
                            description="and at least this long, in seconds (at most an hour)")
    runs: Int = Field(100, ge=5, le=10_000_000, description="timed runs, at least this many")
    min_time_s: Float = Field(0.0, ge=0, le=MAX_WAIT_S, description="and keep timing for at least this long, in "
                              "seconds (at most an hour)")
    memory: Bool = Field(True, description="measure peak memory in a fresh process per artifact")
    devices: list[DeviceName] = Field(default_factory=lambda: ["local"], min_length=1, max_length=64,
                                      description="where to measure: local (this machine) and devices of the "
                                      "inventory (devices.yaml), measured at the same time")
    inventory: UserPath | None = Field(None, description="devices.yaml for `devices` (relative to the recipe; "
                                       "default ./devices.yaml over ~/.config/compressor/devices.yaml)")
    rounds: Int = Field(3, ge=1, le=1000, description="interleaved rounds across the artifacts on a remote device")

    @field_validator("batch_sizes", "devices")
    @classmethod
    def _each_once(cls, v: list) -> list:
        if len(set(v)) != len(v):
            raise ValueError(f"lists each {'batch size' if isinstance(v[0], int) else 'device'} once (got {v})")
        return v


class Tolerance(Strict):
    max_abs: Float | None = Field(None, gt=0, le=1e12)
    min_cosine: Float | None = Field(None, ge=-1, le=1)
    min_top1: Float | None = Field(None, ge=0, le=1, description="top-1 agreement with the reference; a "
                                   "proportion measured on the validation samples: it fails when the upper end "
                                   "of its confidence interval (top1_confidence) lies below this")
    top1_confidence: Float = Field(0.95, ge=0, lt=1, description="two-sided confidence of the Wilson interval "
                                   "min_top1 is judged with; 0 judges the measured agreement itself")


class ValidationSpec(Strict):
    samples: Int = Field(256, ge=1, le=1_000_000, description="evaluation inputs compared against the reference")
    top1_outputs: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, max_length=256, description="outputs whose argmax is a class, held to min_top1; default: every "
        "(N, classes) output, or none for a model that gives embeddings (an hf feature-extraction folder); [] for none")
    fp32: Tolerance = Tolerance(max_abs=1e-3, min_cosine=0.99999, min_top1=0.99)
    fp16: Tolerance = Tolerance(min_cosine=0.999, min_top1=0.98)
    int8: Tolerance = Tolerance(min_cosine=0.98, min_top1=0.95)
    # 4-bit weights (weight_only) lose more than int8: RTN int4 of all-MiniLM-L6-v2 in blocks
    # of 32 gives a mean cosine of 0.97, in blocks of 128 0.95.
    int4: Tolerance = Tolerance(min_cosine=0.95, min_top1=0.9)


class OutputSpec(Strict):
    dir: UserPath | None = Field(None, description="run directory; default runs/<name>")
    overwrite: Bool = False


class Recipe(Strict):
    version: Version
    name: str = Field(pattern=r"^[\w.-]+$", max_length=MAX_NAME, description="names the run directory (runs/<name>)")
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
    def _file_source_goes_to_its_target(self) -> "Recipe":
        # A file source is compressed by the one target that reads its format; the other
        # targets trace PyTorch. Keras goes through TensorFlow's TFLiteConverter.
        kind = self.model.kind
        if kind in FILE_SOURCES:
            own = FILE_SOURCES[kind]
            what = {"keras": "a Keras model converts", "onnx": "an ONNX file is compressed",
                    "tflite": "a TFLite file is compressed"}[kind]
            other = [t for t in self.targets if t != own]
            if other:
                raise ValueError(f"{what} only by the {own} target; {', '.join(other)} need a PyTorch model "
                                 f"('factory', 'program', 'hf' or 'timm'): use 'targets: {{{own}: {{}}}}'")
            steps = sorted({s.kind for s in self.steps if s.kind != "quantize"})
            if steps:
                raise ValueError(f"a {kind} source takes only 'quantize' steps; {', '.join(steps)} work on PyTorch "
                                 "models ('factory', 'program', 'hf' or 'timm')")
        return self

    @model_validator(mode="after")
    def _batches_fit(self) -> "Recipe":
        for spec in self.model.inputs or ():
            batch = max(self.benchmark.batch_sizes)
            n = batch * math.prod(spec.shape[1:])
            if n > MAX_ELEMENTS:
                raise ValueError(f"batch {batch} makes input {spec.name!r} {n:,} elements; one input takes at most "
                                 f"{MAX_ELEMENTS:,} (the int32 index limit of the runtimes' kernels): lower "
                                 "benchmark.batch_sizes")
        return self

    @model_validator(mode="after")
    def _data_for_steps(self) -> "Recipe":
        # Found here, not after the fp32 export: static int8 calibrates, QAT trains.
        static = [v.label for v in self.quant_variants if v.mode == "static"]
        if static and self.data.calibration is None:
            raise ValueError(f"static int8 ({', '.join(static)}) calibrates on data: add 'data: {{calibration: "
                             "{source: ...}}' (an .npz, 'digits' or a module:function), or use mode: dynamic")
        gptq = [v.label for v in self.quant_variants if v.mode == "weight_only" and v.algorithm == "gptq"]
        if gptq and self.data.calibration is None:
            raise ValueError(f"algorithm: gptq ({', '.join(gptq)}) calibrates on data: add 'data: {{calibration: "
                             "{source: ...}}', or use algorithm: rtn or hqq")
        if self.qat_steps and self.data.train is None:
            raise ValueError("the qat step fine-tunes on training data: add 'data: {train: {source: ...}}'")
        return self

    @model_validator(mode="after")
    def _top1_outputs_named(self) -> "Recipe":
        # A typo would quietly judge nothing by top-1: the names are the model's outputs.
        named, top1 = self.model.outputs, self.validation.top1_outputs or []
        unknown = [n for n in top1 if n not in named] if named else \
            [n for n in top1 if not re.fullmatch(r"output(_\d+)?", n)]
        if unknown:
            known = f"model.outputs names {named}" if named else \
                "the outputs are output, or output_0, output_1, ... (model.outputs names none)"
            raise ValueError(f"validation.top1_outputs names {unknown}, which the model does not give: {known}")
        return self

    @field_validator("name")
    @classmethod
    def _not_a_dot_path(cls, v: str) -> str:
        if set(v) == {"."}:
            raise ValueError(f"{v!r} would name the folder itself or its parent as the run directory: use letters")
        if len(v.encode()) > MAX_NAME:
            raise ValueError(f"{len(v.encode())} bytes in UTF-8; a name takes at most {MAX_NAME} (it names folders)")
        return v

    @model_validator(mode="after")
    def _tune_names_fit(self) -> "Recipe":
        # Tuning names each trial's recipe NAME-t<N> (and NAME-static-int8): those must fit too.
        room = MAX_NAME - len("-static-int8")
        if self.tune is not None and len(self.name.encode()) > room:
            raise ValueError(f"name: with a 'tune' section a name takes at most {room} bytes (trial recipes append "
                             "'-t<N>' or '-static-int8')")
        return self

    @field_validator("targets", mode="before")
    @classmethod
    def _list_form(cls, v: Any) -> Any:
        # `targets: [onnx]` is shorthand for `targets: {onnx: {}}`.
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            dup = sorted({x for x in v if v.count(x) > 1})
            if dup:
                raise ValueError(f"lists {', '.join(dup)} more than once; name each target once")
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
    text = read_file(path, "recipe")
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
            raise RecipeError(one_line(f"{filename}{line}: unknown target {name!r}{hint}; known targets: "
                                       f"{', '.join(sorted(target_options))}"))
        try:
            validated[name] = target_options[name].model_validate(opts)  # validated once, kept typed
        except ValidationError as e:
            raise RecipeError(describe(e, root, filename, target_options[name], prefix=("targets", name))) from None
    object.__setattr__(recipe, "targets", validated)

"""The recipe's `model` section: where the model comes from (one source key) and the
inputs it takes. Kept apart from the recipe so each stays small; the recipe re-exports it."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from compressor.config.strict import Bool, Int, Strict, UserPath

DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Elements of one input tensor, at most: the int32 index limit of the runtimes' kernels.
MAX_ELEMENTS = 2**31
# The inputs of a text encoder that the text and 'sentences' data sources fill.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class InputSpec(Strict):
    name: str = Field(min_length=1, max_length=256)
    shape: list[Annotated[Int, Field(ge=1, le=MAX_ELEMENTS)]] = Field(min_length=1, max_length=16)
    dtype: Literal[DTYPES] = "float32"  # type: ignore[valid-type]

    @field_validator("shape")
    @classmethod
    def _elements(cls, v: list[int]) -> list[int]:
        if math.prod(v) > MAX_ELEMENTS:
            raise ValueError(f"shape {v} holds {math.prod(v):,} elements; one input takes at most {MAX_ELEMENTS:,} "
                             "(2**31, the int32 index limit of the runtimes' kernels): check the dims")
        return v


# Model sources, one key each. The file sources are compressed by their own target.
TORCH_SOURCES = ("factory", "program", "hf", "timm")
FILE_SOURCES = {"keras": "tflite", "onnx": "onnx", "tflite": "tflite"}  # source key -> the one target it goes to
SOURCES = (*TORCH_SOURCES, *FILE_SOURCES)
HF_TASKS = ("feature-extraction", "sequence-classification", "image-classification")


class ModelSpec(Strict):
    factory: str | None = Field(None, description="Python factory 'pkg.module:callable' that builds the nn.Module")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory (or for "
                                   "timm.create_model)")
    weights: UserPath | None = Field(None, description="weights for 'factory' or 'timm': a safetensors file, or a "
                                     ".pt/.pth/.bin state dict (read with torch.load(weights_only=True))")
    program: UserPath | None = Field(None,
                                     description="a torch.export .pt2 ExportedProgram (pickle inside: needs trusted)")
    keras: UserPath | None = Field(None, description="a Keras model (.keras/.h5 file) or a SavedModel directory; "
                               "TensorFlow's TFLiteConverter converts it (tflite target only)")
    onnx: UserPath | None = Field(None, description="an existing .onnx file, compressed by the onnx target itself "
                                  "(inputs, names and dynamic axes come from the file)")
    tflite: UserPath | None = Field(None, description="an existing float .tflite file, compressed by the tflite "
                                    "target with ai-edge-quantizer")
    hf: UserPath | None = Field(None, description="a local Hugging Face model folder (config, weights, tokenizer "
                                "or image processor), read with local_files_only: nothing is downloaded")
    task: Literal[HF_TASKS] | None = Field(  # type: ignore[valid-type]
        None, description="hf: the head and inputs: feature-extraction (mean-pooled, normalised embeddings), "
        "sequence-classification, image-classification; default: from the folder's config")
    sequence_length: Int | None = Field(None, ge=1, le=1 << 20, description="hf text tasks: the token axis of the "
                                        "inputs (default 128, or the model's maximum when shorter)")
    timm: str | None = Field(None, min_length=1, max_length=200, description="a timm model name "
                             "(timm.create_model, no download: pretrained weights come from 'weights')")
    trusted: Bool = Field(False, description="allow formats that can run code when loaded (.pt2)")
    inputs: list[InputSpec] | None = Field(
        None, min_length=1, description="the model's inputs (name, shape with the batch first, dtype); needed for "
        "'factory', 'program' and 'keras'; 'onnx', 'tflite', 'hf' and 'timm' take them from the model and the "
        "recipe only overrides")
    outputs: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, description="names given to the model's outputs, in order (default: output, or output_0, output_1, ...)")

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, v: str | None) -> str | None:
        if v is not None and not FACTORY_RE.match(v):
            raise ValueError(f"factory must look like 'package.module:callable', got {v!r}")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_named(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("an empty list names no output: list the model's output names, or leave 'outputs' "
                             "out for the default names")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"output names must be unique, got {v}")
        return v

    @property
    def kind(self) -> str:
        """Which source key the recipe gives (one of SOURCES)."""
        return next(k for k in SOURCES if getattr(self, k) is not None)

    @property
    def source_path(self) -> Path | None:
        """The file or folder the model is read from (None for a factory without weights or a timm name
        without weights)."""
        for key in ("program", "keras", "onnx", "tflite", "hf", "weights"):
            if getattr(self, key) is not None:
                return getattr(self, key)
        return None

    @property
    def source_name(self) -> str:
        """The source as the reports name it."""
        value = getattr(self, self.kind)
        return f"timm:{value}" if self.kind == "timm" else str(value)

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSpec":
        given = [k for k in SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            also = f" (the recipe gives {', '.join(given)})" if given else ""
            raise ValueError("give exactly one model source: 'factory' (with optional 'weights'), 'program' (.pt2), "
                             "'keras', 'onnx', 'tflite', 'hf' (a Hugging Face folder) or 'timm' (a timm name)" + also)
        kind = given[0]
        if self.weights is not None and kind not in ("factory", "timm"):
            raise ValueError(f"'weights' goes with 'factory' or 'timm'; a {kind} source carries its own weights")
        if self.kwargs and kind not in ("factory", "timm"):
            raise ValueError(f"'kwargs' are passed to a factory or to timm.create_model; a {kind} source takes none")
        if (self.task is not None or self.sequence_length is not None) and kind != "hf":
            which = "task" if self.task is not None else "sequence_length"
            raise ValueError(f"'{which}' applies to a Hugging Face folder ('hf'), not to a {kind} source")
        if self.inputs is None and kind in ("factory", "program", "keras"):
            raise ValueError(f"a {kind} source needs 'inputs' (name, shape with the batch first, dtype): for "
                             "example inputs: [{name: x, shape: [1, 3, 224, 224]}]")
        names = [i.name for i in self.inputs or ()]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        clash = sorted(set(names) & set(self.outputs or ()))
        if clash:
            raise ValueError(f"{clash} names both an input and an output; the exported graphs need distinct names")
        return self

"""The quantization intent: variants of a `quantize` step and their fallback budget.

One intent, several lowerings: each target lowers a variant with its own engine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compressor.config.strict import MAX_LAYERS, MAX_SAMPLES, Bool, Float, Int, Strict
from compressor.config.weight_only import check_weight_only, fill_weight_only, weight_only_label


class FallbackSpec(Strict):
    """A fidelity/accuracy budget an int8 variant must meet on its target's runtime, and
    how far the toolchain may go (float layers, other lowerings) to meet it."""

    min_cosine: Float | None = Field(0.99, ge=-1, le=1, description="mean output cosine against the float model "
                                     "on the validation inputs, at least")
    min_worst_cosine: Float | None = Field(None, ge=-1, le=1, description="output cosine of the worst validation "
                                           "sample, at least (one broken sample is what users notice)")
    max_accuracy_drop: Float | None = Field(None, ge=0, le=100, description="accuracy drop against the float "
                                            "model on the evaluation data, in percentage points, at most")
    max_float_layers: Int | None = Field(None, ge=0, le=MAX_LAYERS,
                                         description="at most this many layers kept in float "
                                         "(None: as many as it takes)")
    alternatives: Bool = Field(True, description="when no float-layer set meets the budget, try the target's "
                               "other lowerings (calibration, per-tensor, symmetric, float op types)")
    granularity: Literal["layer", "block"] = Field(
        "layer", description="what is ranked and kept in float: leaf layers, or blocks (the model's top-level "
        "children, or its main stage's)")
    sensitivity: Literal["auto", "simulated", "target"] = Field(
        "auto", description="how layers are ranked, blocks first and then the layers of the sensitive blocks: "
        "simulated (the target's quantizer family in PyTorch; every target), target (the target's real "
        "lowering of one block or layer at a time, scored on its runtime or, for the torch-based targets, on "
        "the quantized module it traces; onnx static, torchscript static), or auto: target where the target "
        "offers it, else simulated")
    sensitivity_samples: Int = Field(128, ge=8, le=MAX_SAMPLES,
                                     description="validation inputs the sensitivity ranking is "
                                     "measured on")
    max_seconds: Float = Field(180.0, gt=0, le=7 * 24 * 3600, description="wall-clock seconds the search may "
                               "take (ranking, probes, per-layer latency); when they are spent it publishes the "
                               "best float set found so far that meets the budget, with a note, or refuses "
                               "naming the best cosine reached")

    @model_validator(mode="after")
    def _some_budget(self) -> "FallbackSpec":
        if self.min_cosine is None and self.max_accuracy_drop is None and self.min_worst_cosine is None:
            raise ValueError("give min_cosine, min_worst_cosine and/or max_accuracy_drop")
        return self


class QuantVariant(Strict):
    name: str | None = Field(None, description="artifact label; defaults to the precision, e.g. 'int8-static'")
    mode: Literal["static", "dynamic", "fp16", "qat", "weight_only"] = Field(
        description="qat: the model handed over already carries its learned quantization (the qat step makes "
        "it); the target lowers it without calibrating. weight_only: 4- or 8-bit weights of the linear layers "
        "(and embeddings) in blocks along the input axis, activations float")
    calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: Float = Field(99.999, gt=50, le=100, description="of |activation| the ranges clip at")
    calibration_samples: Int = Field(128, ge=1, le=MAX_SAMPLES, description="calibration inputs observed")
    # weight_only's own fields (None for the other modes; a weight_only variant gets the defaults below).
    bits: Literal[4, 8] | None = Field(None, description="weight_only: bits per weight (default 4)")
    group_size: Literal[32, 64, 128, 256, "channel"] | None = Field(
        None, description="weight_only: weights sharing one scale, along the input axis (default 32); "
        "channel: one scale per output channel")
    symmetric: Bool | None = Field(None, description="weight_only: weights without a zero point (default: true "
                                   "for 8 bits, false for 4)")
    algorithm: Literal["rtn", "hqq", "gptq"] | None = Field(
        None, description="weight_only: rtn (round to nearest; default), hqq (half-quadratic fit of scale and "
        "zero point, no data) or gptq (rounds each weight to make up for the errors of those before it, on "
        "calibration data: data.calibration, calibration_samples)")
    compute: Literal["float", "int8"] | None = Field(
        None, description="weight_only: float (the kernels dequantize the weights; default) or int8 (they "
        "quantize activations block by block as they go: ONNX Runtime's 8-bit kernels run 2.3x faster so on "
        "all-MiniLM-L6-v2, its 4-bit ones no faster; LiteRT's int4 blocks exist only so)")
    embeddings: Literal["int4", "int8", "float"] | None = Field(
        None, description="weight_only: embedding tables, in blocks of group_size along the embedding axis "
        "(default int8: a lookup does no arithmetic, so fewer bits only save size and cost fidelity)")
    per_channel: Bool = True
    symmetric_activations: Bool = False
    outliers: Literal["auto", "linear", "off"] = Field(
        "auto", description="auto: on a transformer (linear layers reading LayerNorm outputs), int8 covers the "
        "linear layers only, their outputs stay float (residual adds, LayerNorm, Softmax, GELU and the attention "
        "products stay float), activation outliers migrate into the weights (SmoothQuant, alpha searched per layer "
        "group), the few outlier input channels stay float and the layers one calibrated range cannot hold get "
        "per-inference ranges; each choice by simulated int8 error on the calibration data. linear: the linear "
        "layers only, without the rewrites. off: the quantizer's defaults. onnx and "
        "torchscript (static and dynamic), tflite (static)")
    smoothing_alpha: Float | None = Field(None, ge=0, le=1, description="SmoothQuant's migration strength for "
                                          "outliers: auto (None: searched per layer group)")
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

    @model_validator(mode="before")
    @classmethod
    def _weight_only_fields(cls, data):
        return fill_weight_only(data)

    @model_validator(mode="after")
    def _weight_only_combination(self) -> "QuantVariant":
        if self.mode == "weight_only":
            check_weight_only(self.bits, self.group_size, self.symmetric, self.algorithm, self.compute)
        return self

    @model_validator(mode="after")
    def _fallback_needs_int8(self) -> "QuantVariant":
        if self.fallback is not None and self.mode in ("fp16", "qat"):
            raise ValueError(f"fallback re-lowers the float model with layers kept in float: mode static or "
                             f"dynamic, not {self.mode} (drop 'fallback' or change the mode)")
        return self

    @property
    def label(self) -> str:
        if self.name is None and self.mode == "weight_only":
            return weight_only_label(self.bits)
        return self.name or {"static": "int8-static", "dynamic": "int8-dynamic", "fp16": "fp16",
                             "qat": "int8-qat"}[self.mode]

    @property
    def precision(self) -> str:
        if self.mode == "weight_only":
            return f"int{self.bits}"
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

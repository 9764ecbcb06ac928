"""The quantization intent: variants of a `quantize` step and their fallback budget.

One intent, several lowerings: each target lowers a variant with its own engine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compressor.config.strict import MAX_LAYERS, MAX_SAMPLES, Bool, Float, Int, Strict


class FallbackSpec(Strict):
    """A fidelity/accuracy budget an int8 variant must meet on its target's runtime, and
    how far the toolchain may go (float layers, other lowerings) to meet it."""

    min_cosine: Float | None = Field(0.99, ge=-1, le=1, description="mean output cosine against the float model "
                                     "on the validation inputs, at least")
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
    sensitivity: Literal["simulated", "target"] = Field(
        "simulated", description="how layers are ranked: simulated (the target's quantizer family in PyTorch, "
        "one layer at a time; every target) or target (the target's real lowering of one layer at a time, "
        "run on its runtime; onnx static int8)")
    sensitivity_samples: Int = Field(128, ge=8, le=MAX_SAMPLES,
                                     description="validation inputs the sensitivity ranking is "
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
    percentile: Float = Field(99.999, gt=50, le=100, description="of |activation| the ranges clip at")
    calibration_samples: Int = Field(128, ge=1, le=MAX_SAMPLES, description="calibration inputs observed")
    per_channel: Bool = True
    symmetric_activations: Bool = False
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

"""The `prune` step of a recipe: plain data, no torch.

    steps:
      - prune:
          structured: {target: {macs_ratio: 0.5}, importance: l1, round_to: 8}
          # or unstructured: {sparsity: 0.8, scope: global, schedule: gradual}
          # or nm: {n: 2, m: 4}
          ignore: [classifier]
          finetune: {epochs: 8, lr: 0.002, distill: {}}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from compressor.config.finetune import FinetuneConfig
from compressor.config.strict import MAX_SAMPLES, Bool, Float, Int, Strict

Ratio = Annotated[Float, Field(ge=0, lt=1)]


class UnstructuredSpec(Strict):
    """Magnitude pruning of single weights. Shrinks the compressed (gzip) size; dense
    kernels do not run faster on zeros."""

    sparsity: Ratio = Field(description="fraction of prunable weights set to zero, in [0, 1)")
    scope: Literal["global", "layer"] = Field("global", description="one threshold for all layers, or one each")
    norm: Literal["l1", "l2"] = Field("l1", description="|w| or w^2: the same order for single weights")
    schedule: Literal["one_shot", "gradual"] = Field(
        "one_shot", description="gradual: sparsity grows along a cubic schedule over the fine-tuning steps")
    gradual_end: Float = Field(0.75, gt=0, le=1, description="fraction of fine-tuning steps by which the "
                                                            "gradual schedule reaches its sparsity")
    layers: dict[str, Ratio] = Field(default_factory=dict, description="per-layer sparsity (scope 'layer')")


class NMSpec(Strict):
    """N:M semi-structured sparsity: N non-zeros in every M consecutive weights along the
    input dimension, for layers whose input dimension is a multiple of M."""

    n: Int = Field(2, ge=1, le=1023, description="non-zeros kept in every m weights")
    m: Int = Field(4, ge=2, le=1024, description="weights a group")

    @model_validator(mode="after")
    def _n_below_m(self) -> "NMSpec":
        if self.n >= self.m:
            raise ValueError(f"n must be below m (got {self.n}:{self.m})")
        return self


class PruneTarget(Strict):
    """What structured pruning aims for: a fraction of the dense model's MACs or of its
    latency measured on the target runtime. Exactly one."""

    macs_ratio: Float | None = Field(None, gt=0, lt=1, description="keep this fraction of the MACs")
    latency_ratio: Float | None = Field(None, gt=0, lt=1, description="keep this fraction of the latency")

    @model_validator(mode="after")
    def _one(self) -> "PruneTarget":
        if (self.macs_ratio is None) == (self.latency_ratio is None):
            raise ValueError("give exactly one of 'macs_ratio' or 'latency_ratio'")
        return self


class StructuredSpec(Strict):
    """Channel pruning on Torch-Pruning's dependency graph: coupled layers (residual adds,
    concatenations, depthwise convolutions) lose the same channels."""

    ratio: Ratio | None = Field(None, description="uniform channel pruning ratio, in [0, 1)")
    target: PruneTarget | None = Field(None, description="MACs or latency target; per-layer ratios are searched")
    layers: dict[str, Ratio] = Field(default_factory=dict, description="per-layer channel ratio (overrides)")
    importance: Literal["l1", "l2", "bn_scale", "taylor"] = "l1"
    round_to: Int = Field(8, ge=1, le=4096, description="keep channel counts a multiple of this (the kernels' block)")
    max_layer_ratio: Ratio = Field(0.75, description="no layer loses more than this fraction of its channels")
    skip_depthwise: Bool = Field(True, description="latency search: leave groups holding depthwise convs "
                                                  "(memory-bound, little latency per MAC) to the last")
    calibration_batches: Int = Field(4, ge=1, le=MAX_SAMPLES, description="training batches for Taylor importance")

    @model_validator(mode="after")
    def _how_much(self) -> "StructuredSpec":
        if self.ratio is not None and self.target is not None:
            raise ValueError("give 'ratio' or 'target', not both")
        if self.ratio is None and self.target is None and not self.layers:
            raise ValueError("give 'ratio', 'target' or per-layer 'layers'")
        return self


class PruneStep(Strict):
    unstructured: UnstructuredSpec | None = None
    nm: NMSpec | None = None
    structured: StructuredSpec | None = None
    ignore: list[str] = Field(default_factory=list, description="module names left untouched (e.g. the "
                                                                "classifier); the last linear layer always is")
    finetune: FinetuneConfig | None = Field(None, description="recover accuracy on data.train")

    @model_validator(mode="after")
    def _exactly_one(self) -> "PruneStep":
        given = [k for k in ("unstructured", "nm", "structured") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a prune step names exactly one of 'unstructured', 'nm', 'structured'")
        if self.unstructured is not None and self.unstructured.schedule == "gradual" and \
                (self.finetune is None or self.finetune.epochs == 0):
            raise ValueError("a gradual schedule runs over fine-tuning: add 'finetune' with epochs > 0")
        return self

    @property
    def method(self) -> str:
        return next(k for k in ("unstructured", "nm", "structured") if getattr(self, k) is not None)

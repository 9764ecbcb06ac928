"""The `qat` step of a recipe: plain data, no torch.

    steps:
      - qat:
          weight_bits: 4            # 4-bit weight range, stored in int8 (every target runs it)
          per_channel: false
          keep_float: [classifier]  # and/or sensitivity: {keep_most_sensitive: 1}
          freeze_observers_after: 3
          freeze_bn_after: 2
          finetune: {epochs: 4, lr: 0.0005, distill: {}}
"""

from __future__ import annotations

from pydantic import Field, model_validator

from compressor.config.finetune import FinetuneConfig
from compressor.config.strict import MAX_EPOCHS, MAX_LAYERS, MAX_SAMPLES, Bool, Int, Strict


class Sensitivity(Strict):
    """A per-layer pass: quantize one layer at a time, measure how far the outputs move
    from the float model's on evaluation inputs; the worst layers stay in float."""

    keep_most_sensitive: Int = Field(1, ge=0, le=MAX_LAYERS,
                                     description="this many of the most sensitive layers stay float")
    samples: Int = Field(256, ge=8, le=MAX_SAMPLES, description="evaluation inputs the error is measured on")


class QatStep(Strict):
    weight_bits: Int = Field(8, ge=2, le=8, description="weights take 2^(bits-1)-1 levels each side of zero, "
                             "stored as int8: fewer bits is a coarser grid on the same int8 kernels")
    per_channel: Bool = Field(True, description="one weight scale per output channel, or one per tensor")
    keep_float: list[str] = Field(default_factory=list, description="layer (module) names kept in float")
    sensitivity: Sensitivity | None = None
    freeze_observers_after: Int | None = Field(
        None, ge=0, le=MAX_EPOCHS, description="epochs after which scales and zero points stop moving (None: never)")
    freeze_bn_after: Int | None = Field(
        None, ge=0, le=MAX_EPOCHS, description="epochs after which BatchNorm uses its running statistics (None: never)")
    calibration_samples: Int = Field(256, ge=1, le=MAX_SAMPLES,
                                     description="training samples that set the initial ranges, "
                                     "and the PTQ baseline's")
    compare_ptq: Bool = Field(True, description="also export the same quantizer calibrated without training "
                              "(label int8-ptq-same): what QAT recovered, on each target")
    finetune: FinetuneConfig = FinetuneConfig(epochs=4, lr=5e-4)

    @model_validator(mode="after")
    def _freeze_within(self) -> "QatStep":
        for key in ("freeze_observers_after", "freeze_bn_after"):
            v = getattr(self, key)
            if v is not None and v > self.finetune.epochs:
                raise ValueError(f"{key} ({v}) is past the last epoch ({self.finetune.epochs})")
        return self

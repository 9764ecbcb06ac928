"""The `tune` section of a recipe: plain data, no torch, no optuna.

    tune:
      target: onnx
      trials: 20
      objectives: [latency, size]
      budget: {max_accuracy_drop: 0.5, min_cosine: 0.99}
      space:
        prune: {ratio: [0.0, 0.5], finetune_epochs: 4}
        modes: [static, dynamic]
        calibration: [minmax, percentile, entropy]
        calibration_samples: [64, 256]
        per_channel: [true, false]
        fallback: {max_layers: 2}
        qat: {epochs: [0, 4], lr: [0.0001, 0.001]}

Each trial derives an ordinary recipe from the base recipe and this space (steps:
prune? -> qat? -> quantize) and runs the ordinary pipeline on it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from compressor.config.strict import (MAX_EPOCHS, MAX_LAYERS, MAX_SAMPLES, MAX_SECONDS, MAX_SEED, Bool, Float, Int,
                                      Strict)


def _unique(values: list, what: str) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists each choice once (got {values})")
    return values


class Budget(Strict):
    """What a configuration must keep to count (feasible trials only make the front)."""

    max_accuracy_drop: Float | None = Field(
        None, ge=0, le=100, description="accuracy on the evaluation data at most this many percentage points "
        "below the fp32 (dense, unquantized) PyTorch model's")
    min_cosine: Float | None = Field(
        None, ge=-1, le=1, description="mean output cosine of the artifact against the PyTorch model it was "
        "exported from (the pipeline's fidelity), at least")

    @model_validator(mode="after")
    def _some(self) -> "Budget":
        if self.max_accuracy_drop is None and self.min_cosine is None:
            raise ValueError("give max_accuracy_drop and/or min_cosine")
        return self


class PruneSpace(Strict):
    """Structured (channel) pruning with a uniform ratio, then fine-tuning on data.train."""

    ratio: tuple[Annotated[Float, Field(ge=0, lt=1)], Annotated[Float, Field(ge=0, lt=1)]] = Field(
        description="[low, high] channel pruning ratio; 0 means no pruning step")
    finetune_epochs: Int = Field(4, ge=0, le=MAX_EPOCHS, description="fine-tuning epochs after pruning")
    lr: Float = Field(2e-3, gt=0, le=100, description="fine-tuning learning rate after pruning")

    @field_validator("ratio")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"ratio is [low, high] with low <= high (got {list(v)})")
        return v


class QatSpace(Strict):
    """Quantization-aware training instead of calibration (0 epochs: post-training quantization)."""

    epochs: tuple[Annotated[Int, Field(ge=0, le=MAX_EPOCHS)], Annotated[Int, Field(ge=0, le=MAX_EPOCHS)]] = Field(
        description="[low, high] QAT epochs; 0 means post-training quantization")
    lr: tuple[Annotated[Float, Field(gt=0, le=100)], Annotated[Float, Field(gt=0, le=100)]] = Field(
        (1e-4, 1e-3), description="[low, high] QAT learning rate, searched on a log scale")

    @model_validator(mode="after")
    def _ordered(self) -> "QatSpace":
        for key in ("epochs", "lr"):
            low, high = getattr(self, key)
            if low > high:
                raise ValueError(f"qat.{key} is [low, high] with low <= high (got {[low, high]})")
        if self.epochs[1] == 0:
            raise ValueError("qat.epochs [0, 0] never trains: drop 'qat' from the space or raise the high end")
        return self


class FallbackSpace(Strict):
    """Keep the k most quantization-sensitive layers in float, k in [0, max_layers], in
    static and QAT trials; the ranking is measured once per study on the evaluation data."""

    max_layers: Int = Field(ge=1, le=MAX_LAYERS, description="k is searched in [0, max_layers]")


class SearchSpace(Strict):
    prune: PruneSpace | None = Field(None, description="structured pruning before quantization (None: never)")
    modes: list[Literal["static", "dynamic", "fp16"]] = Field(["static"], min_length=1,
                                                             description="quantization modes to choose from")
    calibration: list[Literal["minmax", "percentile", "entropy"]] = Field(["minmax"], min_length=1)
    percentile: Float = Field(99.99, gt=50, le=100, description="the percentile, when calibration is percentile")
    calibration_samples: list[Annotated[Int, Field(ge=1, le=MAX_SAMPLES)]] = Field([128], min_length=1)
    per_channel: list[Bool] = Field([True], min_length=1)
    fallback: FallbackSpace | None = Field(None, description="float layers from the sensitivity ranking")
    qat: QatSpace | None = Field(None, description="quantization-aware training (static int8 it learns)")

    @field_validator("modes", "calibration", "calibration_samples", "per_channel")
    @classmethod
    def _no_repeats(cls, v: list, info) -> list:
        return _unique(v, info.field_name)


class TuneBenchmark(Strict):
    """A lighter benchmark for each trial than the recipe's own (many trials, small noise
    matters less than time): overrides of the recipe's `benchmark`."""

    runs: Int = Field(100, ge=5, le=10_000_000, description="timed runs, at least this many")
    warmup: Int = Field(10, ge=0, le=1_000_000, description="warm-up runs, at least this many")
    warmup_s: Float = Field(0.2, ge=0, le=3600, description="ONNX Runtime and the CPU need a moment: shorter warm-ups "
                            "measured tiny models 3-4x slow")
    memory: Bool = Field(False, description="peak memory in a fresh process per artifact (slower)")


class TuneSpec(Strict):
    target: str | None = Field(None, description="the target whose artifact is measured (default: the recipe's "
                               "only target)")
    trials: Int = Field(20, ge=1, le=100_000,
                        description="trials in the study in all (a resumed study counts earlier ones)")
    timeout_s: Float | None = Field(None, gt=0, le=30 * MAX_SECONDS,
                                    description="stop starting trials after this many seconds")
    engine: Literal["optuna", "inc"] = Field(
        "optuna", description="optuna: the whole space on any target; inc: Intel Neural Compressor's autotune "
        "over its static int8 configurations (PyTorch PT2E path)")
    sampler: Literal["tpe", "nsga2"] = "tpe"
    seed: Int | None = Field(0, ge=0, le=MAX_SEED, description="sampler seed (None: a different search every time)")
    objectives: list[Literal["latency", "size"]] = Field(
        ["latency", "size"], min_length=1, description="minimised on the target runtime: p50 latency at the "
        "first batch size (divided by the reference workload's, timed in the same process, so that trials "
        "minutes apart on a busy machine compare), and/or size on disk")
    budget: Budget
    storage: str | None = Field(None, description="SQLAlchemy database URL of the study (default: "
                                "sqlite:///<out>/study.db); share one URL to tune from several machines")
    study: str | None = Field(None, description="study name (default: the recipe's name)")
    benchmark: TuneBenchmark = TuneBenchmark()
    space: SearchSpace = SearchSpace()

    @field_validator("objectives")
    @classmethod
    def _no_repeats(cls, v: list) -> list:
        return _unique(v, "objectives")

"""How to train: `finetune:` blocks that the prune and qat steps embed. Plain data;
`compressor.finetune` runs it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compressor.config.strict import Strict


class Schedule(Strict):
    kind: Literal["constant", "step", "exponential", "cosine"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from 0 to lr over this many epochs")
    step_epochs: int = Field(10, ge=1, description="'step': multiply the rate by gamma every this many epochs")
    gamma: float = Field(0.1, gt=0, le=1, description="'step': factor per step; 'exponential': factor per epoch")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="'cosine': the floor, as a fraction of lr")


class Distillation(Strict):
    """Knowledge distillation from the unpruned (or float) model."""

    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation loss; 1 - alpha on the labels")


class Augmentation(Strict):
    """Cheap augmentation for image inputs (N, C, H, W); other inputs pass unchanged."""

    shift: int = Field(0, ge=0, description="random translation of up to this many pixels, zero-filled")
    hflip: bool = Field(False, description="random horizontal flips (not for digits or text)")
    noise: float = Field(0.0, ge=0, description="standard deviation of Gaussian noise added to the inputs")


class EarlyStopping(Strict):
    patience: int = Field(3, ge=1, description="epochs without improvement of evaluation accuracy")
    min_delta: float = Field(0.0, ge=0, description="an improvement smaller than this does not count")


class FinetuneConfig(Strict):
    """How to train: from `data.train` of the recipe, evaluated on `data.evaluation`."""

    epochs: int = Field(5, ge=0)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    weight_decay: float = Field(0.0, ge=0)
    l1: float = Field(0.0, ge=0, description="L1 penalty on conv/linear weights (drives weights to zero)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    schedule: Schedule = Schedule()
    distill: Distillation | None = None
    augment: Augmentation | None = None
    bn_recalibration: int = Field(0, ge=0, description="batches of training data to re-estimate BatchNorm "
                                                       "statistics after training (0: off)")
    early_stopping: EarlyStopping | None = None
    threads: int | None = Field(None, ge=1, description="torch threads while training; default: 1 for models "
                                "under 1M parameters (a thread pool costs more than it saves on small ops), "
                                "else torch's own setting")
    seed: int = 0

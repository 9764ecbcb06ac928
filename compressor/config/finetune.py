"""How to train: `finetune:` blocks that the prune and qat steps embed. Plain data;
`compressor.finetune` runs it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compressor.config.strict import MAX_BATCH, MAX_EPOCHS, MAX_SEED, MAX_THREADS, Bool, Float, Int, Strict


class Schedule(Strict):
    kind: Literal["constant", "step", "exponential", "cosine"] = "cosine"
    warmup_epochs: Float = Field(0.0, ge=0, le=MAX_EPOCHS,
                                 description="linear warm-up from 0 to lr over this many epochs")
    step_epochs: Int = Field(10, ge=1, le=MAX_EPOCHS,
                             description="'step': multiply the rate by gamma every this many epochs")
    gamma: Float = Field(0.1, gt=0, le=1, description="'step': factor per step; 'exponential': factor per epoch")
    min_lr_ratio: Float = Field(0.0, ge=0, le=1, description="'cosine': the floor, as a fraction of lr")


class Distillation(Strict):
    """Knowledge distillation from the unpruned (or float) model."""

    temperature: Float = Field(4.0, gt=0, le=1000, description="softens both models' outputs before they are compared")
    alpha: Float = Field(0.5, ge=0, le=1, description="weight of the distillation loss; 1 - alpha on the labels")


class Augmentation(Strict):
    """Cheap augmentation for image inputs (N, C, H, W); other inputs pass unchanged."""

    shift: Int = Field(0, ge=0, le=4096, description="random translation of up to this many pixels, zero-filled")
    hflip: Bool = Field(False, description="random horizontal flips (not for digits or text)")
    noise: Float = Field(0.0, ge=0, le=1e6, description="standard deviation of Gaussian noise added to the inputs")


class EarlyStopping(Strict):
    patience: Int = Field(3, ge=1, le=MAX_EPOCHS, description="epochs without improvement of evaluation accuracy")
    min_delta: Float = Field(0.0, ge=0, le=100, description="an improvement smaller than this does not count")


class FinetuneConfig(Strict):
    """How to train: from `data.train` of the recipe, evaluated on `data.evaluation`."""

    epochs: Int = Field(5, ge=0, le=MAX_EPOCHS, description="passes over data.train")
    batch_size: Int = Field(64, ge=1, le=MAX_BATCH, description=f"training samples a step, 1 to {MAX_BATCH}")
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: Float = Field(1e-3, gt=0, le=100, description="learning rate")
    momentum: Float = Field(0.9, ge=0, lt=1, description="sgd only")
    weight_decay: Float = Field(0.0, ge=0, le=100, description="decoupled (adamw) or L2 (sgd, adam) weight decay")
    l1: Float = Field(0.0, ge=0, le=100, description="L1 penalty on conv/linear weights (drives weights to zero)")
    label_smoothing: Float = Field(0.0, ge=0, lt=1)
    schedule: Schedule = Schedule()
    distill: Distillation | None = None
    augment: Augmentation | None = None
    bn_recalibration: Int = Field(0, ge=0, le=1_000_000,
                                  description="batches of training data to re-estimate BatchNorm "
                                  "statistics after training (0: off)")
    early_stopping: EarlyStopping | None = None
    threads: Int | None = Field(None, ge=1, le=MAX_THREADS,
                                description="torch threads while training; default: 1 for models "
                                "under 1M parameters (a thread pool costs more than it saves on small ops), "
                                "else torch's own setting")
    seed: Int = Field(0, ge=0, le=MAX_SEED, description="seeds shuffling, augmentation and dropout")

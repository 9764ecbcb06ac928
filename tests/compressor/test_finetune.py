"""The shared training loop on the real digits data: schedules, distillation,
augmentation, early stopping, BatchNorm recalibration."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from compressor.data import Dataset, load_dataset
from compressor.errors import DataError
from compressor.config.finetune import FinetuneConfig, Schedule
from compressor.finetune import _lr_lambda, accuracy, finetune, recalibrate_bn
from compressor.config.recipe import DataSource
from tests.conftest import DIGITS_INPUTS

NAMES = ["pixels"]


@pytest.fixture(scope="module")
def train():
    return load_dataset(DataSource(source="digits", split="train"), DIGITS_INPUTS)


@pytest.fixture(scope="module")
def test_set():
    return load_dataset(DataSource(source="digits", split="test"), DIGITS_INPUTS)


def test_learning_rate_schedules():
    step = _lr_lambda(Schedule(kind="step", step_epochs=2, gamma=0.5), steps_per_epoch=10, total=60)
    assert [step(i) for i in (0, 19, 20, 40)] == [1.0, 1.0, 0.5, 0.25]
    expo = _lr_lambda(Schedule(kind="exponential", gamma=0.9), 10, 60)
    assert expo(30) == pytest.approx(0.9 ** 3)
    cos = _lr_lambda(Schedule(kind="cosine", warmup_epochs=1, min_lr_ratio=0.1), 10, 60)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)  # linear warm-up
    assert cos(10) == pytest.approx(1.0) and cos(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert cos(60) == pytest.approx(0.1)


def test_distillation_with_augmentation_recovers_a_damaged_model(digits_model, train, test_set):
    student = copy.deepcopy(digits_model.module)
    torch.manual_seed(1)
    student.classifier.reset_parameters()  # the head forgets everything
    assert accuracy(student, test_set, NAMES) < 0.5
    cfg = FinetuneConfig(epochs=4, lr=3e-3, distill={"temperature": 4, "alpha": 0.7},
                         augment={"shift": 1, "noise": 0.01}, schedule={"kind": "cosine", "warmup_epochs": 0.5})
    hist = finetune(student, train, cfg, NAMES, test_set, teacher=digits_model.module)
    assert accuracy(student, test_set, NAMES) >= 0.97
    assert len(hist.epochs) == 4 and hist.epochs[-1].loss < hist.epochs[0].loss
    assert all(e.train_accuracy is not None and e.eval_accuracy is not None for e in hist.epochs)


def test_distillation_alone_trains_without_labels(digits_model, train, test_set):
    student = copy.deepcopy(digits_model.module)
    student.classifier.reset_parameters()
    unlabeled = Dataset(train.inputs)
    finetune(student, unlabeled, FinetuneConfig(epochs=3, lr=3e-3, distill={}), NAMES, teacher=digits_model.module)
    assert accuracy(student, test_set, NAMES) >= 0.95
    with pytest.raises(DataError, match="needs labels"):
        finetune(student, unlabeled, FinetuneConfig(epochs=1), NAMES)


def test_early_stopping_keeps_the_best_epoch(digits_model, train, test_set):
    model = copy.deepcopy(digits_model.module)
    # A learning rate too high for fine-tuning: accuracy wanders, patience 1 stops it.
    cfg = FinetuneConfig(epochs=12, lr=0.05, optimizer="sgd", schedule={"kind": "constant"},
                         early_stopping={"patience": 1})
    hist = finetune(model, train, cfg, NAMES, test_set)
    best = max(e.eval_accuracy for e in hist.epochs)
    assert hist.best_epoch is not None and hist.epochs[hist.best_epoch - 1].eval_accuracy == best
    assert accuracy(model, test_set, NAMES) == pytest.approx(best)
    assert hist.stopped_early == (len(hist.epochs) < 12)


def test_l1_regularisation_shrinks_weights(digits_model, train):
    plain, l1 = copy.deepcopy(digits_model.module), copy.deepcopy(digits_model.module)
    finetune(plain, train, FinetuneConfig(epochs=2, lr=1e-3), NAMES)
    finetune(l1, train, FinetuneConfig(epochs=2, lr=1e-3, l1=1e-4), NAMES)
    norm = lambda m: sum(float(p.detach().abs().sum()) for n, p in m.named_parameters() if n.endswith("weight"))  # noqa
    assert norm(l1) < norm(plain)


def test_bn_recalibration_repairs_stale_statistics(digits_model, train, test_set):
    model = copy.deepcopy(digits_model.module)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.add_(torch.from_numpy(np.random.default_rng(0).normal(0, 2, m.running_mean.shape))
                                .float())
    assert accuracy(model, test_set, NAMES) < 0.9
    assert recalibrate_bn(model, train, NAMES, batches=10, batch_size=128)
    assert accuracy(model, test_set, NAMES) >= 0.98
    assert not model.training

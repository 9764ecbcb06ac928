"""A small QAT job for the distributed test: run under torchrun (2 processes, gloo) or
alone; rank 0 writes the converted model's state and accuracy to argv[1]."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from compressor.data import load_dataset
from compressor.distributed import init_from_env
from compressor.model import load_model
from compressor.config.qat import QatStep
from compressor.qat.run import qat_family
from compressor.config.recipe import DataSource, InputSpec, ModelSpec
from compressor.zoo.digits import WEIGHTS_PATH

ZOO = WEIGHTS_PATH
INPUTS = [InputSpec(name="pixels", shape=[1, 1, 8, 8])]
# BatchNorm frozen from the start: with batch statistics each process would normalise its
# own half-batch, a real (and expected) difference from one process on the whole batch.
STEP = QatStep(weight_bits=4, per_channel=False, compare_ptq=False, freeze_bn_after=0, calibration_samples=64,
               finetune={"epochs": 2, "batch_size": 64, "lr": 1e-3, "seed": 3})


def main(out: Path) -> None:
    warnings.filterwarnings("ignore")
    world = init_from_env()
    model = load_model(ModelSpec(factory="compressor.zoo.digits:digits_cnn", weights=ZOO, inputs=INPUTS))
    train = load_dataset(DataSource(source="digits", split="train", limit=512), INPUTS)
    test = load_dataset(DataSource(source="digits", split="test"), INPUTS)
    res = qat_family(model, STEP, "x86", train, test, [], out / "ckpt.pt", "fp", False, world)
    if world.is_main:
        torch.save({"state": res.qat.module.state_dict(), "accuracy": res.qat_accuracy, "world": world.size},
                   out / "result.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

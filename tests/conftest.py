"""Shared fixtures: the shipped digits CNN, the real digits data, and ONNX artifacts
exported once per session (an export costs seconds, so tests share them)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from compressor.data import digits_arrays, load_dataset
from compressor.model import load_model
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import DataSource, InputSpec, ModelSpec
from compressor.zoo.digits import WEIGHTS_PATH

ZOO_WEIGHTS = WEIGHTS_PATH
DIGITS_INPUTS = [InputSpec(name="pixels", shape=[1, 1, 8, 8], dtype="float32")]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.reshape(len(labels), -1).argmax(-1) == labels).mean())


@pytest.fixture
def write_recipe(tmp_path):
    """write_recipe(text, name='recipe.yaml', directory=tmp_path) -> path of the dedented YAML."""

    def write(text: str, name: str = "recipe.yaml", directory: Path | None = None) -> Path:
        path = Path(directory or tmp_path) / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def top1():
    """top1(logits, labels) -> accuracy in [0, 1]."""
    return accuracy


@pytest.fixture(scope="session")
def digits_test() -> tuple[np.ndarray, np.ndarray]:
    return digits_arrays("test")


@pytest.fixture(scope="session")
def digits_model():
    spec = ModelSpec(factory="compressor.zoo.digits:digits_cnn", weights=ZOO_WEIGHTS,
                     inputs=DIGITS_INPUTS, outputs=["logits"])
    return load_model(spec)


@pytest.fixture(scope="session")
def torch_test_logits(digits_model, digits_test) -> np.ndarray:
    x, _ = digits_test
    return digits_model.run({"pixels": x})[0]


@pytest.fixture(scope="session")
def calibration_data():
    return load_dataset(DataSource(source="digits", split="train", limit=128), DIGITS_INPUTS)


@pytest.fixture(scope="session")
def onnx_artifacts(tmp_path_factory, digits_model, calibration_data) -> dict:
    """fp32 plus every ONNX lowering of the digits CNN, exported once: label -> Artifact."""
    import targets

    target = targets.get("onnx")
    out = tmp_path_factory.mktemp("onnx-artifacts")
    arts = {"fp32": target.export(digits_model, None, out / "digits.fp32", {}, calibration_data)}
    variants = [QuantVariant(name=f"static-{m}", mode="static", calibration=m) for m in
                ("minmax", "percentile", "entropy")]
    variants += [QuantVariant(mode="dynamic"), QuantVariant(mode="fp16")]
    for v in variants:
        arts[v.label] = target.export(digits_model, v, out / f"digits.{v.label}", {}, calibration_data,
                                      base=arts["fp32"])
    return arts


@pytest.fixture(scope="session")
def ort_session():
    """Open an ONNX file with onnxruntime on the CPU, two threads."""
    import targets
    from targets.base import Device

    def open_(path: Path):
        return targets.get("onnx").open_session(Path(path), Device("cpu"), 2)

    return open_

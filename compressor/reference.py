"""The float reference every artifact is held to: the source model's outputs on the
validation inputs and its accuracy on the evaluation data; and top-1 accuracy, once.

A model here is anything with `inputs`, `run(feeds)` and `example_feeds(n)`: a PyTorch
`compressor.model.Model`, or the TFLite target's handle of a Keras model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch stays out of the harness and the CLI, which import top1
    from compressor.data import Dataset
    from compressor.model import Model

VALIDATION_BATCH = 64


@dataclass
class Reference:
    """The float model's outputs on the validation inputs, and its own accuracy."""

    inputs: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    accuracy: float | None
    eval_samples: int | None
    on_real_data: bool


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest logit is their label (logits: one row a sample)."""
    return float((np.asarray(logits).reshape(len(labels), -1).argmax(-1) == labels).mean())


def reference_for(model: "Model", evaluation: "Dataset | None", samples: int) -> Reference:
    if evaluation is not None and len(evaluation):
        inputs, real = evaluation.take(samples).inputs, True
    else:  # no evaluation data: compare on deterministic synthetic inputs
        inputs, real = model.example_feeds(min(samples, 16)), False
    outputs = run_chunked(model, inputs)
    accuracy = None
    if evaluation is not None and evaluation.labels is not None:
        logits = run_chunked(model, evaluation.inputs)[0]
        _check_labels(evaluation.labels, logits)
        accuracy = top1(logits, evaluation.labels)
    return Reference(inputs=inputs, outputs=outputs, accuracy=accuracy,
                     eval_samples=None if evaluation is None else len(evaluation), on_real_data=real)


def _check_labels(labels: np.ndarray, logits: np.ndarray) -> None:
    """Labels the model's first output cannot score (accuracy would read 0% or worse, lie)."""
    from compressor.errors import DataError

    classes = logits.reshape(len(labels), -1).shape[1] if len(labels) else 0
    if len(labels) and int(labels.max()) >= classes:
        at = int(np.argmax(labels >= classes))
        raise DataError(f"evaluation labels go up to {int(labels.max())} (first at sample {at}), but the model's "
                        f"first output scores {classes} classes; give labels 0..{classes - 1} or put the logits "
                        "output first in model.outputs")


def run_chunked(model: "Model", inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    n = len(next(iter(inputs.values())))
    chunks = [model.run({k: v[i:i + VALIDATION_BATCH] for k, v in inputs.items()})
              for i in range(0, n, VALIDATION_BATCH)]
    return [np.concatenate(parts) for parts in zip(*chunks)]

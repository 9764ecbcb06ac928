"""Evaluation data for the harness: an .npz of inputs keyed by input name, plus 'labels'
(integer class indices, one a sample), in the model's declared layout.

read() checks the file on its own (the CLI calls it before anything is measured);
match() checks it against the loaded artifact (in the worker, before the timing starts);
check_labels() checks the labels against the model's scores. Every problem is one
DataError line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.data import NPZ_HOW, class_labels, finite, numeric, read_npz
from compressor.errors import DataError, InputShapeError


def read(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(inputs by name, labels or None) of the .npz at `path`, each checked: the file is
    read and the arrays checked as a recipe's data are (compressor.data), in its words."""
    path = Path(path)
    where = f"evaluation data {path}"
    arrays = read_npz(path, where)
    labels = arrays.pop("labels", None)
    if not arrays:
        raise DataError(f"{where} holds only labels; {NPZ_HOW}")
    n = None
    for key, a in arrays.items():
        what = f"array {key!r}"
        numeric(a, where, what)
        if a.ndim == 0 or len(a) == 0:
            raise DataError(f"{where}: {what} has shape {list(a.shape)}: no samples; the first axis counts the "
                            "samples")
        finite(a, where, what)
        if n is not None and len(a) != n:
            raise DataError(f"{where}: the arrays hold different numbers of samples ({n} and {len(a)} in {key!r}); "
                            "give every input the same samples")
        n = len(a)
    return arrays, class_labels(labels, n, where)


def match(arrays: dict[str, np.ndarray], session, where: str) -> dict[str, np.ndarray]:
    """The inputs of `session` from `arrays` (already in the artifact's layout), cast to its
    dtypes: every input needs its array, with samples of the shape the artifact takes."""
    names = [s.name for s in session.inputs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"evaluation data {where} has no array for the model's input{'s' * (len(missing) > 1)} "
                        f"{', '.join(map(repr, missing))} (it has {', '.join(map(repr, sorted(arrays)))}); key each "
                        "array by the input it feeds")
    out = {}
    for spec in session.inputs:
        a = arrays[spec.name]
        want = list(spec.shape[1:])
        fits = a.ndim == len(spec.shape) and all(not isinstance(d, int) or d <= 0 or d == got
                                                 for d, got in zip(want, a.shape[1:]))
        if not fits:
            raise InputShapeError(f"evaluation data {where}: array {spec.name!r} has samples of shape "
                                  f"{list(a.shape[1:])}, the model's input takes {want} (its shape is "
                                  f"{list(spec.shape)}); fix the data's layout or shape")
        if np.dtype(spec.dtype).kind in "iub" and a.dtype.kind == "f" and np.any(a != np.round(a)):
            raise DataError(f"evaluation data {where}: array {spec.name!r} holds fractional values, but the input "
                            f"takes {spec.dtype}; give whole numbers")
        out[spec.name] = a.astype(spec.dtype, copy=False)
    return out


def check_labels(scores: np.ndarray, labels: np.ndarray, where: str) -> None:
    """The model's first output must read as one row of class scores per label, with a
    column for the largest label."""
    scores = np.asarray(scores)
    if scores.size == 0 or scores.size % len(labels):
        raise DataError(f"evaluation data {where}: the model's first output {list(scores.shape)} is not one row of "
                        f"class scores for each of the {len(labels)} labels; drop the labels to time it without "
                        "accuracy")
    classes = scores.size // len(labels)
    if int(labels.max()) >= classes:
        raise DataError(f"evaluation data {where}: label {int(labels.max())} is no class of the model, whose output "
                        f"scores {classes} classes (0 to {classes - 1}); check the labels")

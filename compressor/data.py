"""Calibration, evaluation and training data: one contract for every source.

A `Dataset` holds arrays keyed by model input name (first axis = samples) and
optional integer labels. Sources: the built-in `digits` (scikit-learn's real
handwritten digits, 8x8), the built-in `sentences` (sentence-like token ids for text
encoders, compressor.zoo.text), an `.npz` file, or a Python callable `pkg.module:fn`.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from compressor.errors import CompressorError, DataError
from compressor.config.recipe import DataSource, InputSpec

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.25
LABEL_KEYS = ("labels", "label", "y", "targets")


@dataclass(frozen=True)
class Dataset:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, n: int | None) -> "Dataset":
        if n is None or n >= len(self):
            return self
        return Dataset({k: v[:n] for k, v in self.inputs.items()},
                       None if self.labels is None else self.labels[:n])

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Full batches of `batch_size` (a trailing partial batch is dropped when it
        would not fit a fixed-shape model, unless it is the only one)."""
        n = len(self)
        for start in range(0, n, batch_size):
            yield {k: v[start:start + batch_size] for k, v in self.inputs.items()}

    def save_npz(self, path: Path) -> None:
        arrays = dict(self.inputs)
        if self.labels is not None:
            arrays["labels"] = self.labels
        np.savez(path, **arrays)


def digits_arrays(split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits as (N,1,8,8) float32 in [0,1] and int64
    labels. The train/test split is stratified and fixed, so results are comparable."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    if split == "all":
        return x, y
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION,
                                          random_state=DIGITS_SEED, stratify=y)
    return (xtr, ytr) if split == "train" else (xte, yte)


def load_dataset(src: DataSource, inputs: list[InputSpec], base_dir: Path = Path(".")) -> Dataset:
    """Load `src` and check it against the model's declared inputs."""
    if src.source == "digits":
        x, y = digits_arrays(src.split)
        ds = _single_input("digits", x, y, inputs)
    elif src.source == "sentences":
        ds = sentences(src.split, inputs, src.vocab_size)
    elif src.source.endswith(".npz"):
        ds = _from_npz(base_dir / src.source if not Path(src.source).is_absolute() else Path(src.source), inputs)
    elif ":" in src.source:
        ds = _from_callable(src.source, src.split, inputs, base_dir)
    else:
        raise DataError(f"data source {src.source!r}: use 'digits', 'sentences', a path ending in .npz, "
                        "or a callable 'pkg.module:function'")
    _check(ds, inputs, src.source)
    return ds.take(src.limit)


def sentences(split: str, inputs: list[InputSpec], vocab_size: int | None = None) -> Dataset:
    """Sentence-like token ids for the model's text inputs (input_ids, attention_mask,
    token_type_ids, padded to the declared sequence length). The train/test split is a
    fixed cut of one seeded set of TEXT_SAMPLES sequences."""
    from compressor.zoo.text import BERT_VOCAB, TEXT_SAMPLES, sentence_tokens

    names = [i.name for i in inputs]
    known = ("input_ids", "attention_mask", "token_type_ids")
    other = [n for n in names if n not in known]
    if "input_ids" not in names or other:
        raise DataError(f"data source 'sentences' feeds text encoders with inputs named {', '.join(known)} "
                        f"(input_ids required); the model declares {names}")
    shapes = {tuple(i.shape[1:]) for i in inputs}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise DataError(f"data source 'sentences' gives [batch, sequence] token arrays; the model declares "
                        f"{', '.join(f'{i.name} {i.shape}' for i in inputs)}")
    seq_len = next(iter(shapes))[0]
    try:
        arrays = sentence_tokens(TEXT_SAMPLES, seq_len, vocab_size or BERT_VOCAB,
                                 type_vocab_size=2 if "token_type_ids" in names else 1)
    except ValueError as e:
        raise DataError(f"data source 'sentences': {e}") from None
    cut = TEXT_SAMPLES * 3 // 4
    part = {"train": slice(0, cut), "test": slice(cut, None), "all": slice(None)}[split]
    return Dataset({n: arrays[n][part] for n in names})


def _single_input(origin: str, x: np.ndarray, y: np.ndarray | None, inputs: list[InputSpec]) -> Dataset:
    if len(inputs) != 1:
        raise DataError(f"data source {origin!r} gives one input array but the model declares "
                        f"{len(inputs)} inputs ({', '.join(i.name for i in inputs)})")
    return Dataset({inputs[0].name: x}, y)


def _from_npz(path: Path, inputs: list[InputSpec]) -> Dataset:
    if not path.is_file():
        raise DataError(f"data file {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"data file {path}: not a readable .npz archive ({e})") from None
    return _from_mapping(str(path), arrays, inputs)


def _from_mapping(origin: str, arrays: dict[str, np.ndarray], inputs: list[InputSpec]) -> Dataset:
    labels = next((np.asarray(arrays.pop(k)) for k in LABEL_KEYS if k in arrays), None)
    names = [i.name for i in inputs]
    if all(n in arrays for n in names):
        return Dataset({n: np.asarray(arrays[n]) for n in names}, labels)
    if len(arrays) == 1 and len(names) == 1:
        return Dataset({names[0]: np.asarray(next(iter(arrays.values())))}, labels)
    raise DataError(f"data {origin}: arrays {sorted(arrays)} do not name the model inputs {names}; "
                    "key each array by its input name (and labels by 'labels')")


def _from_callable(spec: str, split: str, inputs: list[InputSpec], base_dir: Path) -> Dataset:
    fn = import_object(spec, base_dir, what="data source")
    try:
        out = fn(split=split)
    except TypeError:
        out = fn()
    if isinstance(out, Dataset):
        return out
    if isinstance(out, tuple) and len(out) == 2:
        x, y = out
        if isinstance(x, dict):
            return _from_mapping(spec, {**x, "labels": y}, inputs)
        return _single_input(spec, np.asarray(x), None if y is None else np.asarray(y), inputs)
    if isinstance(out, dict):
        return _from_mapping(spec, dict(out), inputs)
    return _single_input(spec, np.asarray(out), None, inputs)


def _check(ds: Dataset, inputs: list[InputSpec], origin: str) -> None:
    n = None
    for spec in inputs:
        if spec.name not in ds.inputs:
            raise DataError(f"data {origin!r}: no array for input {spec.name!r}; it gives {sorted(ds.inputs)}")
        arr = ds.inputs[spec.name]
        if arr.ndim != len(spec.shape) or tuple(arr.shape[1:]) != tuple(spec.shape[1:]):
            raise DataError(f"data {origin!r}: input {spec.name!r} has samples of shape "
                            f"{list(arr.shape[1:])}, the model declares {spec.shape[1:]} "
                            "(after the batch axis)")
        if str(arr.dtype) != spec.dtype:
            ds.inputs[spec.name] = arr.astype(spec.dtype)
        if n is not None and len(arr) != n:
            raise DataError(f"data {origin!r}: inputs have different sample counts")
        n = len(arr)
    if ds.labels is not None and len(ds.labels) != n:
        raise DataError(f"data {origin!r}: {len(ds.labels)} labels for {n} samples")


def import_object(spec: str, base_dir: Path = Path("."), what: str = "object",
                  error: type[CompressorError] = DataError) -> Callable:
    """Import 'pkg.module:name'. The recipe's directory is searched first, so a recipe
    can ship its own model or data module beside it."""
    module_name, _, attr = spec.partition(":")
    added = str(Path(base_dir).resolve())
    sys.path.insert(0, added)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise error(f"{what} {spec!r}: cannot import module {module_name!r} ({e})") from None
    finally:
        if added in sys.path:
            sys.path.remove(added)
    if not hasattr(module, attr):
        raise error(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)

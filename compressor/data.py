"""Calibration, evaluation and training data: one contract for every source.

A `Dataset` holds arrays keyed by model input name (first axis = samples) and
optional integer labels. Sources: the built-in `digits` (scikit-learn's real
handwritten digits, 8x8, or upsampled to `resolution`), the built-in `sentences` (sentence-like token ids for text
encoders, compressor.zoo.text), an `.npz` file, a callable `pkg.module:fn`, or `text:`
lines of a text file, tokenized (compressor.sources.text, with the built-in sentences).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from compressor.formats import is_pickle
from compressor.errors import CompressorError, DataError, first_line, user_code
from compressor.config.recipe import DIGITS_SIDE, MAX_DIGITS_SIDE, DataSource, InputSpec
from compressor.digits_data import digits_arrays
from compressor.sources.text import text_dataset

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


def load_dataset(src: DataSource, inputs: list[InputSpec], base_dir: Path = Path("."),
                 tokenizer: Path | None = None) -> Dataset:
    """Load `src` and check it against the model's declared inputs (`tokenizer`: an hf model's own)."""
    origin = f"data source {src.source!r}"
    if src.text is not None:
        arrays, origin = text_dataset(src, inputs, base_dir, tokenizer)
        ds = Dataset(arrays)
    elif src.source == "digits":
        side = src.resolution or DIGITS_SIDE
        _digits_fit(side, inputs)
        x, y = digits_arrays(src.split, side)
        ds = _single_input(origin, x, y, inputs)
    elif src.source == "sentences":
        ds = sentences(src.split, inputs, src.vocab_size)
    elif src.source.endswith((".npz", ".npy")) or (":" not in src.source and _exists(_path(src.source, base_dir))):
        path = _path(src.source, base_dir)
        origin = f"data file {path}"
        ds = _from_npz(path, inputs)
    elif ":" in src.source:
        ds = _from_callable(src.source, src.split, inputs, base_dir)
    else:
        raise DataError(f"data source {src.source!r}: use 'digits', 'sentences', a path ending in .npz, "
                        "or a callable 'pkg.module:function'")
    return _check(ds, inputs, origin).take(src.limit)


def _digits_fit(side: int, inputs: list[InputSpec]) -> None:
    """Refuse digits of one size for a model that declares images of another, naming the
    setting that fixes it (the general shape check would suggest a reshape)."""
    if len(inputs) == 1 and len(inputs[0].shape) == 4:
        h, w = inputs[0].shape[2:]
        if h == w and h != side and DIGITS_SIDE <= h <= MAX_DIGITS_SIDE:
            raise DataError(f"data source 'digits' gives {side}x{side} images, the model declares {h}x{w}; "
                            f"set 'resolution: {h}' on the data source")


def _path(source: str, base_dir: Path) -> Path:
    return Path(source) if Path(source).is_absolute() else base_dir / source


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the filesystem, say
        return False


def sentences(split: str, inputs: list[InputSpec], vocab_size: int | None = None) -> Dataset:
    """The built-in 'sentences' source (compressor.zoo.text.sentence_arrays) as a Dataset."""
    from compressor.zoo.text import sentence_arrays  # torch: only when asked for

    return Dataset(sentence_arrays(split, inputs, vocab_size))


def _single_input(origin: str, x: np.ndarray, y: np.ndarray | None, inputs: list[InputSpec]) -> Dataset:
    if len(inputs) != 1:
        raise DataError(f"{origin} gives one input array but the model declares "
                        f"{len(inputs)} inputs ({', '.join(i.name for i in inputs)})")
    return Dataset({inputs[0].name: x}, y)


NPZ_HOW = "save it with np.savez(path, INPUT_NAME=inputs, labels=class_indices)"


def _from_npz(path: Path, inputs: list[InputSpec]) -> Dataset:
    where = f"data file {path}"
    return _from_mapping(where, read_npz(path, where), inputs)


def _from_mapping(origin: str, arrays: dict, inputs: list[InputSpec]) -> Dataset:
    arrays = dict(arrays)
    labels = next((arrays.pop(k) for k in LABEL_KEYS if k in arrays), None)
    names = [i.name for i in inputs]
    if all(n in arrays for n in names):
        return Dataset({n: arrays[n] for n in names}, labels)
    if len(arrays) == 1 and len(names) == 1:
        return Dataset({names[0]: next(iter(arrays.values()))}, labels)
    raise DataError(f"{origin}: arrays {sorted(map(str, arrays))} do not name the model inputs {names}; "
                    "key each array by its input name (and labels by 'labels')")


def _from_callable(spec: str, split: str, inputs: list[InputSpec], base_dir: Path) -> Dataset:
    fn = import_object(spec, base_dir, what="data source")
    if not callable(fn):
        raise DataError(f"data source {spec!r} is not callable (a value of type {type(fn).__name__}); point it "
                        "at a function that returns the data")
    with user_code(f"data source {spec!r}", DataError, fn):
        out = fn(split=split) if _takes(fn, "split") else fn()
    shapes = "an array of inputs, (inputs, labels), a dict keyed by input name, or a compressor.data.Dataset"
    origin = f"data source {spec!r}"
    if isinstance(out, Dataset):
        return out
    if isinstance(out, tuple) and len(out) == 2:
        x, y = out
        if isinstance(x, dict):
            return _from_mapping(origin, {**x, "labels": y}, inputs)
        return _single_input(origin, x, y, inputs)
    if isinstance(out, dict):
        return _from_mapping(origin, out, inputs)
    if out is None or isinstance(out, (str, bytes, int, float, complex, bool)) or not (
            isinstance(out, (list, tuple)) or hasattr(out, "__array__")):
        raise DataError(f"{origin} returned {_kind(out)}; return {shapes}")
    return _single_input(origin, out, None, inputs)


def _kind(obj: Any) -> str:
    return "None" if obj is None else f"a value of type {type(obj).__name__}"


def _takes(fn: Callable, param: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): call it bare
        return False
    return any(p.name == param or p.kind is p.VAR_KEYWORD for p in params)


# --- reading and checking a user's .npz: shared with benchmarks.eval_data -----------------
# `where` names the place in every message ("data file PATH", "evaluation data PATH").

def read_npz(path: Path, where: str) -> dict[str, np.ndarray]:
    """The arrays of the .npz archive at `path`, read without unpickling (allow_pickle=False).
    A file that is no such archive (missing, a directory, unreadable, empty, a .npy, a
    pickle, a truncated or corrupt zip, arrays of Python objects) is refused by what it is."""
    head = _head(Path(path), where)
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{where} is a single .npy array, not an .npz of named arrays; {NPZ_HOW}")
    if not head.startswith(b"PK"):
        what = ("it is empty (0 bytes)" if not head else "it is a pickle, which is never loaded (unpickling can "
                "run code)" if is_pickle(head) else "it is no zip of .npy arrays")
        raise DataError(f"{where} is not a readable .npz archive: {what}; {NPZ_HOW}")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                try:
                    arrays[key] = z[key]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    raise DataError(f"{where}: array {key!r} holds Python objects, which are never "
                                    "unpickled (that can run code); store numeric arrays") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise DataError(f"{where} is not a readable .npz archive: truncated or corrupt "
                        f"({type(e).__name__}: {first_line(e)}); write it again with np.savez") from None
    if not arrays:
        raise DataError(f"{where} holds no arrays; {NPZ_HOW}")
    return arrays


def _head(path: Path, where: str) -> bytes:
    """The first bytes of the file at `path`, or what keeps it from being read."""
    try:
        if path.is_dir():
            raise DataError(f"{where} is a directory; give the .npz file itself")
        if not path.exists():
            raise DataError(f"{where}: no such file")
        if not path.is_file():
            raise DataError(f"{where} is not a regular file (a device, pipe or socket); give the .npz file itself")
        with open(path, "rb") as f:
            return f.read(6)
    except OSError as e:  # a name too long, no permission
        raise DataError(f"{where} cannot be read ({e.strerror or type(e).__name__}); give a readable "
                        ".npz file") from None


HELD = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects",
        "M": "dates", "m": "time deltas", "V": "structured records"}
REAL = "real numbers (a float or integer array)"


def numeric(value: Any, where: str, what: str, kinds: str = "biuf", give: str = REAL,
            verb: str = "holds") -> np.ndarray:
    """`value` as a numpy array of the dtype `kinds` (bool, integer, float), or a DataError
    naming what it holds instead."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged lists, objects numpy cannot read
        raise DataError(f"{where}: {what} cannot be read as one array ({first_line(e)}); give a "
                        "numeric array of one shape") from None
    if arr.dtype.kind not in kinds:
        held = HELD.get(arr.dtype.kind, f"{arr.dtype} values")
        raise DataError(f"{where}: {what} {verb} {held} ({arr.dtype}); give {give}")
    return arr


def finite(arr: np.ndarray, where: str, what: str, verb: str = "holds") -> None:
    """Refuse NaN and inf: a model fed them gives NaN references and meaningless scales."""
    if arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count:
        first = [int(i) for i in np.argwhere(bad)[0]]
        nan = int(np.isnan(arr).sum())
        raise DataError(f"{where}: {what} {verb} {count} non-finite value{'s' * (count > 1)} ({nan} NaN, "
                        f"{count - nan} inf), the first at sample {first[0]} (index {first}); replace or drop "
                        "those samples")


def class_labels(value: Any, n: int, where: str) -> np.ndarray | None:
    """Integer class indices, one a sample, as int64. Float labels are accepted when every
    value is a whole number (as labels read from CSV or pandas often are); a column (N, 1)
    is flattened."""
    if value is None:
        return None
    y = numeric(value, where, "labels", "iuf", "integer class indices, one a sample", verb="hold")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels have shape {list(y.shape)}; give one class index per sample "
                        "(shape [N]); for one-hot labels use labels.argmax(1)")
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} samples; give one label per sample")
    if y.dtype.kind == "f":
        finite(y, where, "labels", verb="hold")
        fractional = np.flatnonzero(y != np.round(y))
        if len(fractional):
            i = int(fractional[0])
            raise DataError(f"{where}: labels must be integer class indices; sample {i} has {y[i]:g} "
                            f"({len(fractional)} fractional in all)")
    if len(y) and y.min() < 0:
        i = int(np.argmax(y < 0))
        raise DataError(f"{where}: label {y[i]:g} at sample {i} is negative; class indices start at 0")
    return y.astype(np.int64)


def _cast(arr: np.ndarray, dtype: str, origin: str, what: str) -> np.ndarray:
    """`arr` as the declared dtype, refusing a cast that would change values."""
    if str(arr.dtype) == dtype:
        return arr
    target = np.dtype(dtype)
    if target.kind in "iub":
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{origin}: {what} holds fractional values, but it is declared {dtype}; give "
                            "whole numbers or declare a float dtype")
        lo, hi = (0, 1) if target.kind == "b" else (np.iinfo(target).min, np.iinfo(target).max)
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise DataError(f"{origin}: {what} holds values from {arr.min()} to {arr.max()}, outside "
                            f"{dtype}'s range [{lo}, {hi}] (the input's declared dtype)")
        return arr.astype(target)
    out = arr.astype(target)
    if not np.isfinite(out).all():
        raise DataError(f"{origin}: {what} holds values beyond {dtype}'s range (largest magnitude "
                        f"{np.abs(arr).max():.3g}); scale the data or declare another dtype")
    return out


def _check(ds: Dataset, inputs: list[InputSpec], origin: str) -> Dataset:
    """The dataset with every input a finite numeric array of the declared sample shape and
    dtype, and labels as int64 class indices; anything else is one DataError line."""
    out, n = {}, None
    given = sorted(map(str, ds.inputs))
    for spec in inputs:
        if spec.name not in ds.inputs:
            raise DataError(f"{origin}: no array for input {spec.name!r}; it gives {given}")
        what = f"input {spec.name!r}"
        arr = numeric(ds.inputs[spec.name], origin, what)
        if arr.ndim != len(spec.shape) or tuple(arr.shape[1:]) != tuple(spec.shape[1:]):
            hint = _shape_hint(arr.shape, spec.shape)
            raise DataError(f"{origin}: {what} has samples of shape {list(arr.shape[1:])}, the model "
                            f"declares {spec.shape[1:]} (after the batch axis; the array is {list(arr.shape)}); "
                            f"{hint}")
        if len(arr) == 0:
            raise DataError(f"{origin}: {what} holds 0 samples; give at least one")
        finite(arr, origin, what)
        out[spec.name] = _cast(arr, spec.dtype, origin, what)
        if n is not None and len(arr) != n:
            raise DataError(f"{origin}: inputs have different sample counts ({n} and {len(arr)} for "
                            f"{spec.name!r}); give every input the same number of samples")
        n = len(arr)
    return Dataset(out, class_labels(ds.labels, n or 0, origin))


def _shape_hint(have: tuple[int, ...], want: list[int]) -> str:
    """How to make arrays of shape `have` fit the declared `want` (batch axis first)."""
    if len(have) == len(want) > 1 and sorted(have[1:]) == sorted(want[1:]):  # the axes in another order
        free = list(range(1, len(have)))
        order = [0] + [free.pop(next(i for i, a in enumerate(free) if have[a] == d)) for d in want[1:]]
        return f"move the axes with x.transpose({', '.join(map(str, order))})"
    if len(have) > 0 and int(np.prod(have[1:])) == int(np.prod(want[1:])):
        return f"reshape it with x.reshape(-1, {', '.join(map(str, want[1:]))})"
    return "fix the data or the input's shape in the recipe"


def import_object(spec: str, base_dir: Path = Path("."), what: str = "object",
                  error: type[CompressorError] = DataError) -> Any:
    """Import 'pkg.module:name'. The recipe's directory is searched first, so a recipe
    can ship its own model or data module beside it. A module that is not there is named;
    one that fails while importing (a SyntaxError, an exception at import) is reported
    as its own crash, with file and line."""
    module_name, _, attr = spec.partition(":")
    added = str(Path(base_dir).resolve())
    sys.path.insert(0, added)
    try:
        with user_code(f"{what} {spec!r}: importing module {module_name!r}", error, verb="failed"):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                if e.name is None or not _is_parent(e.name, module_name):
                    raise
                raise error(f"{what} {spec!r}: cannot import module {module_name!r} ({e}); put {module_name}.py "
                            "beside the recipe or install its package") from None
    finally:
        if added in sys.path:
            sys.path.remove(added)
    if not hasattr(module, attr):
        raise error(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def _is_parent(missing: str, module_name: str) -> bool:
    """Whether the module that was not found is `module_name` or a package above it (not
    something that module imports)."""
    return module_name == missing or module_name.startswith(missing + ".")

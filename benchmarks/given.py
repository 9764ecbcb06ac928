"""Input values the user gives `compressor bench`, for models whose inputs are not tensors
of noise: a sample-rate scalar, token ids within a vocabulary, a recurrent state.

    --inputs [FILE:]data.npz     arrays keyed by input name (samples first, or the whole value)
    --value  [FILE:]NAME=16000   one number, filling the input (a scalar input: that scalar)
    --shape  [FILE:]NAME=DxDxD   a dynamic dimension fixed

With several files, `FILE:` (a file's name or path as given) says which one a setting is
for; without it a setting applies to every file that has that input, and must fit one.
Input names may hold ':' themselves (TFLite's 'serving_default_x:0'): only a prefix that
names one of the files is read as one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor.errors import DataError, InputShapeError, RecipeError

SHAPE_RE = re.compile(r"(.+)=(\d+(?:x\d+)*)")
VALUE_RE = re.compile(r"(.+)=([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|true|false)")


@dataclass
class Setting:
    """One --shape, --value or --inputs as given: the file it is for (None: every file)."""

    flag: str
    text: str
    file: Path | None
    name: str | None            # the input (None for --inputs, which names inputs by its keys)
    value: object               # dims, a number, or the .npz path


@dataclass
class FileInputs:
    """What one file is fed: shapes, filled values and given arrays by input name, and which
    of them may be absent from this file (settings without a FILE: prefix)."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    optional: set[str] = field(default_factory=set)


def parse(flag: str, texts: list[str], files: list[Path]) -> list[Setting]:
    """The settings of one flag, each checked on its own (before anything is loaded)."""
    out = []
    for text in texts:
        file, rest = _prefix(text, files)
        if flag == "--inputs":
            out.append(Setting(flag, text, file, None, Path(rest)))
            continue
        m = (SHAPE_RE if flag == "--shape" else VALUE_RE).fullmatch(rest)
        if not m:
            how = "NAME=1x3x224x224" if flag == "--shape" else "NAME=16000 (a number)"
            raise RecipeError(f"{flag} {text!r}: use [FILE:]{how}")
        if flag == "--shape":
            dims = tuple(int(x) for x in m.group(2).split("x"))
            if min(dims) < 1:
                raise InputShapeError(f"--shape {text}: every dimension is at least 1")
            out.append(Setting(flag, text, file, m.group(1), dims))
        else:
            raw = m.group(2)
            number = float(raw == "true") if raw in ("true", "false") else float(raw)
            if not math.isfinite(number):
                raise RecipeError(f"--value {text!r}: give a finite number")
            out.append(Setting(flag, text, file, m.group(1), number))
    return out


def _prefix(text: str, files: list[Path]) -> tuple[Path | None, str]:
    for i in [m.start() for m in re.finditer(":", text)]:
        head = text[:i]
        hit = [f for f in files if head in (str(f), f.name)]
        if len(hit) > 1:
            raise RecipeError(f"{text!r}: {head!r} names {len(hit)} of the files; give the path as you gave the file")
        if hit:
            return hit[0], text[i + 1:]
    return None, text


def per_file(settings: list[Setting], files: list[Path]) -> dict[Path, FileInputs]:
    """Each file's inputs. A setting with FILE: overrides one without for that file; the
    same input given twice at the same level is refused. A setting without FILE: may be
    absent from some of several files (`unused` checks, once measured, that one had it)."""
    out = {f: FileInputs() for f in files}
    level: dict[tuple[Path, str, str], bool] = {}   # (file, kind, input) -> given with FILE:
    arrays_cache: dict[Path, dict[str, np.ndarray]] = {}
    for s in sorted(settings, key=lambda s: s.file is not None):   # without FILE: first, then overridden
        for f in ([s.file] if s.file is not None else files):
            got = out[f]
            named = (arrays_cache.setdefault(s.value, read_arrays(s.value)) if s.flag == "--inputs"
                     else {s.name: s.value})
            kind = "shape" if s.flag == "--shape" else "value"
            for name, v in named.items():
                key = (f, kind, name)
                if key in level and level[key] == (s.file is not None):
                    what = "--shape" if kind == "shape" else "--inputs or --value"
                    raise RecipeError(f"{s.flag} {s.text}: input {name!r} of {f.name} is already given by another "
                                      f"{what}; give each input once")
                level[key] = s.file is not None
                if kind == "shape":
                    got.shapes[name] = v
                else:  # an array and a number for one input: the later, more specific one counts
                    got.arrays.pop(name, None)
                    got.values.pop(name, None)
                    (got.arrays if s.flag == "--inputs" else got.values)[name] = v
                if s.file is None and len(files) > 1:
                    got.optional.add(name)
                else:
                    got.optional.discard(name)
    return out


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an --inputs file, each numeric and finite (one DataError line otherwise)."""
    from compressor.data import finite, numeric, read_npz

    where = f"--inputs {path}"
    arrays = read_npz(Path(path), where)
    if not arrays:
        raise DataError(f"{where} holds no arrays; save one per input, keyed by the input's name "
                        "(numpy.savez(path, x=...))")
    for key, a in arrays.items():
        numeric(a, where, f"array {key!r}", kinds="biuf")
        finite(a, where, f"array {key!r}")
    return arrays


def unused(results: dict[Path, list[str]], settings: list[Setting]) -> None:
    """After measuring: a setting without FILE: that no file had the input of was a typo."""
    have = {n for names in results.values() for n in names}
    for s in settings:
        names = [s.name] if s.name is not None else list(read_arrays(s.value)) if s.flag == "--inputs" else []
        missing = [n for n in names if n not in have and s.file is None]
        if missing:
            listing = "; ".join(f"{f.name}: {', '.join(ns) or '-'}" for f, ns in results.items())
            raise InputShapeError(f"{s.flag} {s.text}: no file has an input named {missing[0]!r} (inputs: "
                                  f"{listing})")


def check_names(inputs: list, given: "FileInputs", path: Path) -> None:
    """Before measuring one file: every setting for it by FILE: names one of its inputs."""
    names = [s.name for s in inputs]
    for what, keys in (("--shape", given.shapes), ("--value", given.values), ("--inputs", given.arrays)):
        bad = [k for k in keys if k not in names and k not in given.optional]
        if bad:
            raise InputShapeError(f"{what} names {bad[0]!r}, but the model's inputs are {names}")


def feed(spec, batch: int, given: FileInputs) -> np.ndarray | None:
    """The value of one input at `batch` from what the user gave (None: nothing given)."""
    if spec.name in given.arrays:
        try:
            return fit_given(spec.shape, batch, spec.dtype, given.arrays[spec.name])
        except ValueError as e:
            raise InputShapeError(f"--inputs array {spec.name!r}: {e}") from None
    if spec.name in given.values:
        v = given.values[spec.name]
        if np.dtype(spec.dtype).kind in "iub" and v != round(v):
            raise InputShapeError(f"--value {spec.name}={v:g}: the input takes {spec.dtype}; give a whole number")
        if np.dtype(spec.dtype).kind in "iu":
            info = np.iinfo(spec.dtype)
            if not info.min <= v <= info.max:
                raise InputShapeError(f"--value {spec.name}={v:g} does not fit {spec.dtype} ({info.min} to "
                                      f"{info.max})")
        shape = () if len(spec.shape) == 0 else spec.concrete(batch, given.shapes)
        return np.full(shape, v, dtype=spec.dtype)
    return None


def fit_given(shape, batch, dtype, value):
    """A value the user gave for one input (bench --inputs), fitted to its declared `shape`
    at `batch`: the whole value for an input without a batch axis (a scalar, a state), else
    its first `batch` samples (repeated in turn when it has fewer). Dynamic dimensions take
    the value's own. ValueError names what does not fit."""
    a = np.asarray(value)
    if a.ndim != len(shape):
        raise ValueError("it has shape %s, the input takes rank %d (shape %s)" % (list(a.shape), len(shape),
                                                                                 list(shape)))
    fixed = [(axis, d) for axis, d in enumerate(shape) if isinstance(d, int) and d > 0]
    for axis, d in fixed:
        if axis > 0 and a.shape[axis] != d:
            raise ValueError("it has shape %s, the input's axis %d is %d (shape %s)" % (list(a.shape), axis, d,
                                                                                      list(shape)))
    if a.ndim:
        want = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else batch
        if len(a) == 0:
            raise ValueError("it holds no samples (shape %s)" % list(a.shape))
        a = a[np.arange(want) % len(a)]
    if np.dtype(dtype).kind in "iub" and a.dtype.kind == "f" and np.any(a != np.round(a)):
        raise ValueError("it holds fractional values, the input takes %s; give whole numbers" % dtype)
    return np.ascontiguousarray(a.astype(dtype, copy=False))


def batch_refusal(inputs, batch: int, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why a model cannot be timed at `batch` (None: it can). It cannot when no input with
    a leading axis leaves that axis free (the model fixes it, or --shape does) and the first
    one fixes it at another size: its feeds would hold that many samples, not `batch`, and
    the row would report another batch's latency and throughput under this one's name."""
    ranked = [s for s in inputs if len(s.shape)]
    if not ranked or any(s.batch_dynamic and s.name not in shapes for s in ranked):
        return None
    first = ranked[0]
    dims = tuple(shapes.get(first.name) or first.shape)
    if dims[0] == batch:
        return None
    if first.name in shapes:
        return (f"--shape {first.name}={'x'.join(map(str, dims))} fixes the batch axis at {dims[0]}, so batch "
                f"{batch} cannot be run: drop --shape for that input or ask for --batch {dims[0]}")
    return (f"the model takes batch {dims[0]} only (input {first.name!r} is {list(first.shape)}), so batch "
            f"{batch} cannot be run: export it with a dynamic batch axis or ask for --batch {dims[0]}")

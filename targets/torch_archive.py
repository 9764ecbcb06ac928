"""What the TorchScript and torch.export targets share: the signature we store inside
their zip archives (neither format keeps input names and shapes in a form that can be
read back cheaply), the archive check, and the torch side of a session.

No torch import at module level: `import targets` must stay cheap.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from compressor.errors import ArtifactError, InputShapeError, RecipeError, first_line
from targets.base import Device, TensorSpec

if TYPE_CHECKING:
    from compressor.model import Model

META_NAME = "compressor.json"  # one entry of the archive's extra files
META_FORMAT = "compressor.torch-artifact"
BATCH_DIM = "batch"


def signature(model: "Model", dynamic_batch: bool, output_names: list[str], **extra: Any) -> dict:
    """The metadata written into an archive: inputs (leading axis 'batch' when the
    artifact takes any batch), output names, and notes such as the quantized engine."""
    inputs = [{"name": s.name, "shape": [BATCH_DIM if dynamic_batch and i == 0 else d for i, d in enumerate(s.shape)],
               "dtype": s.dtype} for s in model.inputs]
    return {"format": META_FORMAT, "version": 1, "inputs": inputs, "output_names": output_names, **extra}


def specs_from(meta: dict) -> list[TensorSpec]:
    return [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in meta["inputs"]]


def parse_meta(raw: bytes | str | None) -> dict | None:
    """The stored signature, or None for an archive somebody else made."""
    if not raw:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == META_FORMAT else None


def unrecorded_inputs(names: Iterable[str]) -> list[TensorSpec]:
    """Inputs of a foreign archive, which records names but no shapes: every axis after
    the batch is symbolic, so the benchmark asks for --shape NAME=... with one line."""
    return [TensorSpec(n, (BATCH_DIM, "not recorded in this file"), "float32") for n in names]


def output_names_for(model: "Model", outputs: list) -> list[str]:
    if model.output_names:
        return list(model.output_names)
    return ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]


def open_zip(path: Path, kind: str) -> list[str]:
    """Names inside the zip archive at `path`; ArtifactError (one line) for a missing,
    empty, truncated or non-zip file. The CRC of every member is checked, so a file
    cut short or overwritten in the middle is caught here and not half-way through a load."""
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: the file is empty (0 bytes); re-export the model")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise ArtifactError(f"{path}: not a {kind} archive (not a readable zip: {e}); "
                            "the file may be truncated or of another format") from None
    if bad is not None:
        raise ArtifactError(f"{path}: the {kind} archive is corrupt (member {bad!r} fails its checksum); re-export it")
    return names


def torch_device(device: Device):
    import torch

    if device.kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RecipeError(f"device {device}: this torch build sees no CUDA device; use --device cpu")
    return torch.device("cuda", device.index)


class TorchSession:
    """Runs a callable torch artifact on numpy feeds: inputs in stored order, every
    output flattened to a float numpy array (what validation and timing compare)."""

    def __init__(self, fn, inputs: list[TensorSpec], output_names: list[str], device: Device, runtime: str,
                 provider: str, dense_strides: bool = False) -> None:
        self._fn, self._device, self._dense = fn, torch_device(device), dense_strides
        self.inputs, self.output_names, self.runtime, self.provider = inputs, output_names, runtime, provider

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise InputShapeError(f"missing inputs {missing}; the model takes {[s.name for s in self.inputs]}")
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(self._device) for s in self.inputs]
        if self._dense:
            # Compiled code indexes with the strides it was traced with; numpy gives a
            # size-1 axis made by x[:, None] a stride of 0, which both libraries call
            # contiguous. Such inputs are copied into standard strides first.
            args = [a if a.stride() == _standard_strides(a.shape) else a.clone(memory_format=torch.contiguous_format)
                    for a in args]
        try:
            with torch.inference_mode():
                out = self._fn(*args)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            given = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in feeds.items())
            raise InputShapeError(f"inputs do not fit the model (given {given}): {first_line(e)}") from None
        from compressor.errors import ModelLoadError
        from compressor.model import flatten_outputs

        try:
            flat = flatten_outputs(out)
        except ModelLoadError as e:  # a file from outside: its outputs, not its load, are the problem
            raise ArtifactError(str(e)) from None
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        return [t.detach().float().cpu().numpy() for t in flat]


def _standard_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for d in reversed(tuple(shape)):
        strides.append(step)
        step *= max(int(d), 1)
    return tuple(reversed(strides))


def recompress(src: Path, dst: Path, min_saving: float = 0.1) -> dict:
    """Copy the zip archive `src` to `dst`, deflating each record that shrinks by at
    least `min_saving`. torch.save/jit.save store every record uncompressed; an int8
    archive carries per-channel zero points (int64 zeros) and scales (float64) that
    deflate to almost nothing, and weights whose values cluster near zero. PyTorch's
    reader (torch.jit.load, libtorch) inflates such records transparently. The same rule
    applies to fp32 archives, so size ratios stay fair."""
    import zlib

    deflated = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            packed = len(zlib.compress(data, 6)) if len(data) > 64 else len(data)
            method = zipfile.ZIP_DEFLATED if packed <= (1 - min_saving) * len(data) else zipfile.ZIP_STORED
            deflated += method == zipfile.ZIP_DEFLATED
            zout.writestr(zipfile.ZipInfo(info.filename, date_time=info.date_time), data,
                          compress_type=method, compresslevel=6 if method == zipfile.ZIP_DEFLATED else None)
    return {"records_deflated": deflated}

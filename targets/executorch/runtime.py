"""Loading and running `.pte` programs with ExecuTorch's Python runtime, ours or anybody's.

Two habits of the native runtime shape this module. It writes its own log lines straight
to file descriptor 2 (cpuinfo's probe of /sys on the first XNNPACK load, "Resetting
threadpool to N threads"), past Python's sys.stderr: `native_stderr` captures them around
the calls that print, and an error quotes what was captured instead of spilling it. And
its thread count belongs to one process-wide pool (`_unsafe_reset_threadpool`): an
XNNPACK method keeps the pool it was loaded with (a method loaded before a reset and
run or freed after it crashed the process here), so every live session releases its
program before a reset and loads it again, from its bytes, before it next runs.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from compressor.errors import ArtifactError, InputShapeError
from compressor.logs import native_stderr
from targets.base import Device, TensorSpec
from targets.torch_archive import BATCH_DIM, parse_meta, specs_from

# The flatbuffer file identifier of an ExecuTorch program, at bytes 4..8 ("ET" and the
# schema's version digits); a 4-byte root offset comes first.
MAGIC_PREFIX = b"ET"
# The extended header after the identifier: its length, then the flatbuffer's size and
# where the weight segments start and how long they are (exir/_serialize/_program.py).
EXTENDED_HEADER = b"eh00"
SIGNATURE_METHOD = "compressor_signature"  # a constant method holding our signature as JSON bytes
MIN_BYTES = 16

# torch dtypes of ExecuTorch's ScalarType codes (runtime/core/portable_type/scalar_type.h).
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool"}

_LIVE: "weakref.WeakSet[ExecuTorchSession]" = weakref.WeakSet()
_POOL: int | None = None  # the pool size this process last set (None: not yet)


def check_pte_file(path: Path) -> bytes:
    """The file's bytes when it looks like an ExecuTorch program; ArtifactError in one
    line otherwise (the full structure is checked by the runtime's load, see open_pte)."""
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise ArtifactError(f"{path}: the file is empty (0 bytes); re-export the model")
    if len(data) < MIN_BYTES or data[4:6] != MAGIC_PREFIX or not data[6:8].isdigit():
        raise ArtifactError(f"{path}: not an ExecuTorch program (no 'ET' flatbuffer identifier at bytes 4..8); "
                            "the file may be of another format")
    root = int.from_bytes(data[:4], "little")
    expected = root + 1
    if data[8:12] == EXTENDED_HEADER and len(data) >= 40:  # program size, segment offset, segment size
        program, base, segments = (int.from_bytes(data[i:i + 8], "little") for i in (16, 24, 32))
        expected = max(expected, base + segments if segments else program)
    if len(data) < expected:
        raise ArtifactError(f"{path}: the ExecuTorch program is truncated ({len(data)} bytes, its header says "
                            f"{expected}); re-export it")
    return data


def _native_reason(text: str) -> str:
    """The native log line that says what failed (cpuinfo's probe lines are noise)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "cpuinfo" not in ln and "threadpool" not in ln]
    return f" ({lines[-1][:300]})" if lines else ""


def set_threads(threads: int) -> None:
    """Size the process's pool to `threads`; live sessions reload their methods after a reset."""
    from executorch.extension.pybindings import portable_lib

    global _POOL
    if _POOL == threads:  # the hot path: every run asks, nothing to do (no native call)
        return
    with native_stderr():  # the pool's first use probes the CPU (cpuinfo's lines)
        if portable_lib._threadpool_get_thread_count() == threads:
            _POOL = threads
            return
        for session in list(_LIVE):  # released while the pool they were loaded with still exists
            session._program = session._method = None
        portable_lib._unsafe_reset_threadpool(threads)
        _POOL = threads


def _runtime():
    """ExecuTorch's runtime; its first use loads the native library, which logs cpuinfo's probe."""
    with native_stderr():
        from executorch.runtime import Runtime

        return Runtime.get()


def open_pte(path: Path, device: Device, threads: int) -> "ExecuTorchSession":
    if device.kind != "cpu":
        from compressor.errors import RecipeError

        raise RecipeError(f"device {device}: the executorch target runs on the CPU (XNNPACK); use --device cpu")
    data = check_pte_file(path)
    with native_stderr() as said:
        try:
            program = _runtime().load_program(data)
        except Exception as e:
            raise ArtifactError(f"{path}: ExecuTorch cannot load it{_native_reason(said()) or f' ({e})'}; "
                                "the file may be truncated or corrupt") from None
    if "forward" not in program.method_names:
        raise ArtifactError(f"{path}: the ExecuTorch program has no 'forward' method "
                            f"(it has {sorted(program.method_names)})")
    return ExecuTorchSession(path, data, program, threads)


class ExecuTorchSession:
    """One program's `forward`, run on numpy feeds. Inputs come from the stored signature
    (names, a symbolic batch up to `max_batch`) or, for a program we did not make, from the
    method's metadata (positional names, the planned shapes)."""

    def __init__(self, path: Path, data: bytes, program, threads: int) -> None:
        from executorch.version import __version__

        self._path, self._data, self._program, self._threads, self._method = path, data, program, threads, None
        meta = self._stored_signature()
        if meta is not None:
            self.inputs, self.output_names = specs_from(meta), list(meta["output_names"])
            self.max_batch = int(meta.get("max_batch") or 0) or None
        else:
            self.inputs, self.output_names, self.max_batch = self._planned_signature()
        self.runtime = f"executorch {__version__.split('+')[0]}"
        backends = set(_runtime().backend_registry.registered_backend_names)
        self.provider = "XnnpackBackend" if "XnnpackBackend" in backends else "portable kernels"
        _LIVE.add(self)
        self._load()

    def _stored_signature(self) -> dict | None:
        if SIGNATURE_METHOD not in self._program.method_names:
            return None
        try:
            with native_stderr():
                raw = self._program.load_method(SIGNATURE_METHOD).execute([])[0]
            return parse_meta(bytes(raw.numpy().astype(np.uint8).tolist()))
        except Exception:
            return None

    def _planned_signature(self):
        meta = self._program.metadata("forward")
        inputs = []
        for i in range(meta.num_inputs()):
            info = meta.input_tensor_meta(i)
            inputs.append(TensorSpec(f"input_{i}", tuple(info.sizes()), SCALAR_TYPES.get(info.dtype(), "float32")))
        outputs = [f"output_{i}" for i in range(meta.num_outputs())] if meta.num_outputs() > 1 else ["output"]
        return inputs, outputs, None

    def _load(self):
        set_threads(self._threads)
        if self._program is None:
            with native_stderr():
                self._program = _runtime().load_program(self._data)
        if self._method is None:
            with native_stderr() as said:
                try:
                    self._method = self._program.load_method("forward")
                except Exception as e:
                    raise ArtifactError(f"{self._path}: ExecuTorch cannot load its forward method"
                                        f"{_native_reason(said()) or f' ({e})'}") from None
        return self._method

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise InputShapeError(f"missing inputs {missing}; the model takes {[s.name for s in self.inputs]}")
        n = len(feeds[self.inputs[0].name]) if self.inputs else 0
        step = self.max_batch if self.max_batch and self.inputs[0].shape[:1] == (BATCH_DIM,) else n
        if not step or n <= step:
            return self._run_once(feeds)
        # Beyond its planned batch the program runs in chunks (its buffers hold max_batch samples).
        parts = [self._run_once({k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
        return [np.concatenate(outs) for outs in zip(*parts)]

    def _run_once(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs]
        method = self._load()
        try:  # no stderr capture here: it is the timed path (a dup2 and a temp file a run)
            out = method.execute(args)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            given = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in feeds.items())
            raise InputShapeError(f"inputs do not fit the program (given {given}): {e}") from None
        return [t.detach().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in out]

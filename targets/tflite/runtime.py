"""TFLite sessions and file checks. Imports ai-edge-litert (or tflite-runtime), never
torch or TensorFlow, so the benchmark worker loads only the interpreter it measures."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import numpy as np

from compressor.errors import ArtifactError, InputShapeError, RecipeError, first_line
from compressor.logs import native_stderr
from targets.base import Device, TensorSpec

_CUSTOM_OP = re.compile(r"unresolved custom op:?\s*'?(\w[\w/-]*(?:\.\w+)*)", re.IGNORECASE)
_MISSING_BUILTIN = re.compile(r"Didn't find op for builtin opcode '?(\w+)'? version '?(\d+)", re.IGNORECASE)


def interpreter_class() -> tuple[type, str]:
    """ai-edge-litert's Interpreter, else tflite-runtime's (its predecessor, still what
    old edge images ship); the label says which one runs."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {_version('ai-edge-litert')}"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime {_version('tflite-runtime')}"
    except ImportError:
        raise ArtifactError("running a .tflite file needs ai-edge-litert (pip install ai-edge-litert) "
                            "or, on old devices, tflite-runtime") from None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def check_tflite_file(path: Path) -> None:
    """Refuse a missing, empty, truncated or non-TFLite file, or one that needs an operator
    this runtime lacks, with one line. The 'TFL3' identifier catches most foreign files;
    building the interpreter runs the flatbuffer verifier, which catches the rest."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory, not a .tflite file; give the model file")
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise ArtifactError(f"{path}: the file is empty (0 bytes); re-export the model")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ArtifactError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier); "
                            "the file may be truncated or of another format")
    interp = build_interpreter(path, threads=1)
    del interp


def build_interpreter(path: Path, threads: int):
    cls, _ = interpreter_class()
    try:
        with native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            interp = cls(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise _load_error(path, e) from None
    return interp


def _load_error(path: Path, e: BaseException) -> ArtifactError:
    text = str(e)
    if m := _CUSTOM_OP.search(text):
        return ArtifactError(f"{path}: the model uses custom operator {m.group(1)!r}, which this runtime does "
                             "not provide; link the op's kernel into the interpreter or re-convert without it")
    if m := _MISSING_BUILTIN.search(text):
        return ArtifactError(f"{path}: operator {m.group(1)} version {m.group(2)} is newer than this runtime "
                             "supports; upgrade ai-edge-litert")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(e).__name__)
    return ArtifactError(f"{path}: the TFLite interpreter cannot load it ({first[:300]}); "
                         "the file may be truncated or corrupt")


def op_histogram(path: Path) -> dict[str, int]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    counts: dict[str, int] = {}
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for i in range(sg.OperatorsLength()):
            oc = model.OperatorCodes(sg.Operators(i).OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            name = (oc.CustomCode() or b"custom").decode() if code == schema.BuiltinOperator.CUSTOM else names.get(code, str(code))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


class _IO:
    """One input or output: its tensor index and how float values map onto it."""

    def __init__(self, name: str, detail: dict) -> None:
        self.name, self.index, self.dtype = name, detail["index"], np.dtype(detail["dtype"])
        scale, zero = detail.get("quantization", (0.0, 0))
        # An int8/uint8/int16 tensor with a scale is a quantized float: feeds and results
        # are float, converted with the tensor's own scale and zero point.
        self.quantized = self.dtype.kind in "iu" and self.dtype.itemsize <= 2 and scale > 0
        self.scale, self.zero = float(scale), int(zero)
        sig = detail.get("shape_signature")
        dims = sig if sig is not None and len(sig) else detail["shape"]
        self.shape = tuple(int(d) if d >= 0 else ("batch" if axis == 0 else f"d{axis}")
                           for axis, d in enumerate(dims))

    def to_model(self, x: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return np.ascontiguousarray(x, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(x, dtype=np.float32) / self.scale) + self.zero
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def from_model(self, y: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return y
        return (y.astype(np.float32) - self.zero) * np.float32(self.scale)


class LiteSession:
    """A .tflite model on the CPU: XNNPACK (the interpreter's default delegate) with
    `threads` threads. A model with signatures runs one of them (default: the first),
    with the signature's input and output names."""

    def __init__(self, path: Path, device: Device, threads: int, signature: str | None = None) -> None:
        if device.kind != "cpu":
            raise RecipeError(f"device {device}: the TFLite target runs on the CPU here (XNNPACK); "
                              "GPU delegates are for phones")
        self._interp = build_interpreter(Path(path), threads)
        _, runtime = interpreter_class()
        ops = [o.get("op_name") for o in self._interp._get_ops_details()]  # noqa: SLF001 (no public call)
        self.provider = "XNNPACK" if "DELEGATE" in ops else "builtin kernels"
        self.runtime = f"{runtime} ({self.provider})"
        sigs = self._interp.get_signature_list() or {}
        if signature is not None and signature not in sigs:
            raise RecipeError(f"{path}: no signature {signature!r}; it has {sorted(sigs) or 'none'}")
        self.signature = signature or next(iter(sigs), None)
        self._runner = None
        if self.signature is not None:
            runner = self._interp.get_signature_runner(self.signature)
            ins, outs = runner.get_input_details(), runner.get_output_details()
            # The first subgraph runs through set_tensor/invoke (no re-allocation per call);
            # another signature's subgraph needs its runner.
            if getattr(runner, "_subgraph_index", 1) != 0:
                self._runner = runner
            order = {d["index"]: i for i, d in enumerate(self._interp.get_output_details())}
            self._in = [_IO(n, d) for n, d in ins.items()]
            self._out = sorted((_IO(n, d) for n, d in outs.items()), key=lambda o: order.get(o.index, o.index))
        else:
            self._in = [_IO(d["name"], d) for d in self._interp.get_input_details()]
            self._out = [_IO(d["name"], d) for d in self._interp.get_output_details()]
        self.inputs = [TensorSpec(io.name, io.shape, "float32" if io.quantized else io.dtype.name) for io in self._in]
        self.output_names = [o.name for o in self._out]
        self._shapes = {io.name: tuple(d for d in io.shape if isinstance(d, int)) for io in self._in}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = [io.name for io in self._in if io.name not in feeds]
        if missing:
            raise InputShapeError(f"missing inputs {missing}; the model takes {[io.name for io in self._in]}")
        try:
            if self._runner is not None:
                got = self._runner(**{io.name: io.to_model(feeds[io.name]) for io in self._in})
                return [o.from_model(got[o.name]) for o in self._out]
            self._resize(feeds)
            for io in self._in:
                self._interp.set_tensor(io.index, io.to_model(feeds[io.name]))
            self._interp.invoke()
            return [o.from_model(self._interp.get_tensor(o.index)) for o in self._out]
        except ValueError as e:
            given = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in feeds.items())
            raise InputShapeError(f"inputs do not fit the model (given {given}): {first_line(e)}") from None
        except RuntimeError as e:
            raise ArtifactError(f"the TFLite interpreter failed to run the model: {first_line(e)}") from None

    def _resize(self, feeds: dict[str, np.ndarray]) -> None:
        changed = False
        for io in self._in:
            shape = tuple(feeds[io.name].shape)
            fixed = [(a, d) for a, d in enumerate(io.shape) if isinstance(d, int)]
            if len(shape) != len(io.shape) or any(shape[a] != d for a, d in fixed):
                raise InputShapeError(f"input {io.name!r} has shape {list(shape)}; the model takes "
                                      f"{list(io.shape)}")
            if shape != self._shapes.get(io.name):
                self._interp.resize_tensor_input(io.index, list(shape), strict=False)
                self._shapes[io.name], changed = shape, True
        if changed:
            self._interp.allocate_tensors()

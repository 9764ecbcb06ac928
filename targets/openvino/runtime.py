"""OpenVINO IR files (.xml + .bin) and their sessions. Imports openvino, never torch.

Our exports carry a record in the IR's own rt_info (`compressor/record`, JSON): the
output names, the device the recipe asked for and the compile properties that variant
needs (a weight-only model that quantizes its activations as it runs). The benchmark
worker gets only the path, so the file itself says how to open it; an IR made by
another tool has no record and opens with the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import ArtifactError, DeviceError, InputShapeError, RecipeError, first_line
from targets.base import Device, TensorSpec

RECORD_KEY = ["compressor", "record"]
# Device names OpenVINO resolves itself rather than listing them as available.
VIRTUAL_DEVICES = ("AUTO",)

OV_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32",
             "i8": "int8", "u8": "uint8", "boolean": "bool"}


def companion_of(path: Path) -> Path:
    return Path(path).with_suffix(".bin")


def check_ir_file(path: Path) -> None:
    """Refuse a missing, empty, truncated or non-IR .xml, or a missing or short .bin,
    with one line. read_model parses the XML and checks that every constant's offset
    and size lie inside the .bin: that is the whole-file check there is."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory, not an OpenVINO .xml file; give the model's .xml")
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: the file is empty (0 bytes); re-export the model")
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"<net" not in head:
        raise ArtifactError(f"{path}: not an OpenVINO IR (no <net> element at its start); the file may be "
                            "truncated or of another format")
    weights = companion_of(path)
    if not weights.is_file() and _has_constants(path):
        raise ArtifactError(f"{path}: its weights file {weights.name!r} is missing; keep it beside the .xml")
    read_model(path)


def _has_constants(path: Path) -> bool:
    with open(path, "rb") as f:
        return b'type="Const"' in f.read()


def read_model(path: Path):
    import openvino as ov

    try:
        return ov.Core().read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError with a C++ check trace
        raise ArtifactError(f"{path}: OpenVINO cannot read it ({_reason(e)}); the .xml or its .bin may be "
                            "truncated or of another format") from None


def _reason(e: BaseException) -> str:
    """The telling line of an OpenVINO error: its last, after the 'Exception from' and
    'Check ... failed at' lines that name C++ sources."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    tail = [ln for ln in lines if not ln.startswith(("Exception from", "Check "))]
    return (tail[-1] if tail else first_line(e))[:300]


def record_of(model) -> dict[str, Any]:
    """The record our export wrote into the IR (empty for a foreign IR)."""
    if not model.has_rt_info(RECORD_KEY):
        return {}
    try:
        return json.loads(model.get_rt_info(RECORD_KEY).astype(str))
    except (ValueError, RuntimeError):
        return {}


def write_record(model, record: dict[str, Any]) -> None:
    model.set_rt_info(json.dumps(record, sort_keys=True), RECORD_KEY)


def device_name(device: Device, recorded: str | None) -> str:
    """The OpenVINO device to compile for: the recipe's (recorded in the IR) unless the
    caller asks for something else than the default CPU."""
    if device.kind == "cuda":
        raise RecipeError(f"device {device}: OpenVINO does not run on CUDA; for an Intel GPU or NPU set "
                          "targets.openvino.device (GPU, NPU or AUTO) in the recipe")
    return recorded or "CPU"


def compile_config(name: str, threads: int, record: dict[str, Any]) -> dict[str, Any]:
    """Compile properties: the latency hint on `threads` threads (an explicit NUM_STREAMS=1
    measured 4-8% slower on MobileNetV2 than the hint's own choice); on CPU, f32 arithmetic
    for float layers (the CPU plugin otherwise picks bf16 where the CPU has it, and an
    'fp32' artifact would then differ from PyTorch in the third digit) unless the
    export recorded another precision, and the dynamic quantization group it chose."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if name in ("CPU", "AUTO"):
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if name == "CPU":
        config["INFERENCE_PRECISION_HINT"] = record.get("inference_precision", "f32")
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = int(record.get("dynamic_quantization_group_size", 0))
        if record.get("cpu_pinning") is not None:
            config["ENABLE_CPU_PINNING"] = bool(record["cpu_pinning"])
    return config


class OvSession:
    """A compiled IR. A model with a dynamic batch is reshaped to the shapes of the
    first feed and compiled for them (the CPU plugin plans static shapes once), and
    again only when a feed of other shapes comes."""

    def __init__(self, path: Path, device: Device, threads: int) -> None:
        import openvino as ov

        check_ir_file(path)
        self._core = ov.Core()
        self._model = read_model(path)
        self.record = record_of(self._model)
        self.device_name = device_name(device, self.record.get("device"))
        available = self._core.available_devices
        if self.device_name not in available and self.device_name not in VIRTUAL_DEVICES:
            raise DeviceError(f"OpenVINO device {self.device_name!r} is not on this machine (available: "
                              f"{', '.join(available)}); set targets.openvino.device to one of those")
        self._config = compile_config(self.device_name, threads, self.record)
        self._static = bool(self.record.get("reshape_on_first_run", True))
        self._compiled: dict[tuple, Any] = {}
        self.runtime = f"openvino {ov.__version__.split('-')[0]}"
        self.provider = self.device_name
        self.inputs = [_spec(p) for p in self._model.inputs]
        names = self.record.get("output_names") or []
        self.output_names = names if len(names) == len(self._model.outputs) else \
            [o.any_name if o.names else f"output_{i}" for i, o in enumerate(self._model.outputs)]
        self._dynamic = any(isinstance(d, str) for s in self.inputs for d in s.shape)
        if not self._dynamic:
            self._request(None)  # static shapes: compile now, so that load time is counted as such

    def _request(self, shapes: dict[str, tuple[int, ...]] | None):
        key = tuple(sorted(shapes.items())) if shapes else ()
        if key not in self._compiled:
            model = self._model
            if shapes:
                model = self._model.clone()
                try:
                    model.reshape(dict(shapes))
                except Exception as e:
                    given = ", ".join(f"{k} {list(v)}" for k, v in shapes.items())
                    raise InputShapeError(f"inputs do not fit the model (given {given}; it takes "
                                          f"{[list(s.shape) for s in self.inputs]}): {_reason(e)}") from None
            try:
                compiled = self._core.compile_model(model, self.device_name, self._config)
            except Exception as e:
                raise ArtifactError(f"OpenVINO cannot compile the model for {self.device_name}: {_reason(e)}") \
                    from None
            if len(self._compiled) > 4:  # a feed of ever new shapes: keep memory bounded
                self._compiled.clear()
            self._compiled[key] = compiled.create_infer_request()
        return self._compiled[key]

    def _shapes(self, shapes: dict[str, tuple[int, ...]] | None) -> dict[str, tuple[int, ...]] | None:
        """The shapes to compile for: the feed's, when the IR's are dynamic."""
        return shapes if shapes and self._dynamic and self._static else None

    def compiled_property(self, name: str, shapes: dict[str, tuple[int, ...]] | None = None):
        """A property of the model compiled for `shapes` (compiling it if need be)."""
        return self._request(self._shapes(shapes)).get_compiled_model().get_property(name)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        expected = {s.name for s in self.inputs}
        if set(feeds) != expected:
            raise InputShapeError(f"inputs do not fit the model: it takes {sorted(expected)}, given {sorted(feeds)}")
        request = self._request(self._shapes({k: tuple(int(d) for d in v.shape) for k, v in feeds.items()}))
        try:
            request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        except Exception as e:
            given = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in feeds.items())
            raise InputShapeError(f"inputs do not fit the model (given {given}): {_reason(e)}") from None
        return [request.get_output_tensor(i).data.copy() for i in range(len(self._model.outputs))]


def _spec(port) -> TensorSpec:
    shape = port.get_partial_shape()
    dims: list[int | str] = []
    for axis, d in enumerate(shape):
        dims.append(d.get_length() if d.is_static else ("batch" if axis == 0 else f"d{axis}"))
    name = port.any_name if port.names else port.get_node().get_friendly_name()
    dtype = OV_DTYPES.get(port.get_element_type().get_type_name(), port.get_element_type().get_type_name())
    return TensorSpec(name, tuple(dims), dtype)

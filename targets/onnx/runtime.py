"""ONNX Runtime sessions and ONNX file checks. Imports onnxruntime, never torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.errors import ArtifactError, InputShapeError, RecipeError, first_line
from targets.base import Device, TensorSpec

ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}


def providers_for(device: Device) -> list:
    import onnxruntime as ort

    if device.kind == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise RecipeError(f"device {device}: this onnxruntime has no CUDAExecutionProvider "
                          f"(available: {', '.join(available)}); install onnxruntime-gpu")
    return [("CUDAExecutionProvider", {"device_id": device.index}), "CPUExecutionProvider"]


class OrtSession:
    def __init__(self, path: Path, device: Device, threads: int,
                 optimized_model_path: Path | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if optimized_model_path is not None:
            so.optimized_model_filepath = str(optimized_model_path)
        try:
            self._sess = ort.InferenceSession(str(path), so, providers=providers_for(device))
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            raise ArtifactError(f"{path}: onnxruntime cannot load it ({first_line(e)})") from None
        self.runtime = f"onnxruntime {ort.__version__}"
        self.provider = self._sess.get_providers()[0]
        self.inputs = [TensorSpec(i.name, tuple(d if isinstance(d, int) else (d or "?") for d in i.shape),
                                  ORT_DTYPES.get(i.type, i.type)) for i in self._sess.get_inputs()]
        self.output_names = [o.name for o in self._sess.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._sess.run(None, feeds)
        except Exception as e:
            msg = first_line(e)
            if "dimension" in msg.lower() or "shape" in msg.lower() or "rank" in msg.lower() or "type" in msg.lower():
                given = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in feeds.items())
                raise InputShapeError(f"inputs do not fit the model (given {given}): {msg}") from None
            raise ArtifactError(f"onnxruntime failed to run the model: {msg}") from None


def check_onnx_file(path: Path) -> None:
    """Refuse a missing, empty, truncated or non-ONNX file with one line.

    onnx.load accepts a 0-byte file (an empty ModelProto parses), so emptiness and a
    graph with no opset are checked explicitly before the full checker runs.
    """
    import onnx

    if path.is_dir():
        raise ArtifactError(f"{path} is a directory, not an .onnx file; give the model file")
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: the file is empty (0 bytes); re-export the model")
    proto = read_onnx(path)
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            loc = {e.key: e.value for e in init.external_data}.get("location", "")
            if not (path.parent / loc).is_file():
                raise ArtifactError(f"{path}: its external data file {loc!r} is missing; keep it beside the model")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise ArtifactError(f"{path}: the ONNX checker rejects it ({first_line(e)})") from None


def read_onnx(path: Path, error: type = ArtifactError, where: str | None = None):
    """The ModelProto at `path` (external data not loaded), or one `error` line naming
    `where`: a file that does not parse, or holds no graph, opset or IR version."""
    import onnx
    from google.protobuf.message import DecodeError

    where = where or str(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise error(f"{where}: not an ONNX model (cannot parse: {first_line(e)[:200]}); the file may be "
                    "truncated or of another format") from None
    if not proto.opset_import or proto.ir_version == 0 or len(proto.graph.node) == 0:
        raise error(f"{where}: not an ONNX model (no graph, opset or IR version); the file may be truncated or "
                    "of another format")
    return proto


def op_histogram(path: Path) -> dict[str, int]:
    """How many nodes of each op type the graph at `path` has."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def external_data_files(path: Path) -> list[Path]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []
    locs = {e.value for init in proto.graph.initializer if init.data_location == onnx.TensorProto.EXTERNAL
            for e in init.external_data if e.key == "location"}
    return sorted(path.parent / loc for loc in locs if (path.parent / loc).is_file())

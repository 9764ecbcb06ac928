"""An existing .onnx file as the model source (`model: {onnx: model.onnx}`): the handle
the run holds for it, and the checks that refuse a file we cannot compress before
anything is written.

The file is someone else's (another exporter, another tool): it is read without running
anything but ONNX Runtime, its external data must stay inside its own folder, and its
fp32 outputs on ONNX Runtime are the reference every artifact is held to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.formats import NAMES, head, kind_of, regular_file
from compressor.errors import ModelLoadError, RecipeError, first_line

if TYPE_CHECKING:
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import InputSpec, ModelSpec

# The node kinds the fallback may keep in float: those carrying the weights int8 is for.
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "LSTM", "GRU")
# What to say of a file of another format given as ONNX.
_GIVE_AS = {"tflite": "not ONNX; give it as 'model: {tflite: ...}'", "hdf5": "not ONNX; give it as 'model: {keras: ...}'"}


@dataclass
class OnnxFileModel:
    """An ONNX file, read and checked; its fp32 outputs come from ONNX Runtime."""

    path: Path
    inputs: list["InputSpec"]
    output_names: list[str]
    source: str
    dynamic_batch: bool
    external: bool                            # its weights are in external data files
    file_outputs: list[str] = field(default_factory=list)
    nodes: list[tuple[str, str]] = field(default_factory=list)   # (name as the artifacts name it, op type)
    float_elements: int = 0
    framework: str = "onnx"
    _session: Any = None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._session is None:
            self._session = _session(self.path)
        feeds = {s.name: np.ascontiguousarray(feeds[s.name], dtype=s.dtype) for s in self.inputs}
        n = len(next(iter(feeds.values())))
        step = n if self.dynamic_batch else self.inputs[0].shape[0]
        chunks = [self._session.run(self.file_outputs, {k: v[i:i + step] for k, v in feeds.items()})
                  for i in range(0, n, step)]
        return [np.concatenate(parts).astype(np.float32) for parts in zip(*chunks)]

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        """Deterministic synthetic inputs (when there is no evaluation data): floats in
        [0, 1), integer inputs (token ids, masks) all ones."""
        rng = np.random.default_rng(0)
        if not self.dynamic_batch:
            batch = self.inputs[0].shape[0]
        out = {}
        for s in self.inputs:
            shape = (batch, *s.shape[1:])
            out[s.name] = (rng.random(shape).astype(s.dtype) if s.dtype.startswith("float")
                           else np.ones(shape, dtype=s.dtype))
        return out

    def parameter_count(self) -> int | None:
        return self.float_elements

    # --- what the fallback asks of a model without a torch module --------------------

    def layer_candidates(self, granularity: str = "layer", mode: str | None = None) -> list[str]:
        """The graph's weight-bearing nodes that `mode` quantizes, in graph order (a file
        has no blocks: both granularities are its nodes)."""
        from targets.onnx.quantize import DYNAMIC_OPS

        kinds = DYNAMIC_OPS if mode == "dynamic" else QUANTIZABLE_OPS
        return [name for name, op in self.nodes if op in kinds]

    def layer_kind(self, name: str) -> str:
        return next((op for n, op in self.nodes if n == name), "?")


def load_onnx_model(spec: "ModelSpec", base_dir: Path, options, variants: list["QuantVariant"]) -> OnnxFileModel:
    """Check the file and what the recipe asks of it, then open it on ONNX Runtime."""
    import onnx

    from targets.onnx import OnnxTarget

    opts = OnnxTarget().options(options)
    if opts.opset is not None:
        raise RecipeError("targets.onnx.opset: an ONNX file source keeps the opset it was written in; drop 'opset'")
    if opts.fusions != "none":
        raise RecipeError("targets.onnx.fusions: the fusions apply to our own export of a PyTorch model, not to an "
                          "ONNX file source; drop 'fusions'")
    path = spec.onnx if spec.onnx.is_absolute() else Path(base_dir) / spec.onnx
    proto = read_checked(path)
    name_nodes(proto.graph)
    inputs, dynamic = _inputs(path, proto, spec.inputs)
    if not opts.dynamic_batch:
        dynamic = False
    outputs = [o.name for o in proto.graph.output]
    if spec.outputs is not None and len(spec.outputs) != len(outputs):
        raise RecipeError(f"model.outputs names {len(spec.outputs)} outputs; {path.name} has {len(outputs)} "
                          f"({', '.join(outputs)})")
    nodes = [(n.name, n.op_type) for n in proto.graph.node]
    for v in variants:
        _check_variant(v, path, proto)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    model = OnnxFileModel(path=path, inputs=inputs, output_names=list(spec.outputs or outputs), source=str(spec.onnx),
                          dynamic_batch=dynamic, external=external, file_outputs=outputs, nodes=nodes,
                          float_elements=_float_elements(proto))
    model._session = _session(path)
    return model


def read_checked(path: Path):
    """The file's ModelProto (external data not loaded), or one line saying why not."""
    import onnx

    from targets.onnx.runtime import read_onnx

    where = f"model.onnx {path}"
    regular_file(path, where, "fix 'model.onnx' in the recipe", "export the model again")
    kind = kind_of(head(path))
    if kind not in (None, "onnx", "text"):
        hint = _GIVE_AS.get(kind, "not ONNX; give the .onnx model")
        raise ModelLoadError(f"{where}: this is {NAMES[kind]}, {hint}")
    proto = read_onnx(path, ModelLoadError, where)
    if not proto.graph.output:
        raise ModelLoadError(f"{where}: not an ONNX model (no graph outputs); the file may be truncated or of "
                             "another format")
    check_external_data(path, proto)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise ModelLoadError(f"{where}: the ONNX checker rejects it ({first_line(e)[:300]}); fix the exporter's "
                             "output or export it again") from None
    return proto


def check_external_data(path: Path, proto) -> None:
    """External data must be a file inside the model's own folder (no absolute path, no
    `..`, no symlink out of it), present and long enough: a model file must not make the
    tool read, or copy into an artifact, a file the user did not hand over."""
    import onnx

    folder = os.path.realpath(path.parent)
    seen: dict[str, int] = {}
    for t in proto.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        what = f"model.onnx {path}: initializer {t.name!r} keeps its data in {loc!r}"
        if not loc or os.path.isabs(loc) or Path(loc).drive:
            raise ModelLoadError(f"{what}, an absolute path; external data must lie beside the model (a relative "
                                 "location in its folder)")
        if ".." in Path(loc).parts:
            raise ModelLoadError(f"{what}, outside the model's folder; keep external data beside the model")
        real = os.path.realpath(os.path.join(folder, loc))
        if os.path.commonpath([folder, real]) != folder:
            raise ModelLoadError(f"{what}, which links outside the model's folder; copy the data file beside the "
                                 "model instead of linking it")
        if not os.path.isfile(real):
            raise ModelLoadError(f"{what}, which is missing; keep the data file beside the model")
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        size = seen.setdefault(real, os.path.getsize(real))
        if end > size:
            raise ModelLoadError(f"{what}, which holds {size} bytes where the tensor ends at byte {end}: the data "
                                 "file is truncated or belongs to another model")


def name_nodes(graph) -> None:
    """Give every node a unique name (quantizer exclusions and reports go by node name):
    unnamed ones `<OpType>_<index>`, repeated names a suffix."""
    taken = {n.name for n in graph.node if n.name}
    seen: set[str] = set()
    for i, n in enumerate(graph.node):
        if n.name and n.name not in seen:
            seen.add(n.name)
            continue
        base = n.name or f"{n.op_type}_{i}"
        name, k = base, 1
        while name in taken or name in seen:
            name, k = f"{base}_{k}", k + 1
        n.name = name
        seen.add(name)
        taken.add(name)


def _inputs(path: Path, proto, given: list["InputSpec"] | None) -> tuple[list["InputSpec"], bool]:
    """The file's inputs with concrete shapes (a symbolic batch axis -> 1), the recipe's
    overrides applied by name, and whether the batch axis is dynamic."""
    from onnx import helper

    from compressor.config.model import DTYPES
    from compressor.config.recipe import InputSpec

    inits = {t.name for t in proto.graph.initializer}
    real = [i for i in proto.graph.input if i.name not in inits]
    override = {s.name: s for s in given or ()}
    unknown = sorted(set(override) - {i.name for i in real})
    if unknown:
        raise RecipeError(f"model.inputs names {unknown}, which {path.name} does not take; its inputs: "
                          f"{', '.join(i.name for i in real)}")
    specs, dynamic = [], bool(real)
    for i in real:
        tt = i.type.tensor_type
        if not i.type.HasField("tensor_type"):
            raise ModelLoadError(f"model.onnx {path}: input {i.name!r} is not a tensor (sequences and maps are not "
                                 "supported as inputs)")
        dtype = str(np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))) if tt.elem_type else "?"
        if dtype not in DTYPES:
            raise ModelLoadError(f"model.onnx {path}: input {i.name!r} is {dtype}; the tool feeds {', '.join(DTYPES)}")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                for d in tt.shape.dim]
        if not dims:
            raise ModelLoadError(f"model.onnx {path}: input {i.name!r} is a scalar (or has no recorded shape); "
                                 "the tool feeds batches, batch axis first")
        dynamic = dynamic and not isinstance(dims[0], int)
        o = override.get(i.name)
        if o is not None:
            dims = _overridden(path, i.name, dims, dtype, o)
        else:
            dims = [1 if (k == 0 and not isinstance(d, int)) else d for k, d in enumerate(dims)]
        loose = [(k, d) for k, d in enumerate(dims) if not isinstance(d, int)]
        if loose:
            k, d = loose[0]
            raise RecipeError(f"input {i.name!r} of {path.name} has a symbolic dim {k} ({d!r}); fix it in the recipe: "
                              f"inputs: [{{name: {i.name}, shape: {[x if isinstance(x, int) else 'N' for x in dims]}}}]")
        specs.append(InputSpec(name=i.name, shape=dims, dtype=o.dtype if o is not None else dtype))
    return specs, dynamic


def _overridden(path: Path, name: str, dims: list, dtype: str, o: "InputSpec") -> list[int]:
    if len(o.shape) != len(dims):
        raise RecipeError(f"model.inputs {name!r}: shape {o.shape} has {len(o.shape)} dims; {path.name} takes "
                          f"{len(dims)} ({dims})")
    for k, (want, have) in enumerate(zip(o.shape, dims)):
        if isinstance(have, int) and have != want:
            raise RecipeError(f"model.inputs {name!r}: dim {k} is {want} in the recipe but fixed at {have} in "
                              f"{path.name}; give {have} (or leave the input out of the recipe)")
    if o.dtype != dtype:
        raise RecipeError(f"model.inputs {name!r}: dtype {o.dtype} in the recipe, {dtype} in {path.name}; give "
                          f"{dtype}")
    return list(o.shape)


def _check_variant(v: "QuantVariant", path: Path, proto) -> None:
    """What a file source cannot do, refused before any work."""
    import difflib

    import onnx

    from targets.onnx import OnnxTarget

    if v.mode == "qat":
        raise RecipeError(f"variant {v.label!r}: quantization-aware training needs the PyTorch model; an ONNX file "
                          "can be quantized static, dynamic, fp16 or weight_only")
    if v.mode not in OnnxTarget.modes:
        raise RecipeError(f"variant {v.label!r}: the onnx target has no {v.mode} mode")
    names = {n.name for n in proto.graph.node}
    for name in v.exclude:
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"its nodes include {', '.join(sorted(names)[:4])}"
            raise RecipeError(f"variant {v.label!r}: exclude names {name!r}, which is no node of {path.name} (an "
                              f"ONNX file source is excluded by ONNX node name, not by PyTorch module); {hint}")
    for op in v.exclude_ops:
        if not onnx.defs.has(op):
            raise RecipeError(f"variant {v.label!r}: exclude_ops names {op!r}, which is not an ONNX operator type "
                              "(the onnx target takes ONNX op types such as Conv, Softmax)")
    if v.fallback is not None and v.fallback.sensitivity == "simulated":
        raise RecipeError(f"variant {v.label!r}: fallback.sensitivity 'simulated' runs the PyTorch model; an ONNX "
                          "file source is ranked on ONNX Runtime itself: use 'target' or 'auto'")


def _float_elements(proto) -> int:
    import onnx

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    return int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in proto.graph.initializer
                   if t.data_type in floats))


def _session(path: Path):
    """ONNX Runtime on the original file: the fp32 reference."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelLoadError(f"model.onnx {path}: onnxruntime cannot load it ({first_line(e)[:300]}); the tool "
                             "compresses models ONNX Runtime's CPU provider runs") from None


def quantizer_float_ops(nodes: list[tuple[str, str]], mode: str) -> list[str]:
    """Op types of the graph that ONNX Runtime's quantizer has no int8 handler for: they
    stay float in the int8 artifact (a note, not a failure)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    known = set(IntegerOpsRegistry) if mode == "dynamic" else set(QDQRegistry) | set(QLinearOpsRegistry)
    return sorted({op for _, op in nodes} - known)

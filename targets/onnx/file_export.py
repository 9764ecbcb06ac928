"""The fp32 artifact of an ONNX file source: the file itself, made ready for the
lowerings without changing what it computes.

What changes: every node gets a unique name (exclusions and the fallback's candidates
go by node name), outputs take the recipe's names, a fixed batch axis where the recipe
turns `dynamic_batch` off; then ONNX Runtime's quant_pre_process (symbolic shape
inference, its basic graph optimisations baked in, shapes recorded). That is what the
quantizer wants to start from, quantize_dynamic and the fp16 converter read its shapes, and it is exact here
(the run validates the artifact against the original file; max_abs 0.0 on the suite's
files). Speed of the fp32 file itself: no consistent change on the suite's files (legacy
torch ResNet-18 and MobileNetV2, tf2onnx Keras MobileNetV2; interleaved A/B runs on a
shared 2-core machine came out either way, within its noise), because ONNX Runtime
applies the same optimisations when it loads a session.
Its weights stay where the file kept them: inline, or in one external data file named
after the artifact.
"""

from __future__ import annotations

from pathlib import Path

from compressor.errors import ExportError, RecipeError, first_line
from compressor.fsutil import publish, staging_dir
from targets.base import Artifact
from targets.onnx.source import OnnxFileModel, name_nodes

# Past this much of weights (bytes), an inline file is saved with external data anyway.
EXTERNAL_BYTES = 1 << 30


def export_file_fp32(model: OnnxFileModel, out: Path, external_data: bool | None) -> Artifact:
    import onnx

    final = Path(f"{out}.onnx")
    external = model.external if external_data is None else external_data
    if not external and model.float_elements * 4 > EXTERNAL_BYTES:
        external = True
    with staging_dir(final.parent, final.name) as work:
        staged = work / final.name
        try:
            proto = onnx.load(str(model.path))  # external data already checked to lie in its folder
        except Exception as e:
            raise ExportError(f"{model.path}: reading its weights failed ({first_line(e)})") from None
        name_nodes(proto.graph)
        _rename_outputs(proto.graph, model.file_outputs, model.output_names)
        if not model.dynamic_batch:
            _fix_batch(proto.graph, model)
        named = work / "named.onnx"
        onnx.save(proto, str(named), save_as_external_data=external, all_tensors_to_one_file=True,
                  location="named.onnx.data" if external else None, size_threshold=1024)
        how = _preprocess(named, staged, external, f"{final.name}.data")
        from targets.onnx.runtime import check_onnx_file, external_data_files, op_histogram

        check_onnx_file(staged)
        companions = external_data_files(staged)
        publish({staged: final, **{c: final.parent / c.name for c in companions}})
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    meta = {"source_file": str(model.path), "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "opset": opset, "dynamic_batch": model.dynamic_batch, "output_names": list(model.output_names),
            "preprocess": how, "external_data": external, "op_types": op_histogram(final)}
    return Artifact(target="onnx", label="fp32", precision="fp32", path=final,
                    extra_files=[final.parent / c.name for c in companions], meta=meta)


def _rename_outputs(graph, old: list[str], new: list[str]) -> None:
    renames = {a: b for a, b in zip(old, new) if a != b}
    if not renames:
        return
    taken = {v for n in graph.node for v in (*n.input, *n.output)} | {i.name for i in graph.input}
    clash = sorted(b for b in renames.values() if b in taken and b not in renames)
    if clash:
        raise RecipeError(f"model.outputs: {clash} already name tensors of the graph; pick other output names")
    for o in graph.output:
        o.name = renames.get(o.name, o.name)
    for n in graph.node:
        n.output[:] = [renames.get(x, x) for x in n.output]
        n.input[:] = [renames.get(x, x) for x in n.input]


def _fix_batch(graph, model: OnnxFileModel) -> None:
    """targets.onnx.dynamic_batch: false: the batch axis fixed at the inputs' batch."""
    shapes = {s.name: s.shape for s in model.inputs}
    for i in graph.input:
        if i.name in shapes and i.type.tensor_type.shape.dim:
            d = i.type.tensor_type.shape.dim[0]
            d.Clear()
            d.dim_value = shapes[i.name][0]


def _preprocess(src: Path, dst: Path, external: bool, location: str) -> str:
    """ONNX Runtime's quant_pre_process of `src` into `dst` (symbolic shape inference
    where it knows every op, else ONNX's), nodes named again; or `src` as it is where
    pre-processing fails (an op nothing infers): which one, for the artifact's meta."""
    import contextlib
    import io

    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from targets.onnx.quantize import _root_logger_quiet, _working_dir

    src, dst = Path(src).absolute(), Path(dst).absolute()  # it runs in src's folder
    kw = dict(save_as_external_data=external, all_tensors_to_one_file=True, external_data_location=location,
              external_data_size_threshold=1024)
    how = "onnxruntime quant_pre_process (symbolic shape inference, basic optimisations)"
    # It writes a partial model into the working directory when symbolic inference stops.
    with _working_dir(src.parent), contextlib.redirect_stdout(io.StringIO()), _root_logger_quiet():
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False, **kw)
        except Exception:
            try:
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True, **kw)
                how = "onnxruntime quant_pre_process (ONNX shape inference, basic optimisations)"
            except Exception as e:
                onnx.save(onnx.load(str(src)), str(dst), save_as_external_data=external,
                          all_tensors_to_one_file=True, location=location if external else None, size_threshold=1024)
                return f"none (quant_pre_process failed: {first_line(e)[:200]})"
    proto = onnx.load(str(dst), load_external_data=False)
    if any(not n.name for n in proto.graph.node):  # optimisations may add unnamed nodes
        name_nodes(proto.graph)
        onnx.save(proto, str(dst))
    return how

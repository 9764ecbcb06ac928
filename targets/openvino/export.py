"""The float ov.Model of a PyTorch model, and writing an IR with its record.

The default source is our own fp32 ONNX export (the onnx target's exporter), read into an
ov.Model and constant-folded (the exporter's shape arithmetic becomes constants): the
graph users hand to NNCF when they do it themselves, with the module scopes the onnx
target already maps `exclude` onto.
`source: torch` converts the module itself with `ov.convert_model` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import ExportError, first_line
from targets.openvino.quiet import silenced
from targets.openvino.runtime import check_ir_file, companion_of, write_record

if TYPE_CHECKING:
    from compressor.model import Model

# Past this many bytes of parameters the intermediate ONNX keeps its weights in a .data file.
EXTERNAL_DATA_AUTO_BYTES = 1 << 30


def float_model(model: "Model", source: str, dynamic_batch: bool, work: Path) -> tuple[Any, dict]:
    """The fp32 ov.Model of `model` and the record of how it was made."""
    import openvino as ov

    if source == "torch":
        return _from_torch(model, dynamic_batch)
    from targets.onnx.export import export_fp32
    from targets.openvino.scopes import scopes_from_onnx

    path = work / "fp32.onnx"
    external = sum(p.numel() * p.element_size() for p in model.module.parameters()) > EXTERNAL_DATA_AUTO_BYTES
    notes = export_fp32(model, path, None, dynamic_batch, external)
    try:
        # Core.read_model, then ConstantFolding: it folds the exported graph's shape
        # arithmetic (ShapeOf/Divide/Split/Concat around every depthwise weight) into
        # constants; on the raw reader's graph NNCF left all 17 depthwise convs of
        # MobileNetV2 float (1.7x slower). ov.convert_model gives the same int8 speed
        # (4.47 vs 4.63 ms, MobileNetV2 1 thread, interleaved; cosine equal) and Clamp
        # instead of Maximum/Minimum.
        ov_model = ov.Core().read_model(str(path))
        from openvino import passes

        manager = passes.Manager()
        manager.register_pass(passes.ConstantFolding())
        manager.run_passes(ov_model)
    except Exception as e:
        raise ExportError(f"OpenVINO cannot read the ONNX export: {first_line(e)}") from None
    record = {"source": "onnx", "exporter": notes["exporter"], "opset": notes.get("opset"),
              "dynamic_batch": bool(notes.get("dynamic_batch")), "output_names": notes["output_names"],
              "scopes": scopes_from_onnx(ov_model, path)}
    return ov_model, record


def _from_torch(model: "Model", dynamic_batch: bool) -> tuple[Any, dict]:
    import openvino as ov
    import torch

    from targets.openvino.scopes import scopes_from_torch
    from targets.torch_archive import output_names_for

    example = model.example_inputs(batch=2)
    shapes = [ov.PartialShape([-1 if dynamic_batch else 2, *t.shape[1:]]) for t in example]
    try:
        with silenced(), torch.no_grad():
            ov_model = ov.convert_model(model.module, example_input=example, input=shapes)
    except Exception as e:
        raise ExportError(f"OpenVINO's PyTorch converter failed: {first_line(e)}") from None
    for port, name in zip(ov_model.inputs, model.input_names):
        port.get_tensor().set_names({name})
    with torch.no_grad():
        outs = model.module(*example)
    names = output_names_for(model, [outs] if isinstance(outs, torch.Tensor) else list(outs))
    for port, name in zip(ov_model.outputs, names):
        port.get_tensor().set_names({name})
    if not dynamic_batch:
        ov_model.reshape({p.any_name: ov.PartialShape([1, *p.get_partial_shape()[1:]]) for p in ov_model.inputs})
    return ov_model, {"source": "torch", "exporter": f"ov.convert_model (torch {torch.__version__})",
                      "dynamic_batch": dynamic_batch, "output_names": names, "scopes": scopes_from_torch(ov_model)}


def save_ir(ov_model, record: dict, staged: Path, compress_to_fp16: bool) -> list[Path]:
    """Write `staged` (.xml) and its .bin with the record inside; check they read back."""
    import openvino as ov

    write_record(ov_model, record)
    ov.save_model(ov_model, str(staged), compress_to_fp16=compress_to_fp16)
    check_ir_file(staged)
    return [staged, companion_of(staged)]


def op_histogram(ov_model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ov_model.get_ordered_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    return dict(sorted(counts.items()))

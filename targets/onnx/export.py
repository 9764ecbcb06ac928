"""PyTorch -> ONNX with the dynamo exporter (`torch.onnx.export(..., dynamo=True)`)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import torch

from compressor.errors import ExportError, UnsupportedOpError
from compressor.model import Model

# Where an unsupported operator shows up in the exporter's error text, most specific first.
_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.]+)'"),
    re.compile(r"target=torch\.ops\.([\w.]+?)(?:\.default)?\b"),
    re.compile(r"(aten::\w+|[\w]+::[\w]+)"),
)


def export_fp32(model: Model, path: Path, opset: int | None, dynamic_batch: bool,
                external_data: bool) -> dict:
    """Export `model` to `path` (plus `path.data` when `external_data`). Returns notes
    about how it was exported. A dynamic batch axis is tried first; a model that only
    exports with fixed shapes falls back to them, and the notes say so."""
    output_names = model.output_names or _default_output_names(model)
    notes: dict = {"exporter": f"torch.onnx dynamo (torch {torch.__version__})", "output_names": output_names}
    program = None
    if dynamic_batch:
        try:
            program = _export(model, opset, output_names, dynamic=True)
            notes["dynamic_batch"] = True
        except ExportError:
            program = None
    if program is None:
        program = _export(model, opset, output_names, dynamic=False)
        notes["dynamic_batch"] = False
    _unshadow_outputs(program, output_names)
    program.save(str(path), external_data=external_data)
    notes["opset"] = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return notes


def _unshadow_outputs(program, output_names: list[str]) -> None:
    """The exporter names values after the aten ops that make them ('embedding', 'linear')
    and then gives the graph outputs the user's names without looking: an output called
    'embedding' then has two producers and the checker refuses the graph. Inner values
    that shadow an output name get a suffix instead."""
    graph = program.model.graph
    outputs = {id(v) for v in graph.outputs}
    taken = {v.name for node in graph for v in node.outputs} | {v.name for v in graph.inputs}
    for node in graph:
        for value in node.outputs:
            if value.name in output_names and id(value) not in outputs:
                k = 1
                while f"{value.name}_{k}" in taken:
                    k += 1
                value.name = f"{value.name}_{k}"
                taken.add(value.name)


def _default_output_names(model: Model) -> list[str]:
    outs = model.run({s.name: t.numpy() for s, t in zip(model.inputs, model.example_inputs())})
    return ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]


def _export(model: Model, opset: int | None, output_names: list[str], dynamic: bool):
    # A batch of 2 for the example: torch.export specialises a size-1 axis to a constant.
    args = model.example_inputs(batch=2 if dynamic else None)
    dyn = tuple({0: torch.export.Dim("batch", min=1, max=65536)} for _ in args) if dynamic else None
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), _quiet_loggers():
            warnings.simplefilter("ignore")
            return torch.onnx.export(model.module, args, dynamo=True, input_names=model.input_names,
                                     output_names=output_names, dynamic_shapes=dyn, opset_version=opset,
                                     optimize=True, verbose=False)
    except Exception as e:  # the exporter raises a zoo of types; classify by text
        raise _classify(e) from None


def _classify(e: Exception) -> Exception:
    text = f"{e}\n{e.__cause__ or ''}"
    if "No ONNX function found" in text or "DispatchError" in text or "Unsupported" in text:
        op = next((m.group(1) for p in _OP_PATTERNS if (m := p.search(text))), None)
        if op:
            return UnsupportedOpError(f"ONNX export failed: operator {op!r} has no ONNX lowering; replace it "
                                      "in the model, or register an ONNX function for it (custom_translation_table)")
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip() and "step" not in ln.lower()), type(e).__name__)
    if "Failed to export the model with torch.export" in str(e) or "torch.export" in first:
        cause = _summary(text)
        return ExportError(f"ONNX export failed: torch.export could not trace the model ({cause})")
    return ExportError(f"ONNX export failed: {_summary(text) or first}")


def _summary(text: str) -> str:
    """The most telling line of an exporter error: its exception summary, if any."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("<class") and ">:" in line:
            return line.split(">:", 1)[1].strip()[:300]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


@contextlib.contextmanager
def _quiet_loggers():
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)

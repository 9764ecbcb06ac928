"""PyTorch -> torch.export ExportedProgram, PT2E int8 (X86InductorQuantizer), and the
AOTInductor package compiled from either."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import warnings
from pathlib import Path

import torch

from compressor.data import Dataset
from compressor.errors import DataError, ExportError, RecipeError
from compressor.model import Model
from compressor.config.quantize import QuantVariant
from compressor.errors import first_line

CALIB_BATCH = 16


def export_program(module: torch.nn.Module, model: Model, dynamic_batch: bool):
    """(ExportedProgram, whether its batch axis is symbolic). A model whose batch axis
    cannot be symbolic (a reshape to a constant size) is exported with fixed shapes."""
    if dynamic_batch:
        try:
            program = _export(module, model, dynamic=True)
        except ExportError:
            program = None
        if program is not None and _batch_is_symbolic(program):
            return program, True
        # Exported, but with the batch made a constant: the example's batch of 2 (a PT2E
        # graph of ShuffleNet's channel shuffle did this), which no caller would expect.
    return _export(module, model, dynamic=False), False


def _batch_is_symbolic(program) -> bool:
    """Whether every user input of `program` keeps a symbolic first axis."""
    inputs = [n for n in program.graph.nodes if n.op == "placeholder"
              and n.name in set(program.graph_signature.user_inputs)]
    shapes = [getattr(n.meta.get("val"), "shape", None) for n in inputs]
    return bool(shapes) and all(s is not None and len(s) and isinstance(s[0], torch.SymInt) for s in shapes)


def _export(module: torch.nn.Module, model: Model, dynamic: bool):
    # A batch of 2 for the example: torch.export specialises a size-1 axis to a constant.
    args = model.example_inputs(batch=2 if dynamic else None)
    dims = tuple({0: torch.export.Dim("batch", min=1, max=65536)} for _ in args) if dynamic else None
    try:
        with quiet():
            return torch.export.export(module, args, dynamic_shapes=dims)
    except Exception as e:  # torch.export raises UserError, GuardOnDataDependentSymNode, Unsupported, ...
        raise ExportError(f"torch.export failed: {describe(e)}") from None


def describe(e: BaseException) -> str:
    """One line for a torch.export failure; data-dependent control flow (a graph break)
    is named as such, with the user's file and line when the error text has them."""
    text = f"{e}"
    where = next((m.group(1) for m in re.finditer(r'File "([^"]+", line \d+)', text)
                  if "site-packages" not in m.group(1) and "/torch/" not in m.group(1)), None)
    where = " at " + where.replace('", line ', ":") if where else ""
    if re.search(r"data.dependent|GuardOnDataDependent|Could not guard on|control flow", text, re.I):
        return (f"the model has data-dependent control flow{where} (a branch on a tensor's value), which "
                "torch.export cannot capture in one graph; rewrite it with torch.cond or torch.where")
    return f"{type(e).__name__}: {first_line(e)}{where}"[:400]


@contextlib.contextmanager
def quiet():
    names = ("torch.export", "torch._dynamo", "torch._inductor", "torch.fx", "torch._export", "torch.utils")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


def unshare_stateless_modules(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` in which a parameter-free module called more than once (ResNet's
    BasicBlock applies one nn.ReLU twice) is one module per call. The x86 quantizer groups
    nodes by the module that made them and refuses a group with two outputs ("Input
    partition has more than one output node"). A model torch.fx cannot trace is left as is."""
    import copy

    try:
        gm = torch.fx.symbolic_trace(copy.deepcopy(module))
    except Exception:
        return module
    seen: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        sub = gm.get_submodule(node.target)
        seen[node.target] = seen.get(node.target, 0) + 1
        if seen[node.target] > 1 and not any(True for _ in sub.parameters()) and not any(True for _ in sub.buffers()):
            name = f"{node.target}_call{seen[node.target]}"
            gm.add_submodule(name, copy.deepcopy(sub))
            node.target = name
            # torch.export keeps a GraphModule's node metadata: drop the old module path.
            node.meta.pop("nn_module_stack", None)
            node.meta.pop("source_fn_stack", None)
    gm.recompile()
    return gm.eval()


def pt2e_int8(program, model: Model, v: QuantVariant, calibration: Dataset | None,
              for_inductor: bool = False, dynamic_batch: bool = True,
              quantizer=None) -> tuple[torch.nn.Module, dict]:
    """prepare_pt2e -> calibrate -> convert_pt2e with the X86InductorQuantizer: the graph
    Inductor lowers to oneDNN int8 kernels (quantize/dequantize pairs it fuses away).
    `quantizer`, when given, is another lowering's PT2E quantizer with its float scopes
    already set (the executorch target's XNNPACK one); the calibration is the same."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if calibration is None or len(calibration) == 0:
        raise DataError(f"static int8 ({v.label}) needs calibration data: add 'data: {{calibration: ...}}' "
                        "to the recipe")
    quantizer, one_channel = (_x86_quantizer(model, v, for_inductor) if quantizer is None else (quantizer, []))
    try:
        with quiet():
            from compressor.quant.pt2e_guard import unfold_shared_conv_bn

            graph = program.module()
            unfold_shared_conv_bn(graph)  # prepare_pt2e would fold a BatchNorm into a shared conv output
            prepared = prepare_pt2e(graph, quantizer)
            data = calibration.take(v.calibration_samples)
            with torch.no_grad():
                for batch in _calibration_batches(data, model, dynamic_batch):
                    prepared(*(torch.from_numpy(batch[n]) for n in model.input_names))
            converted = convert_pt2e(prepared)
    except (DataError, RecipeError):
        raise
    except Exception as e:
        raise ExportError(f"PT2E int8 ({v.label}) failed: {describe(e)}") from None
    _drop_unused_attributes(converted)
    return converted, {"engine": "torchao PT2E, X86InductorQuantizer", "calibration": v.calibration,
                       "calibration_samples": len(data), "weights": "int8 symmetric per-channel",
                       "activations": "uint8 asymmetric", "excluded": list(v.exclude),
                       "float_one_channel_convolutions": one_channel}


def _x86_quantizer(model: Model, v: QuantVariant, for_inductor: bool):
    """The X86InductorQuantizer for `v`, and the one-channel convolutions it keeps float."""
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    config = xiq.get_default_x86_inductor_quantization_config()
    if v.calibration == "minmax":  # the default is a HistogramObserver: keep it for percentile/entropy
        config = _with_minmax(config)
    from compressor.layers import check_module_names, module_types
    from compressor.qat.quantizers import x86_quantizer

    quantizer = x86_quantizer().set_global(config)
    check_module_names(model.module, v.exclude, "pt2")
    for name in v.exclude:  # an op fused into a convolution's int8 pattern follows that convolution
        quantizer.set_module_name_qconfig(name, None)

    for cls in module_types(model.module, v.exclude_ops, "pt2"):
        quantizer.set_module_type_qconfig(cls, None)
    # Inductor's int8 convolution misreads a one-channel input (an NCHW tensor with C=1
    # is also channels-last; torch 2.14): the digits CNN compiled to 12% top-1. Such a
    # layer stays float where Inductor will compile the graph.
    one_channel = [n for n, m in model.module.named_modules()
                   if for_inductor and isinstance(m, torch.nn.Conv2d) and m.in_channels == 1]
    for name in one_channel:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer, one_channel


def _calibration_batches(data: Dataset, model: Model, dynamic_batch: bool):
    """Batches of 16, or of the declared batch size for a program exported with a fixed
    batch (it refuses any other); a trailing partial batch is then left out."""
    if dynamic_batch:
        yield from data.batches(CALIB_BATCH)
        return
    size = model.inputs[0].shape[0]
    if len(data) < size:
        raise DataError(f"static int8 calibration needs at least {size} samples: the model takes a fixed batch "
                        f"of {size}, and the calibration data has {len(data)}")
    for batch in data.batches(size):
        if len(next(iter(batch.values()))) == size:
            yield batch


def _with_minmax(config):
    import dataclasses

    from torchao.quantization.pt2e.observer import MinMaxObserver

    act = config.input_activation
    return dataclasses.replace(config, input_activation=dataclasses.replace(act, observer_or_fake_quant_ctr=MinMaxObserver),
                               output_activation=None if config.output_activation is None else dataclasses.replace(
                                   config.output_activation, observer_or_fake_quant_ctr=MinMaxObserver))


def _drop_unused_attributes(gm: torch.fx.GraphModule) -> None:
    """convert_pt2e folds each weight into an int8 constant but leaves the float
    parameter on the module; re-exporting would store both (the file grows, not shrinks)."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            parent, _, leaf = name.rpartition(".")
            owner = gm.get_submodule(parent) if parent else gm
            owner._parameters.pop(leaf, None)
            owner._buffers.pop(leaf, None)


def compiler() -> str | None:
    """The C++ compiler AOTInductor would use, if any (it honours $CXX)."""
    import os

    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
    return next((shutil.which(c) for c in candidates if shutil.which(c)), None)


def compile_package(program, path: Path, meta: dict[str, str], freezing: bool = True) -> None:
    from torch._inductor import aoti_compile_and_package

    if compiler() is None:
        raise ExportError("AOTInductor needs a C++ compiler (g++ or clang++, or $CXX) and none was found; "
                          "install one, or use the pt2 target for the ExportedProgram alone")
    # Freezing folds the weights into prepacked oneDNN constants: that is what turns the
    # q/dq pairs of a PT2E graph into int8 convolutions, and gives fp32 prepacked oneDNN
    # convolutions too (the fair twin to compare with). Inductor freezes only with
    # autograd off and silently ignores the flag otherwise: the int8 package then ran
    # float convolutions on dequantized weights, slower than fp32.
    configs = {"aot_inductor.metadata": meta, "freezing": freezing}
    try:
        with quiet(), torch.no_grad():
            aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
    except Exception as e:
        raise ExportError(f"AOTInductor compilation failed: {describe(e)}") from None

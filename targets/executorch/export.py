"""torch.export program -> XNNPACK-delegated ExecuTorch program (.pte): fp32 as captured,
int8 through PT2E with the XNNPACK quantizer (targets.pt2.export.pt2e_int8 calibrates it,
as it does the x86 one), and what the lowering left outside the delegate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from compressor.errors import ExportError, UnsupportedOpError, first_line
from compressor.logs import native_stderr
from targets.executorch.runtime import SIGNATURE_METHOD

if TYPE_CHECKING:  # torch-side types, only for annotations (torch loads inside the functions)
    import torch

    from compressor.config.quantize import QuantVariant
    from compressor.model import Model

# Op names that mean int8 arithmetic; outside the delegate they run on ExecuTorch's
# portable reference kernels (or, without such a kernel, the method does not load).
# The smallest activation scale calibration may give (the tflite target's floor).
MIN_SCALE = 2.0 ** -64
QUANTIZED_OP_MARKS = ("quantize_per", "dequantize_per", "quantized_decomposed", "choose_qparams")


def xnnpack_quantizer(model: "Model", v: "QuantVariant"):
    """ExecuTorch's XNNPACKQuantizer for `v` (int8 activations, symmetric weights, per-channel
    unless the variant says per-tensor), with the recipe's float layers and op kinds left
    unannotated. Its own module-name filter reads torch.export's stack keys the old way and
    its set_module_name refuses None; the name filter the litert quantizer uses is swapped in
    and a None entry keeps a module float (the global pass skips it, nothing else annotates it)."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq

    from compressor.layers import check_module_names, module_types
    from compressor.qat.quantizers import _module_name_filter, _swapped

    config = xq.get_symmetric_quantization_config(is_per_channel=v.per_channel, is_dynamic=v.mode == "dynamic")
    if v.mode == "static":
        # Its default is a HistogramObserver whose smallest scale is 2**-12: random-weight
        # MobileNetV2's logits span 4e-9 and came out all zeros. The floor is lowered as on
        # the tflite target (targets/tflite/convert.py, MIN_SCALE); minmax swaps the observer.
        from torchao.quantization.pt2e import MinMaxObserver

        ctr = config.input_activation.observer_or_fake_quant_ctr
        observer = MinMaxObserver if v.calibration == "minmax" else ctr.p.func
        act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer.with_args(
            **{**ctr.p.keywords, "eps": MIN_SCALE}))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)

    class Quantizer(xq.XNNPACKQuantizer):
        def annotate(self, gm):
            with _swapped(xq, "get_module_name_filter", _module_name_filter):
                return super().annotate(gm)

    quantizer = Quantizer().set_global(config)
    check_module_names(model.module, v.exclude, "executorch")
    for name in v.exclude:
        quantizer.module_name_config[name] = None
    for cls in module_types(model.module, v.exclude_ops, "executorch"):
        quantizer.module_type_config[cls] = None
    return quantizer


def signature_tensor(stored: dict) -> "torch.Tensor":
    """The signature as a uint8 tensor: what a constant method of a .pte can return."""
    import torch

    return torch.tensor(list(json.dumps(stored).encode()), dtype=torch.uint8)


def lower(program, stored: dict, max_batch: int | None) -> tuple[bytes, list[str]]:
    """(the .pte bytes, the call_function ops left outside the XNNPACK delegate)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    from targets.pt2.export import describe, quiet

    try:
        with quiet():
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                               constant_methods={SIGNATURE_METHOD: signature_tensor(stored)})
            left = undelegated_ops(edge.exported_program())
            config = ExecutorchBackendConfig(sym_shape_eval_pass=_bounded_batch_pass(edge.exported_program(),
                                                                                     max_batch))
            return edge.to_executorch(config).buffer, left
    except Exception as e:  # the partitioner and to_executorch raise assorted types
        raise ExportError(f"ExecuTorch lowering failed: {describe(e)}") from None


def undelegated_ops(program) -> list[str]:
    """Sorted names of the tensor ops the graph still calls itself (not inside a delegate).
    Shape arithmetic on a symbolic batch (sym_size, operator.mul) runs as ExecuTorch's
    scalar prim ops and is left out."""
    names = set()
    for node in program.graph.nodes:
        target = node.target
        if node.op != "call_function" or getattr(target, "__module__", None) == "_operator":
            continue
        name = str(getattr(target, "__name__", target))
        if name.count(".") < 2:  # a plain OpOverload names itself without its namespace
            name = str(target)
        if "executorch_call_delegate" not in name and not name.startswith("aten.sym_"):
            names.add(name)
    return sorted(names)


def quantized_left(ops: list[str]) -> list[str]:
    return [op for op in ops if any(mark in op for mark in QUANTIZED_OP_MARKS)]


def _bounded_batch_pass(program, max_batch: int | None):
    """The memory planner's shape pass with the batch axis bounded by `max_batch`.

    ExecuTorch plans every tensor at its upper bound, read from the shape environment. Fake
    convolution inside XNNPACK's channels-last pass guards on the batch size with the trace's
    hint (torch 2.14: `_select_conv_backend`) and narrows the batch to at most 15 there, so a
    program exported for batches up to 64 refused batch 16 at run time. This pass bounds the
    program's own batch symbols by `max_batch` instead and evaluates the rest as ExecuTorch's
    ConstraintBasedSymShapeEvalPass does."""
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass
    from torch.utils._sympy.value_ranges import ValueRanges

    bounds = {sym: ValueRanges(vr.lower, max_batch) for sym, vr in program.range_constraints.items()}
    if not bounds or max_batch is None:
        return ConstraintBasedSymShapeEvalPass()

    class BoundedBatch(ConstraintBasedSymShapeEvalPass):
        def call(self, graph_module):
            envs = {id(env): env for env in _shape_envs(graph_module)}
            saved = {k: dict(env.var_to_range) for k, env in envs.items()}
            try:
                for env in envs.values():
                    env.var_to_range.update({s: b for s, b in bounds.items() if s in env.var_to_range})
                return super().call(graph_module)
            finally:
                for k, env in envs.items():
                    env.var_to_range.clear()
                    env.var_to_range.update(saved[k])

    return BoundedBatch()


def _shape_envs(graph_module):
    import torch

    for node in graph_module.graph.nodes:
        val = node.meta.get("val")
        for d in getattr(val, "shape", ()):
            if isinstance(d, torch.SymInt):
                yield d.node.shape_env


def refuse_missing_kernels(ops: list[str], label: str) -> None:
    """Ops left outside the delegate that no kernel of this runtime implements: the method
    would not load. One line naming them and what to do."""
    from targets.executorch.runtime import _runtime

    known = {n.split(".")[0] for n in _runtime().operator_registry.operator_names}
    missing = [op for op in ops if _kernel_name(op) not in known]
    if missing:
        raise UnsupportedOpError(f"{label}: XNNPACK left {', '.join(missing)} outside its delegate and this "
                                 "ExecuTorch runtime has no kernel for them; keep the op around them in float "
                                 "(exclude_ops=[...] or exclude=[...]) or use another target (tflite, onnx)")


def _kernel_name(op: str) -> str:
    # Edge ops print as 'quantized_decomposed.quantize_per_tensor.default'; kernels register
    # as 'quantized_decomposed::quantize_per_tensor.out'.
    parts = op.split(".")
    return "::".join(parts[:2]) if len(parts) >= 2 else op


def check_runs(data: bytes, program, model: "Model", label: str, ops: list[str]) -> float:
    """Run the lowered program once on the example input against the PT2E graph it was
    lowered from; the cosine. A program whose undelegated int8 ops do not run is refused."""
    import torch

    from targets.executorch.runtime import _native_reason, _runtime

    args = model.example_inputs(batch=2)
    with torch.no_grad():
        ref = program.module()(*args)
    ref = ref if isinstance(ref, torch.Tensor) else ref[0]
    with native_stderr() as said:
        try:
            got = _runtime().load_program(data).load_method("forward").execute(list(args))[0]
        except Exception as e:
            raise UnsupportedOpError(f"{label}: the ExecuTorch program does not run with "
                                     f"{', '.join(quantized_left(ops)) or ', '.join(ops)} outside the XNNPACK "
                                     f"delegate{_native_reason(said()) or f' ({first_line(e)})'}; keep that "
                                     "part in float (exclude_ops=[...]) or use another target") from None
    a, b = ref.flatten().double().numpy(), got.flatten().double().numpy()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den else float(np.array_equal(a, b))


def batch_holds(data: bytes, model: "Model", max_batch: int) -> bool:
    """Whether a program lowered with a symbolic batch runs at batches other than 2.
    XNNPACK can take a reshape of the batch axis (ShuffleNet's channel shuffle) with the
    example's size as a constant: torch.export kept the batch symbolic, the delegate
    did not, and such a .pte runs at batch 2 only."""
    import torch

    from targets.executorch.runtime import _runtime

    with native_stderr():
        try:
            method = _runtime().load_program(data).load_method("forward")
            for batch in (1, min(3, max_batch)):  # neither is the example's 2
                method.execute(list(torch.zeros_like(a).expand(batch, *a.shape[1:]).contiguous()
                                    for a in model.example_inputs(batch=1)))
        except Exception:
            return False
    return True

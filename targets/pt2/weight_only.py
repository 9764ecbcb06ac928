"""Weight-only int8 for the torch.export targets, with torchao's configs: the weights of
nn.Linear (and nn.Embedding) layers become int8 tensor subclasses, which torch.export
flattens into int8 constants and a dequantize in front of each matmul or lookup.

torchao 0.18 has no 4-bit layout an x86 CPU runs that is smaller than int8:
Int4WeightOnlyConfig's packing formats (plain, preshuffled, tile_packed_to_4d,
plain_int32) are CUDA/XPU kernels, IntxWeightOnlyConfig keeps 4-bit values one a byte
(unpacked_to_int8), and its packed formats need torchao's C++ kernel library (not in the
wheel) or KleidiAI (Arm). So pt2/aoti offer bits: 8 and refuse 4 with one line.
"""

from __future__ import annotations

import copy

from compressor.config.quantize import QuantVariant
from compressor.errors import ExportError, UnsupportedOpError, first_line


def refuse(v: QuantVariant, target: str) -> None:
    if v.bits == 4:
        raise UnsupportedOpError(f"{target} weight-only ({v.label}): torchao 0.18 has no x86 CPU int4 layout "
                                 "(Int4WeightOnlyConfig packs for CUDA/XPU; IntxWeightOnlyConfig stores 4-bit "
                                 "values one a byte): use bits: 8 here, or the onnx target (MatMulNBits) for int4")
    if v.compute != "float":
        raise UnsupportedOpError(f"{target} weight-only ({v.label}): torchao's weight-only kernels compute in "
                                 "float; compute: int8 is onnx and tflite only")
    if v.embeddings == "int4":
        raise UnsupportedOpError(f"{target} weight-only ({v.label}): embeddings: int4 has no torchao layout on "
                                 "x86 smaller than int8 (4-bit values are stored one a byte): use embeddings: int8 "
                                 "or float")
    if v.algorithm != "rtn":
        raise UnsupportedOpError(f"{target} weight-only ({v.label}): torchao's int8 weight-only rounds to nearest; "
                                 f"algorithm: {v.algorithm} is onnx only: use algorithm: rtn")


def quantize_weights(module, v: QuantVariant, target: str):
    """A copy of `module` with int8 weights (the user's module is left as it is), and notes."""
    import torch
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup, PerRow
    from torchao.quantization.quant_primitives import MappingType

    from compressor.layers import check_module_names, module_types

    refuse(v, target)
    check_module_names(module, v.exclude, target)
    kept_types = tuple(module_types(module, v.exclude_ops, target))
    kept = [n for n, m in module.named_modules() if _under(n, v.exclude) or (kept_types and isinstance(m, kept_types))]
    quantized = copy.deepcopy(module)
    grain = PerRow() if v.group_size == "channel" else PerGroup(v.group_size)
    if v.symmetric:
        linear = Int8WeightOnlyConfig(granularity=grain)
    else:  # Int8WeightOnlyConfig is symmetric only
        linear = IntxWeightOnlyConfig(weight_dtype=torch.int8, mapping_type=MappingType.ASYMMETRIC,
                                      granularity=PerAxis(0) if v.group_size == "channel" else grain)
    done: dict[str, list[str]] = {"linear": [], "embedding": []}

    def pick(kind: type, into: str):
        def take(m, fqn: str) -> bool:
            ok = isinstance(m, kind) and fqn not in kept and _divides(m, v.group_size)
            if ok:
                done[into].append(fqn)
            return ok
        return take

    try:
        quantize_(quantized, linear, filter_fn=pick(torch.nn.Linear, "linear"))
        if v.embeddings == "int8":
            mapping = MappingType.SYMMETRIC if v.symmetric else MappingType.ASYMMETRIC
            table = IntxWeightOnlyConfig(weight_dtype=torch.int8, mapping_type=mapping,
                                         granularity=PerAxis(0) if v.group_size == "channel" else grain)
            quantize_(quantized, table, filter_fn=pick(torch.nn.Embedding, "embedding"))
    except Exception as e:
        raise ExportError(f"{target} weight-only ({v.label}) failed in torchao: {first_line(e)}") from None
    if not done["linear"] and not done["embedding"]:
        raise UnsupportedOpError(f"{target} weight-only ({v.label}): the model has no nn.Linear or nn.Embedding "
                                 "layer to quantize" + (" outside 'exclude'" if kept else "") +
                                 "; torchao's weight-only configs cover those (use mode: static for convolutions)")
    layout = "per output channel" if v.group_size == "channel" else f"blocks of {v.group_size} along the input axis"
    return quantized.eval(), {
        "engine": f"torchao {'Int8WeightOnlyConfig' if v.symmetric else 'IntxWeightOnlyConfig (int8, asymmetric)'}",
        "weights": f"int8 {'symmetric' if v.symmetric else 'asymmetric'}, {layout}", "activations": "float",
        "quantized_linear": len(done["linear"]), "quantized_embeddings": len(done["embedding"]),
        "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops)}


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _divides(m, group) -> bool:
    """A layer whose input width the group size does not divide stays float (torchao's
    per-group layouts need whole groups)."""
    import torch

    if group == "channel":
        return True
    width = m.in_features if isinstance(m, torch.nn.Linear) else m.embedding_dim
    return width % group == 0

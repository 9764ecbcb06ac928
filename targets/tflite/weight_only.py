"""Weight-only int4/int8 TFLite, lowered from the fp32 .tflite with ai-edge-quantizer.

ai-edge-quantizer 0.10 offers two layouts, and its policy silently skips any other:
- compute float: weight-only configs (int4 or int8, symmetric or not) with one scale per
  output channel; a DEQUANTIZE op in front of each consumer gives the kernels float weights.
- compute int8: its dynamic configs: int4 blocks of 32 to 256 along the input axis or
  int8 per channel, symmetric; LiteRT's kernels (XNNPACK) quantize activations on the fly.
"""

from __future__ import annotations

from compressor.errors import UnsupportedOpError

# The ops with weights besides the lookup, given the weights' config where ai-edge-quantizer's
# policy takes it when the embedding tables get other bits (or none).
WEIGHT_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE")


def weight_only_recipe(rp, variant) -> str:
    """Add `variant`'s configs to the RecipeManager `rp`; return the engine's description.
    A combination ai-edge-quantizer would skip is refused with one line first."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.qtyping import TFLOperationName

    refuse(variant)
    float_compute = variant.compute == "float"

    def config(bits: int, group):
        grain = (qtyping.QuantGranularity.CHANNELWISE if group == "channel"
                 else qtyping.QuantGranularity(f"BLOCKWISE_{group}"))
        return qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=bits, symmetric=variant.symmetric,
                                                                  granularity=grain),
            compute_precision=qtyping.ComputePrecision.FLOAT if float_compute else qtyping.ComputePrecision.INTEGER,
            explicit_dequantize=float_compute)

    weights = config(variant.bits, variant.group_size)
    table_bits = {"int4": 4, "int8": 8}.get(variant.embeddings)
    if table_bits == variant.bits:
        rp.add_quantization_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, op_config=weights)
    else:
        for op in WEIGHT_OPS:
            try:
                rp.add_quantization_config(regex=".*", operation_name=TFLOperationName(op), op_config=weights)
            except ValueError:  # not in its policy for this config: that op stays float
                pass
    tables = "as the weights" if table_bits == variant.bits else "float"
    if table_bits is not None and table_bits != variant.bits:
        # int8 blocks have no LiteRT kernel: int8 tables are per row.
        group = "channel" if table_bits == 8 else variant.group_size
        try:
            rp.add_quantization_config(regex=".*", operation_name=TFLOperationName.EMBEDDING_LOOKUP,
                                       op_config=config(table_bits, group))
        except ValueError:
            raise UnsupportedOpError(f"TFLite weight-only ({variant.label}): ai-edge-quantizer has no "
                                     f"{variant.embeddings} embedding layout with compute: {variant.compute}; use "
                                     f"embeddings: int{variant.bits} or float") from None
        tables = f"{variant.embeddings}, {'per row' if group == 'channel' else f'blocks of {group}'}"
    layout = ("per output channel" if variant.group_size == "channel"
              else f"blocks of {variant.group_size} along the input axis")
    kind = "symmetric" if variant.symmetric else "asymmetric"
    if float_compute:
        return (f"ai-edge-quantizer weight-only (int{variant.bits} {kind}, {layout}; embeddings {tables}; "
                "DEQUANTIZE to float weights)")
    return (f"ai-edge-quantizer dynamic-range (int{variant.bits} {kind}, {layout}; embeddings {tables}; the "
            "kernels quantize activations on the fly)")


def refuse(variant) -> None:
    """One line for a weight-only variant that ai-edge-quantizer 0.10 has no layout for."""
    label = variant.label
    if variant.algorithm != "rtn":
        raise UnsupportedOpError(f"TFLite weight-only ({label}): ai-edge-quantizer rounds to nearest (min/max "
                                 f"per channel or block); algorithm: {variant.algorithm} is onnx only: use "
                                 "algorithm: rtn")
    if variant.exclude or variant.exclude_ops:
        raise UnsupportedOpError(f"TFLite weight-only ({label}): 'exclude' and 'exclude_ops' are not offered "
                                 "(ai-edge-quantizer selects layers by TFLite tensor name); drop them")
    if variant.compute == "float" and variant.group_size != "channel":
        raise UnsupportedOpError(f"TFLite weight-only ({label}): with compute: float ai-edge-quantizer quantizes "
                                 "per output channel only: use group_size: channel, or compute: int8 for int4 "
                                 f"blocks of {variant.group_size}")
    if variant.compute == "int8" and not variant.symmetric:
        raise UnsupportedOpError(f"TFLite weight-only ({label}): LiteRT's int8-compute kernels take symmetric "
                                 "weights only: use symmetric: true, or compute: float with group_size: channel")
    if variant.compute == "int8" and variant.bits == 8 and variant.group_size != "channel":
        raise UnsupportedOpError(f"TFLite weight-only ({label}): int8 weights in blocks have no LiteRT kernel "
                                 "(blocks are int4 only): use group_size: channel, or bits: 4")


def check_quantized(fp32_bytes: int, out_bytes: int, label: str) -> None:
    """ai-edge-quantizer leaves a tensor float when its policy refuses the config, without
    a word: a file that did not shrink was not quantized."""
    if out_bytes > 0.9 * fp32_bytes:
        raise UnsupportedOpError(f"TFLite weight-only ({label}): ai-edge-quantizer quantized no weight tensor "
                                 f"({out_bytes:,} bytes against {fp32_bytes:,} in fp32): the model has no "
                                 "FULLY_CONNECTED, BATCH_MATMUL, CONV_2D or EMBEDDING_LOOKUP weights it takes")

"""fp16 weights, dynamic-range int8 and weight-only int4/int8 (targets.tflite.weight_only),
lowered from the fp32 .tflite with ai-edge-quantizer.

All keep float activations, so they need no calibration and no second trip through
torch.export: a rewrite of the fp32 flatbuffer takes a second, a PyTorch conversion tens.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

from compressor.errors import ExportError, UnsupportedOpError


def lower_from_fp32(fp32: Path, dst: Path, variant, keep_float: list[tuple[str, str]] | None = None) -> dict:
    """`keep_float`: (regex over an op's output tensor names, TFLite op name or '*') pairs left
    float, for a .tflite source whose names the recipe can use; None refuses 'exclude' (the
    PyTorch path's names are module names, which the converted file does not keep)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sink = io.StringIO()  # its progress bars go to stderr: a user sees the tool's lines only
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        from ai_edge_quantizer import quantizer, recipe_manager
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from ai_edge_quantizer.qtyping import TFLOperationName

        rp = recipe_manager.RecipeManager()
        if variant.mode == "fp16":
            # FLOAT_CASTING stores weights as fp16 with a DEQUANTIZE op in front of each
            # consumer; XNNPACK folds the pair into its fp32 kernels at load time.
            rp.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                      algorithm_key=AlgorithmName.FLOAT_CASTING)
            engine = "ai-edge-quantizer float casting (fp16 weights, fp32 compute)"
        elif variant.mode == "dynamic":
            from ai_edge_quantizer import qtyping

            granularity = (qtyping.QuantGranularity.CHANNELWISE if variant.per_channel
                           else qtyping.QuantGranularity.TENSORWISE)
            # int8 weights; the kernels quantize activations on the fly (dynamic range).
            rp.add_dynamic_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=8,
                                  granularity=granularity)
            engine = "ai-edge-quantizer dynamic range (int8 weights, int8 compute on the fly)"
            if not variant.per_channel:
                # LiteRT's hybrid depthwise kernel with one weight scale gives garbage (cosine 0.16 on
                # the digits CNN): depthwise weights keep a scale per channel.
                rp.add_dynamic_config(regex=".*", operation_name=TFLOperationName.DEPTHWISE_CONV_2D, num_bits=8,
                                      granularity=qtyping.QuantGranularity.CHANNELWISE)
                engine += "; depthwise weights per channel (LiteRT's per-tensor hybrid depthwise is wrong)"
        elif variant.mode == "weight_only":
            from targets.tflite.weight_only import weight_only_recipe

            engine = weight_only_recipe(rp, variant)
        else:
            raise ValueError(f"lower_from_fp32 handles fp16, dynamic and weight_only, not {variant.mode!r}")
        if keep_float is not None:
            keep_ops_float(rp, keep_float)
        for name in variant.exclude if keep_float is None else ():
            raise UnsupportedOpError(f"'exclude' ({name!r}) is not offered for {variant.mode} TFLite: "
                                     "ai-edge-quantizer selects layers by TFLite tensor name; drop 'exclude'")
        q = quantizer.Quantizer(str(fp32))
        q.load_quantization_recipe(rp.get_quantization_recipe())
        try:
            result = q.quantize(enable_progress_report=False, enable_progress_bar=False)
        except Exception as e:
            first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise ExportError(f"TFLite {variant.mode} lowering failed in ai-edge-quantizer: {first[:300]}") from None
        if variant.mode == "weight_only":
            from targets.tflite.weight_only import check_quantized

            check_quantized(Path(fp32).stat().st_size, len(result.quantized_model), variant.label)
        Path(dst).write_bytes(bytes(result.quantized_model))
    return {"engine": engine, "from": Path(fp32).name}


def keep_ops_float(rp, keep_float: list[tuple[str, str]]) -> None:
    """Later entries of a RecipeManager win: NO_QUANTIZE for each pair, after the variant's own."""
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    for regex, op in keep_float:
        rp.add_quantization_config(regex=regex, operation_name=TFLOperationName(op),
                                   algorithm_key=AlgorithmName.NO_QUANTIZE)

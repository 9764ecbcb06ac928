"""The TFLite target's full-integer int8 of a transformer: its Linear layers only, made
outlier-aware first (targets.torch_outliers: smoothing, float outlier channels), the
rest float (residual adds, LayerNorm, Softmax, GELU, the attention products, and the
smoothing's own Mul and side path). litert-torch's PT2E quantizer annotates each of the
Linear layers by name and nothing else; its converter gives int8 FULLY_CONNECTED
kernels (XNNPACK) between QUANTIZE/DEQUANTIZE pairs.

The residual adds are what litert-torch's whole-graph default quantizes besides the
linear layers; in a trained BERT they carry the outlier hidden dimensions (values of
20-30 where the rest stay under 3), and one int8 scale there costs every other channel
its resolution.
"""

from __future__ import annotations

from compressor.config.quantize import QuantVariant


def transformer_plan(model, v: QuantVariant, calibration, channels_last: bool):
    """(rewritten module, Linear names to quantize static, names left for dynamic-range
    kernels, meta) for a transformer; None when this does not apply (outliers off, NHWC
    io, no calibration data, not a transformer)."""
    if v.outliers == "off" or channels_last or calibration is None or not len(calibration):
        return None
    from compressor.layers import check_module_names
    from targets.torch_outliers import apply, kept_float, plan_linears

    check_module_names(model.module, v.exclude, "tflite")
    plan = plan_linears(model.module, model.input_names, calibration, v.calibration_samples, False,
                        v.smoothing_alpha, rewrites=v.outliers != "linear")
    if plan is None:
        return None
    module, lowered = apply(model.module, plan, kept_float(model.module, v, "tflite"))
    # TFLite's int8 FULLY_CONNECTED requantizes its output with one calibrated scale. The
    # layers whose outputs carry outlier channels, and those the plan gives per-inference
    # ranges, get TFLite's dynamic-range kernel instead (int8 weights, the input quantized
    # per inference, float output).
    wide = plan.wide_outputs()
    hybrid = [n for n, src in lowered.items() if src in wide or plan.plan_of(src).dynamic]
    static = [n for n in lowered if n not in hybrid]
    notes = plan.notes(False)
    notes["outliers"]["wide_output_layers"] = len([n for n, src in lowered.items() if src in wide])
    return module.eval(), static, hybrid, {
        **notes, "int8_layers": len(lowered), "dynamic_range_layers": len(hybrid),
        "float_ops": "residual adds, normalisations, softmax, activations, attention products"}


# The FULLY_CONNECTED ops litert-torch made from nn.Linear modules (its tensor names carry
# the module stack), not an OutlierLinear's float side path.
LINEAR_FC = r"torch\.nn\.modules\.linear\.Linear_"


def dynamic_range_pass(path) -> int:
    """Give the float FULLY_CONNECTED ops of nn.Linear layers left in `path` (the layers
    not annotated static) ai-edge-quantizer's dynamic-range int8; int8 ones stay as they
    are. The count of FULLY_CONNECTED ops with float input and int8 weights after it."""
    import contextlib
    import io
    import warnings
    from pathlib import Path

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from ai_edge_quantizer import qtyping, quantizer, recipe_manager
        from ai_edge_quantizer.qtyping import TFLOperationName

        rp = recipe_manager.RecipeManager()
        rp.add_dynamic_config(regex=LINEAR_FC, operation_name=TFLOperationName.FULLY_CONNECTED, num_bits=8,
                              granularity=qtyping.QuantGranularity.CHANNELWISE)
        q = quantizer.Quantizer(str(path))
        q.load_quantization_recipe(rp.get_quantization_recipe())
        Path(path).write_bytes(bytes(q.quantize(enable_progress_report=False).quantized_model))
    return _hybrid_count(Path(path))


def _hybrid_count(path) -> int:
    from ai_edge_litert import schema_py_generated as schema

    from targets.tflite import flatbuf

    m = flatbuf.read(path)
    fc = [i for i, c in enumerate(m.operatorCodes)
          if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.FULLY_CONNECTED]
    count = 0
    for sg in m.subgraphs:
        for op in sg.operators:
            if op.opcodeIndex in fc and len(op.inputs) > 1 and op.inputs[1] >= 0:
                x, w = sg.tensors[op.inputs[0]].type, sg.tensors[op.inputs[1]].type
                count += x == schema.TensorType.FLOAT32 and w == schema.TensorType.INT8
    return count

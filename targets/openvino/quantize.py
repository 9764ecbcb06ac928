"""NNCF's lowerings of a quantization intent for OpenVINO: static int8 (nncf.quantize,
or nncf.quantize_with_accuracy_control when the fallback asks for it) and weight-only
int8/int4 (nncf.compress_weights), all on the fp32 ov.Model.

The intent maps onto NNCF's own knobs: symmetric_activations forces the PERFORMANCE
preset (symmetric activations); without it the target's `preset` option decides, whose
default is PERFORMANCE too (NNCF's own default: on MobileNetV2 MIXED's asymmetric
activations ran 1.2x slower on OpenVINO's CPU kernels); calibration 'percentile' picks
NNCF's MEAN_QUANTILE range estimator, per_channel its weight granularity,
calibration_samples its subset_size; `exclude` and `exclude_ops` become one IgnoredScope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.errors import DataError, RecipeError
from targets.openvino.quiet import load_nncf, silenced

if TYPE_CHECKING:
    from compressor.config.quantize import QuantVariant
    from compressor.data import Dataset

# Held back from the calibration inputs for accuracy control's validation metric.
VALIDATION_SHARE = 0.25


def _samples(calibration: "Dataset", names: list[str]) -> list[dict[str, np.ndarray]]:
    n = len(calibration)
    return [{k: calibration.inputs[k][i:i + 1] for k in names} for i in range(n)]


def ignored_scope(ov_model, record: dict, variant: "QuantVariant"):
    """NNCF's IgnoredScope for the variant's float layers and op kinds (None: none)."""
    from targets.openvino.scopes import check_op_types, ops_to_ignore

    if not variant.exclude and not variant.exclude_ops:
        return None, [], []
    nncf = load_nncf()

    ops = list(ov_model.get_ordered_ops())
    scopes = {**{op.get_friendly_name(): [] for op in ops}, **(record.get("scopes") or {})}
    names = ops_to_ignore(scopes, list(variant.exclude))
    present = {op.get_type_name() for op in ops}
    check_op_types(list(variant.exclude_ops), present)
    types = [t for t in variant.exclude_ops if t in present]
    return nncf.IgnoredScope(names=names, types=types, validate=False), names, types


def _advanced(variant: "QuantVariant"):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    kw: dict[str, Any] = {}
    if not variant.per_channel:
        kw["weights_quantization_params"] = QuantizationParameters(per_channel=False)
    if variant.calibration == "percentile":
        kw["activations_range_estimator_params"] = RangeEstimatorParametersSet.MEAN_QUANTILE
    return AdvancedQuantizationParameters(**kw)


def static_int8(ov_model, record: dict, variant: "QuantVariant", calibration: "Dataset | None",
                names: list[str], preset_name: str = "performance",
                accuracy_control: float | None = None) -> tuple[Any, dict]:
    """The NNCF-quantized copy of `ov_model` and notes on what was done. With
    `accuracy_control` (a minimum mean output cosine), NNCF's accuracy-aware search
    reverts the quantizers that cost most until that holds on held-out inputs."""
    nncf = load_nncf()

    if calibration is None or len(calibration) == 0:
        raise DataError(f"{variant.label}: openvino static int8 calibrates on data; add data.calibration to the "
                        "recipe")
    if variant.calibration == "entropy":
        raise RecipeError(f"{variant.label}: NNCF has no entropy calibration; use calibration: minmax or "
                          "percentile for the openvino target")
    scope, ignored_ops, ignored_types = ignored_scope(ov_model, record, variant)
    preset = nncf.QuantizationPreset.PERFORMANCE if variant.symmetric_activations or \
        preset_name == "performance" else nncf.QuantizationPreset.MIXED
    samples = _samples(calibration, names)
    common = dict(preset=preset, subset_size=min(variant.calibration_samples, len(samples)),
                  fast_bias_correction=True, ignored_scope=scope)
    notes: dict[str, Any] = {
        "engine": f"NNCF {nncf.__version__} post-training quantization (OpenVINO backend)", "nncf": nncf.__version__,
        "preset": preset.value, "activations": "asymmetric" if preset.value == "mixed" else "symmetric",
        "weights": "per-channel symmetric" if variant.per_channel else "per-tensor symmetric",
        "range_estimator": "mean_quantile" if variant.calibration == "percentile" else "nncf default (min/max)",
        "subset_size": common["subset_size"], "fast_bias_correction": True,
        "ignored_ops": ignored_ops, "ignored_types": ignored_types, "excluded": list(variant.exclude)}
    with silenced():
        if accuracy_control is None:
            quantized = nncf.quantize(ov_model, nncf.Dataset(samples), advanced_parameters=_advanced(variant),
                                      **common)
        else:
            quantized, extra = _with_accuracy_control(ov_model, samples, accuracy_control, variant, common)
            notes.update(extra)
    notes["float_ops_left"] = _float_compute_ops(quantized)
    return quantized, notes


def _with_accuracy_control(ov_model, samples, min_cosine: float, variant, common) -> tuple[Any, dict]:
    """nncf.quantize_with_accuracy_control, its metric the mean output cosine against the
    fp32 model's own outputs on the last quarter of the calibration inputs (held out of
    calibration), its max_drop 1 - min_cosine (the fp32 model scores 1 on itself)."""
    nncf = load_nncf()
    import openvino as ov

    held = max(2, int(len(samples) * VALIDATION_SHARE))
    if len(samples) < held + 2:
        raise DataError(f"{variant.label}: accuracy control needs at least {held + 2} calibration inputs "
                        f"({len(samples)} given)")
    calib, valid = samples[:-held], samples[-held:]
    reference = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    refs = [[np.asarray(o) for o in reference(s).values()] for s in valid]

    def metric(compiled, items) -> tuple[float, list[float]]:
        scores = []
        for feed, ref in items:
            got = list(compiled(feed).values())
            cos = [_cosine(r, np.asarray(g)) for r, g in zip(ref, got)]
            scores.append(float(min(cos)))
        return float(np.mean(scores)), scores

    common = {**common, "subset_size": min(common["subset_size"], len(calib))}
    quantized = nncf.quantize_with_accuracy_control(
        ov_model, nncf.Dataset(calib), nncf.Dataset(list(zip(valid, refs))), metric,
        max_drop=max(0.0, 1.0 - min_cosine), drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=_advanced(variant), **common)
    return quantized, {"accuracy_control": {"metric": "mean output cosine vs the fp32 IR", "held_out": held,
                                            "max_drop": round(1.0 - min_cosine, 6)}}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row cosine; an all-zero row against a non-zero one scores 0 (a collapsed
    quantizer must not look perfect), two all-zero rows 1."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = (np.abs(a).sum(1) == 0) & (np.abs(b).sum(1) == 0)
    cos = np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), np.where(both_zero, 1.0, 0.0))
    return float(np.mean(np.nan_to_num(cos, nan=0.0)))


def _float_compute_ops(ov_model) -> list[str]:
    """Convolutions and MatMuls whose weights stayed float: what was kept float."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul") and not int8_weights(op)]


def int8_weights(op, depth: int = 6) -> bool:
    """Whether the weights input of `op` comes from an int8/uint8 constant (through the
    Convert/Subtract/Multiply/FakeQuantize chain NNCF stores them as)."""
    if op.get_input_size() < 2:
        return False
    frontier = [op.input_value(1).get_node()]
    for _ in range(depth):
        nxt = []
        for node in frontier:
            if node.get_type_name() == "Constant":
                if node.get_element_type().get_type_name() in ("i8", "u8", "i4", "u4"):
                    return True
                continue
            nxt.extend(node.input_value(i).get_node() for i in range(node.get_input_size()))
        frontier = nxt
    return False


def weight_only(ov_model, variant: "QuantVariant", calibration: "Dataset | None",
                names: list[str]) -> tuple[Any, dict]:
    """nncf.compress_weights: int8 (per output channel) or int4 (in groups) weights that
    the kernels decompress; compute 'int8' has the CPU plugin quantize activations in
    groups as it runs (DYNAMIC_QUANTIZATION_GROUP_SIZE, recorded for the session)."""
    nncf = load_nncf()

    mode = {(8, True): nncf.CompressWeightsMode.INT8_SYM, (8, False): nncf.CompressWeightsMode.INT8_ASYM,
            (4, True): nncf.CompressWeightsMode.INT4_SYM, (4, False): nncf.CompressWeightsMode.INT4_ASYM}[
        (variant.bits, bool(variant.symmetric))]
    kw: dict[str, Any] = {"mode": mode}
    if variant.bits == 4:
        kw.update(group_size=-1 if variant.group_size == "channel" else int(variant.group_size), ratio=1.0)
    if variant.algorithm == "hqq":
        raise RecipeError(f"{variant.label}: NNCF has no HQQ; use algorithm rtn or gptq for the openvino target")
    if variant.algorithm == "gptq":
        if calibration is None:
            raise DataError(f"{variant.label}: gptq fits the weights on data; add data.calibration to the recipe")
        if variant.bits != 4:
            raise RecipeError(f"{variant.label}: NNCF's GPTQ is for 4-bit weights; use bits: 4 or algorithm rtn")
        kw.update(gptq=True, dataset=nncf.Dataset(_samples(calibration, names)),
                  subset_size=min(variant.calibration_samples, len(calibration)))
    with silenced():
        try:
            compressed = nncf.compress_weights(ov_model, **kw)
        except nncf.ValidationError as e:  # e.g. a group size that does not divide a layer's inputs
            raise RecipeError(f"{variant.label}: NNCF refuses it: {str(e).splitlines()[0][:300]}") from None
    group = 0
    if variant.compute == "int8":
        group = int(variant.group_size) if isinstance(variant.group_size, int) else 32
    notes = {"engine": f"NNCF {nncf.__version__} weight compression", "mode": mode.value,
             "group_size": kw.get("group_size", "channel"), "algorithm": variant.algorithm or "rtn",
             "runs_as": "float activations, weights decompressed in the kernels" if not group else
             f"activations quantized to int8 in groups of {group} as it runs (DYNAMIC_QUANTIZATION_GROUP_SIZE)"}
    return compressed, {**notes, "dynamic_quantization_group_size": group}


# Activation groups the CPU plugin's dynamic quantization is tried with, fastest first:
# on a 2-layer transformer encoder (d=384, batch 1 x 128 tokens, 1 thread) 128 ran 0.44x
# fp32, 256 0.47x, 64 0.54x, 32 0.53x; a group that does not divide a layer's inputs
# turns it off there (1024: 0.98x).
DYNAMIC_GROUPS = (128, 64, 32)


def dynamic_int8(ov_model, record: dict, variant: "QuantVariant") -> tuple[Any, dict]:
    """Dynamic int8 as OpenVINO's CPU plugin has it: int8 weights of the MatMuls (NNCF's
    INT8_SYM weight compression, one scale per output channel) and activations quantized
    per group as each runs (DYNAMIC_QUANTIZATION_GROUP_SIZE, recorded for the session),
    with int8 dot products. Convolutions stay float: the plugin quantizes activations
    dynamically for MatMuls only, and int8 weights alone only made them slower."""
    nncf = load_nncf()

    variant_scope, ignored_ops, ignored_types = ignored_scope(ov_model, record, variant)
    types = ["Convolution", "GroupConvolution", "ConvolutionBackpropData", *ignored_types]
    scope = nncf.IgnoredScope(names=ignored_ops, types=types, validate=False)
    group = _group_for(ov_model, ignored_ops)
    with silenced():
        compressed = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_SYM, ignored_scope=scope)
    notes = {"engine": f"NNCF {nncf.__version__} weight compression + OpenVINO CPU dynamic quantization",
             "mode": "int8_sym weights, per output channel", "ignored_ops": ignored_ops, "ignored_types": types,
             "excluded": list(variant.exclude),
             "runs_as": f"MatMul activations quantized to int8 in groups of {group} as it runs; convolutions float"}
    if not variant.per_channel:
        notes["per_channel"] = "NNCF's weight compression is per output channel only; per_channel: false ignored"
    return compressed, {**notes, "dynamic_quantization_group_size": group}


def _group_for(ov_model, ignored: list[str]) -> int:
    """The largest of DYNAMIC_GROUPS that divides the input width of every MatMul."""
    widths = set()
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() == "MatMul" and op.get_friendly_name() not in ignored:
            shape = op.input_value(1).get_partial_shape()
            if shape.rank.is_static and shape.rank.get_length() == 2 and shape[1].is_static:
                transposed = op.get_attributes().get("transpose_b", False)
                widths.add(shape[1 if transposed else 0].get_length())
    return next((g for g in DYNAMIC_GROUPS if all(w % g == 0 for w in widths)), DYNAMIC_GROUPS[-1])

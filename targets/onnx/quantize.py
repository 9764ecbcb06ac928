"""The ONNX target's own lowering of a quantization intent, with ONNX Runtime's
quantizer (calibrate -> quantize, QDQ format) on a prepared float graph."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from compressor.data import Dataset
from compressor.errors import DataError, ExportError, first_line
from compressor.config.quantize import QuantVariant
from targets.onnx.scopes import follow_preprocess, nodes_to_exclude

CALIB_BATCH = 16
ENTROPY_BINS = 2048
# Weight-bearing ops that dynamic quantization handles well; ConvInteger is slow on ORT's CPU EP.
DYNAMIC_OPS = ["MatMul", "Gemm", "Attention", "LSTM", "GRU", "EmbedLayerNormalization"]


class _Reader:
    """ORT's CalibrationDataReader contract over a Dataset, in batches."""

    def __init__(self, data: Dataset, batch: int) -> None:
        self._batches = list(data.batches(batch))
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


def lower(src: Path, dst: Path, variant: QuantVariant, calibration: Dataset | None, batch_dynamic: bool,
          work: Path, external_data: bool) -> dict:
    """Write the `variant` of the float model `src` to `dst`; return notes for the report."""
    # ORT's quantizer prints progress to stdout and warns through the root logger.
    with contextlib.redirect_stdout(io.StringIO()), _root_logger_quiet():
        if variant.mode == "static":
            return _static(src, dst, variant, calibration, batch_dynamic, work, external_data)
        if variant.mode == "dynamic":
            return _dynamic(src, dst, variant, external_data, calibration, batch_dynamic, work)
        if variant.mode == "weight_only":
            from targets.onnx.weight_only import lower_weight_only

            return lower_weight_only(src, dst, variant, calibration, batch_dynamic, external_data)
        return _fp16(src, dst, external_data)


@contextlib.contextmanager
def _root_logger_quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _static(src: Path, dst: Path, v: QuantVariant, calibration: Dataset | None, batch_dynamic: bool,
            work: Path, external_data: bool) -> dict:
    if calibration is None or len(calibration) == 0:
        raise DataError(f"static int8 ({v.label}) needs calibration data: add 'data: {{calibration: ...}}' "
                        "to the recipe")
    data = calibration.take(v.calibration_samples)
    skip = nodes_to_exclude(src, v.exclude, v.exclude_ops)
    pre = preprocess(src, work)
    method = calibration_method(v)
    cache = work / "calibration.json"
    skip_pre = follow_preprocess(src, pre, skip)
    plan = _outlier_plan(pre, data, v, work, batch_dynamic, skip_pre, dynamic_mode=False)
    notes: dict = {}
    try:
        if plan is None:
            calibrate(pre, method, v, _Reader(data, CALIB_BATCH if batch_dynamic else 1), work, cache)
            quantize_qdq(pre, dst, v, method, cache, external_data, nodes_to_exclude=skip_pre)
        else:
            notes = _static_linear(plan, dst, v, method, data, batch_dynamic, work, cache, external_data,
                                   set(skip_pre))
    except Exception as e:
        raise ExportError(f"ONNX static int8 ({v.label}) failed in onnxruntime's quantizer: "
                          f"{first_line(e)}") from None
    return {"engine": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "activations": "uint8 asymmetric" if not v.symmetric_activations else "uint8 symmetric",
            "weights": f"int8 symmetric {'per-channel' if v.per_channel else 'per-tensor'}",
            "calibration": v.calibration, "calibration_samples": len(data),
            "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops), "float_nodes": len(skip), **notes}


def _outlier_plan(src: Path, data: Dataset | None, v: QuantVariant, work: Path, batch_dynamic: bool,
                  skip: list[str], dynamic_mode: bool):
    """The outlier-aware rewrite of a transformer graph (None: off, no calibration data to
    plan it from, or no transformer)."""
    if v.outliers == "off" or data is None or len(data) == 0:
        return None
    from targets.onnx.outliers import plan

    try:
        return plan(src, data, dynamic_mode, work, v.smoothing_alpha, batch_dynamic, frozenset(skip),
                    rewrite=v.outliers == "auto")
    except Exception as e:
        raise ExportError(f"ONNX int8 ({v.label}): the outlier-aware plan failed ({first_line(e)}); "
                          "set outliers: off for the quantizer's defaults") from None


def _static_linear(plan, dst: Path, v: QuantVariant, method, data: Dataset, batch_dynamic: bool, work: Path,
                   cache: Path, external_data: bool, skip: set[str]) -> dict:
    """Static int8 of a transformer's linear layers on the rewritten graph; the layers the
    plan gives per-inference ranges are then lowered dynamically."""
    dynamic = [n for n in plan.dynamic_nodes if n not in skip]
    static = [n for n in plan.linear_nodes if n not in skip and n not in dynamic]
    calibrate(plan.path, method, v, _Reader(data, CALIB_BATCH if batch_dynamic else 1), work, cache)
    staged = work / "static.onnx" if dynamic else dst
    # A linear layer's output joins the residual stream, whose outlier dimensions one
    # per-tensor range cannot hold (requantizing the FFN outputs alone took MiniLM from
    # 0.998 to 0.985): the outputs stay float.
    quantize_qdq(plan.path, staged, v, method, cache, external_data and not dynamic,
                 nodes_to_quantize=static + [n for n in plan.conv_nodes if n not in skip],
                 op_types=["MatMul", "Gemm", "Conv"], float_outputs=True)
    if dynamic:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(staged), str(dst), per_channel=v.per_channel, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_quantize=dynamic,
                         use_external_data_format=external_data, extra_options={"DefaultTensorType": 1})
    return {**plan.notes, "int8_layers": len(static) + len(dynamic) + len(plan.conv_nodes),
            "dynamic_range_layers": len(dynamic),
            "float_ops": "residual adds, normalisations, softmax, activations, attention products"}


def preprocess(src: Path, work: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from targets.onnx import reuse

    if (kept := reuse.preprocessed(src)) is not None:  # the fallback's probes share one
        return kept
    src, pre = Path(src).absolute(), Path(work).absolute() / "pre.onnx"
    # When symbolic shape inference stops short, onnxruntime saves its partial model
    # (`sym_shape_infer_temp.onnx` and its external data) into the working directory
    # before raising: run it from the scratch folder so that nothing lands in the user's.
    with _working_dir(pre.parent):
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        except Exception:
            # Symbolic shape inference does not know every op; the plain ONNX one suffices.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    return reuse.keep_preprocessed(src, pre)


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def calibration_method(v: QuantVariant):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[v.calibration]


def quantize_qdq(pre: Path, dst: Path, v: QuantVariant, method, cache: Path, external_data: bool,
                 nodes_to_exclude: list[str] | None = None, nodes_to_quantize: list[str] | None = None,
                 op_types: list[str] | None = None, float_outputs: bool = False) -> None:
    """quantize_static with the target's settings and ranges already in `cache`.
    `float_outputs`: the quantized ops' outputs stay float (ONNX Runtime then runs
    MatMulIntegerToFloat) instead of being requantized with one calibrated range."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(pre), str(dst), None, calibration_cache_path=str(cache),
                    quant_format=QuantFormat.QDQ, per_channel=v.per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, nodes_to_exclude=nodes_to_exclude or [],
                    nodes_to_quantize=nodes_to_quantize, use_external_data_format=external_data,
                    op_types_to_quantize=op_types,
                    extra_options={"ActivationSymmetric": v.symmetric_activations, "WeightSymmetric": True,
                                   **({"OpTypesToExcludeOutputQuantization": list(op_types or [])}
                                      if float_outputs else {})})


def calibrate(model: Path, method, v: QuantVariant, reader: _Reader, work: Path, cache: Path) -> None:
    """Collect activation ranges with our own calibrator settings and store them where
    quantize_static reads them. quantize_static does not forward histogram sizes: its
    entropy calibrator would use 128 bins, too coarse to ever clip, i.e. min-max again."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    from targets.onnx import reuse

    options = {"symmetric": v.symmetric_activations, "moving_average": False}
    if v.calibration == "entropy":
        options |= {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128}
    elif v.calibration == "percentile":
        options |= {"num_bins": ENTROPY_BINS, "percentile": v.percentile}
    # Ranges cover every tensor whatever is kept float: the fallback's probes share them.
    key = reuse.ranges_key(model, (str(method), tuple(sorted(options.items()))), reader._batches)
    if reuse.ranges_into(key, cache):
        return
    calibrator = create_calibrator(model, None, augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=method, extra_options=options)
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)
    reuse.keep_ranges(key, cache)


def _dynamic(src: Path, dst: Path, v: QuantVariant, external_data: bool, calibration: Dataset | None = None,
             batch_dynamic: bool = False, work: Path | None = None) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    skip = nodes_to_exclude(src, v.exclude, v.exclude_ops)
    data = calibration.take(v.calibration_samples) if calibration is not None and work is not None else None
    plan = _outlier_plan(src, data, v, work, batch_dynamic, skip, dynamic_mode=True)
    # quantize_dynamic rewrites each Gemm as a MatMul named '<gemm>_MatMul' (and an Add)
    # before it reads nodes_to_exclude: a Gemm kept float is excluded under that name too.
    model, ops, exclude = src, DYNAMIC_OPS, [*skip, *(f"{n}_MatMul" for n in skip)]
    if plan is not None:
        # The linear layers only; the outlier plan's float side paths stay float.
        model, ops, exclude = plan.path, ["MatMul", "Gemm"], [*skip, *plan.side_nodes]
    try:
        quantize_dynamic(str(model), str(dst), per_channel=v.per_channel, weight_type=QuantType.QInt8,
                         op_types_to_quantize=ops, nodes_to_exclude=exclude,
                         use_external_data_format=external_data,
                         # ONNX shape inference cannot type the outputs of ORT's fused kernels
                         # (fusions: bert); those outputs are float.
                         extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
    except Exception as e:
        raise ExportError(f"ONNX dynamic int8 ({v.label}) failed in onnxruntime's quantizer: "
                          f"{first_line(e)}") from None
    notes = {} if plan is None else {**plan.notes, "calibration_samples": len(data)}
    return {"engine": "onnxruntime.quantization.quantize_dynamic", "ops": ops,
            "weights": f"int8 {'per-channel' if v.per_channel else 'per-tensor'}",
            "activations": "quantized at run time", "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops),
            "float_nodes": len(skip), **notes}


def _fp16(src: Path, dst: Path, external_data: bool) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    # Float32 inputs and outputs, so the same feeds and comparisons work for every variant.
    half = convert_float_to_float16(model, keep_io_types=True)
    # The converter appends the input casts at the end of the node list; ONNX wants topological order.
    wrapped = OnnxModel(half)
    wrapped.topological_sort()
    half = wrapped.model
    onnx.save(half, str(dst), save_as_external_data=external_data,
              location=dst.name + ".data" if external_data else None)
    return {"engine": "onnxruntime.transformers.float16", "weights": "float16", "io": "float32"}

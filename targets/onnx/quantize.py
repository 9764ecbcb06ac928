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
            return _dynamic(src, dst, variant, external_data)
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
    try:
        calibrate(pre, method, v, _Reader(data, CALIB_BATCH if batch_dynamic else 1), work, cache)
        quantize_qdq(pre, dst, v, method, cache, external_data, nodes_to_exclude=follow_preprocess(src, pre, skip))
    except Exception as e:
        raise ExportError(f"ONNX static int8 ({v.label}) failed in onnxruntime's quantizer: "
                          f"{first_line(e)}") from None
    return {"engine": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "activations": "uint8 asymmetric" if not v.symmetric_activations else "uint8 symmetric",
            "weights": f"int8 symmetric {'per-channel' if v.per_channel else 'per-tensor'}",
            "calibration": v.calibration, "calibration_samples": len(data),
            "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops), "float_nodes": len(skip)}


def preprocess(src: Path, work: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

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
    return pre


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
                 nodes_to_exclude: list[str] | None = None, nodes_to_quantize: list[str] | None = None) -> None:
    """quantize_static with the target's settings and ranges already in `cache`."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(pre), str(dst), None, calibration_cache_path=str(cache),
                    quant_format=QuantFormat.QDQ, per_channel=v.per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, nodes_to_exclude=nodes_to_exclude or [],
                    nodes_to_quantize=nodes_to_quantize, use_external_data_format=external_data,
                    extra_options={"ActivationSymmetric": v.symmetric_activations, "WeightSymmetric": True})


def calibrate(model: Path, method, v: QuantVariant, reader: _Reader, work: Path, cache: Path) -> None:
    """Collect activation ranges with our own calibrator settings and store them where
    quantize_static reads them. quantize_static does not forward histogram sizes: its
    entropy calibrator would use 128 bins, too coarse to ever clip, i.e. min-max again."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    options = {"symmetric": v.symmetric_activations, "moving_average": False}
    if v.calibration == "entropy":
        options |= {"num_bins": ENTROPY_BINS, "num_quantized_bins": 128}
    elif v.calibration == "percentile":
        options |= {"num_bins": ENTROPY_BINS, "percentile": v.percentile}
    calibrator = create_calibrator(model, None, augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=method, extra_options=options)
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


def _dynamic(src: Path, dst: Path, v: QuantVariant, external_data: bool) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    skip = nodes_to_exclude(src, v.exclude, v.exclude_ops)
    try:
        quantize_dynamic(str(src), str(dst), per_channel=v.per_channel, weight_type=QuantType.QInt8,
                         op_types_to_quantize=DYNAMIC_OPS, nodes_to_exclude=skip,
                         use_external_data_format=external_data,
                         # ONNX shape inference cannot type the outputs of ORT's fused kernels
                         # (fusions: bert); those outputs are float.
                         extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
    except Exception as e:
        raise ExportError(f"ONNX dynamic int8 ({v.label}) failed in onnxruntime's quantizer: "
                          f"{first_line(e)}") from None
    return {"engine": "onnxruntime.quantization.quantize_dynamic", "ops": DYNAMIC_OPS,
            "weights": f"int8 {'per-channel' if v.per_channel else 'per-tensor'}",
            "activations": "quantized at run time", "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops),
            "float_nodes": len(skip)}


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

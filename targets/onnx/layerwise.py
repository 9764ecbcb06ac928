"""Per-layer sensitivity on ONNX Runtime itself: calibrate the fp32 graph once, then
quantize only one module's nodes at a time (`nodes_to_quantize`) and run the result.
The real lowering, layer by layer; compressor.sensitivity simulates it in PyTorch."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from compressor.data import Dataset
from compressor.errors import DataError, ExportError, RecipeError, first_line
from compressor.config.quantize import QuantVariant

BATCH = 64


def module_scores(src: Path, variant: QuantVariant, calibration: Dataset | None, inputs: dict[str, np.ndarray],
                  modules: list[str], batch_dynamic: bool, threads: int = 1) -> dict[str, list[np.ndarray] | None]:
    """Outputs on `inputs` of the graph with only each module's nodes quantized (None for
    a module with no node in the graph)."""
    from targets.base import Device, run_batched
    from targets.onnx.quantize import (CALIB_BATCH, _Reader, _root_logger_quiet, calibrate, calibration_method,
                                       preprocess, quantize_qdq)
    from targets.onnx.runtime import OrtSession
    from targets.onnx.scopes import follow_preprocess, nodes_to_exclude

    if calibration is None or not len(calibration):
        raise DataError("ONNX layer sensitivity needs calibration data: add 'data: {calibration: ...}'")
    out: dict[str, list[np.ndarray] | None] = {}
    with tempfile.TemporaryDirectory(prefix="onnx-layerwise-") as d, \
            contextlib.redirect_stdout(io.StringIO()), _root_logger_quiet():
        work = Path(d)
        pre = preprocess(src, work)
        method = calibration_method(variant)
        cache = work / "calibration.json"
        data = calibration.take(variant.calibration_samples)
        try:
            calibrate(pre, method, variant, _Reader(data, CALIB_BATCH if batch_dynamic else 1), work, cache)
        except Exception as e:
            raise ExportError(f"ONNX layer sensitivity: calibration failed ({first_line(e)})") from None
        for name in modules:
            try:
                nodes = follow_preprocess(src, pre, nodes_to_exclude(src, [name], []))
            except RecipeError:  # no node of its own in the exported graph
                nodes = []
            if not nodes:
                out[name] = None
                continue
            dst = work / "one.onnx"
            try:
                quantize_qdq(pre, dst, variant, method, cache, False, nodes_to_quantize=nodes)
                session = OrtSession(dst, Device(), threads)
                out[name] = run_batched(session, inputs, BATCH)
                del session
            except Exception as e:
                raise ExportError(f"ONNX layer sensitivity: quantizing {name!r} alone failed "
                                  f"({first_line(e)})") from None
    return out

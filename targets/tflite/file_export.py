"""The TFLite target's export of a .tflite source (targets.tflite.source): the fp32
artifact is the file itself, copied; every other precision is ai-edge-quantizer's
rewrite of that copy. Full-integer int8 calibrates on the recipe's data.

The copy keeps the file's tensor names (compaction would rename them), so that the
recipe's `exclude` patterns match the names the user sees in the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from compressor.errors import DataError, ExportError
from compressor.fsutil import publish, staging_dir
from targets.base import Artifact

if TYPE_CHECKING:
    from compressor.config.quantize import QuantVariant
    from compressor.data import Dataset
    from targets.tflite.source import TfliteFileModel


def export_file(model: "TfliteFileModel", variant: "QuantVariant | None", out: Path, opts,
                calibration: "Dataset | None", base: Artifact | None) -> Artifact:
    from targets.tflite import convert, runtime

    final = Path(f"{out}.tflite")
    with staging_dir(final.parent, final.name) as work:
        staged = work / final.name
        if variant is None:
            meta = copy_fp32(model, staged)
        else:
            if base is None:
                raise ValueError("a .tflite source's lowerings start from its fp32 copy")
            keep = keep_float(variant)
            if (variant.mode == "dynamic" and "DEPTHWISE_CONV_2D" not in variant.exclude_ops
                    and "DEPTHWISE_CONV_2D" in runtime.op_histogram(base.path)):
                # LiteRT's hybrid depthwise kernel runs outside XNNPACK: on MobileNetV2 it made
                # dynamic int8 5.5x slower than with depthwise weights float (3x3 per channel:
                # 3% of the file), and 4x slower than fp32.
                keep.append((".*", "DEPTHWISE_CONV_2D"))
            if variant.mode == "static":
                meta = full_integer(base.path, staged, variant, calibration, model, opts.io, keep)
            else:
                from targets.tflite.lower import lower_from_fp32

                meta = lower_from_fp32(base.path, staged, variant, keep_float=keep)
            meta.update({k: base.meta[k] for k in ("input_names", "output_names") if k in base.meta})
            meta["kept_float"] = [op if regex == ".*" else f"ops writing /{regex}/" for regex, op in keep]
            if opts.compact:
                meta["compacted"] = convert.compact_file(staged)
        runtime.check_tflite_file(staged)
        meta["op_types"] = runtime.op_histogram(staged)
        publish({staged: final})
    precision = variant.precision if variant else "fp32"
    return Artifact(target="tflite", label=variant.label if variant else "fp32", precision=precision, path=final,
                    meta=meta)


def copy_fp32(model: "TfliteFileModel", staged: Path) -> dict:
    """The checked file, byte for byte, unless the recipe renames its outputs."""
    data = model.path.read_bytes()
    staged.write_bytes(data)
    meta = {"engine": "the given .tflite file", "source": model.source,
            "input_names": [s.name for s in model.inputs], "output_names": list(model.output_names)}
    if model.quantized:
        meta["as_given"] = f"already quantized: {model.quantized}"
    if model.output_names != model.file_outputs:
        rename_outputs(staged, model.file_outputs, model.output_names, model.signature)
        meta["renamed_outputs"] = dict(zip(model.file_outputs, model.output_names))
    return meta


def rename_outputs(path: Path, have: list[str], names: list[str], signature: str | None) -> None:
    """Give the signature's outputs (or, without a signature, the graph's) the recipe's names."""
    from targets.tflite import flatbuf

    m = flatbuf.read(path)
    new = dict(zip(have, names))
    sigs = [s for s in m.signatureDefs or [] if signature is None or (s.signatureKey or b"").decode() == signature]
    if sigs:
        for t in sigs[0].outputs:
            t.name = new.get((t.name or b"").decode(), (t.name or b"").decode()).encode()
    else:
        sg = m.subgraphs[0]
        for ti in sg.outputs:
            old = (sg.tensors[ti].name or b"").decode()
            sg.tensors[ti].name = new.get(old, old).encode()
    flatbuf.write(m, path)


def keep_float(variant: "QuantVariant") -> list[tuple[str, str]]:
    """exclude_ops (TFLite op names) everywhere; exclude (regexes over output tensor names) for every op."""
    return [(".*", op) for op in variant.exclude_ops] + [(pattern, "*") for pattern in variant.exclude]


def full_integer(fp32: Path, dst: Path, variant: "QuantVariant", calibration: "Dataset | None",
                 model: "TfliteFileModel", io_type: str, keep: list[tuple[str, str]]) -> dict:
    """int8 weights (per channel unless per_channel: false) and int8 activations whose ranges
    are the min and max seen over the calibration samples."""
    if calibration is None or not len(calibration):
        raise DataError(f"variant {variant.label!r}: full-integer int8 calibrates on data: add "
                        "'data: {calibration: {source: ...}}'")
    from compressor.logs import native_stderr

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            native_stderr(log_as="native.tensorflow"):
        warnings.simplefilter("ignore")
        from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe_manager
        from ai_edge_quantizer.qtyping import TFLOperationName

        from targets.tflite.lower import keep_ops_float

        rp = recipe_manager.RecipeManager()
        grain = qtyping.QuantGranularity.CHANNELWISE if variant.per_channel else qtyping.QuantGranularity.TENSORWISE
        rp.add_static_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, activation_num_bits=8,
                             weight_num_bits=8, weight_granularity=grain)
        keep_ops_float(rp, keep)
        samples = _samples(calibration, model, variant.calibration_samples)
        try:
            # The quantizer's own calibrate() smooths min/max over samples (a moving average),
            # which clips a sample's larger values; the recipe's minmax is the true range.
            calib = calibrator.Calibrator(fp32.read_bytes(), num_threads=2, qsv_update_func=_widen)
            calib.calibrate({model.signature: samples}, rp)
            q = quantizer.Quantizer(str(fp32))
            q.load_quantization_recipe(rp.get_quantization_recipe())
            result = q.quantize(calib.get_model_qsvs(), enable_progress_report=False, enable_progress_bar=False)
        except Exception as e:
            first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise ExportError(f"TFLite static int8 in ai-edge-quantizer failed: {first[:300]}") from None
    dst.write_bytes(bytes(result.quantized_model))
    wrapped = 0
    if io_type == "float":  # it gives the model int8 inputs and outputs; the recipe's io is float
        from targets.tflite import flatbuf

        m = flatbuf.read(dst)
        wrapped = flatbuf.float_io(m)
        flatbuf.write(m, dst)
    return {"engine": "ai-edge-quantizer static (int8 weights "
            f"{'per channel' if variant.per_channel else 'per tensor'}, int8 activations, min/max ranges)",
            "from": fp32.name, "io": io_type, "float_io_tensors": wrapped,
            "calibration_samples": sum(len(next(iter(s.values()))) for s in samples)}


def _widen(old: dict, new: dict) -> dict:
    if not old:
        return new
    return {**new, "min": np.minimum(old["min"], new["min"]), "max": np.maximum(old["max"], new["max"])}


def _samples(calibration: "Dataset", model: "TfliteFileModel", limit: int) -> list[dict[str, np.ndarray]]:
    """Calibration batches the file takes: its batch size when fixed, else one sample each."""
    batch = next((int(s.shape[0]) for s in model.session().inputs if not s.batch_dynamic), 1)
    dtypes = {s.name: s.dtype for s in model.inputs}
    n = min(limit, len(calibration))
    arrays = {k: np.asarray(v[:n]) for k, v in calibration.inputs.items() if k in dtypes}
    out = []
    for start in range(0, n - batch + 1, batch):
        out.append({k: a[start:start + batch].astype(dtypes[k]) for k, a in arrays.items()})
    if not out:
        raise DataError(f"calibration data has {n} samples; {model.path.name} takes batches of {batch}")
    return out

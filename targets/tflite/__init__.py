"""The TFLite target: litert-torch converts PyTorch straight to .tflite (no ONNX detour);
ai-edge-quantizer lowers fp16 and dynamic int8 from the fp32 file; litert-torch's PT2E
quantizer gives full-integer int8 from the recipe's calibration data; ai-edge-litert
(or tflite-runtime on old devices) runs the result with XNNPACK.

Keras / SavedModel sources go through TensorFlow's TFLiteConverter: targets.tflite.keras.
An existing .tflite file is compressed by ai-edge-quantizer: targets.tflite.source.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from compressor.fsutil import publish, staging_dir
from targets.base import TORCH_CASUALTIES, Artifact, Device, Target, TargetOptions

if TYPE_CHECKING:
    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.config.quantize import QuantVariant


class TFLiteOptions(TargetOptions):
    io: Literal["float", "int8"] = Field(
        "float", description="full-integer int8: float input/output (quantized inside the model) or int8 "
        "(the caller quantizes with the tensor's scale and zero point)")
    channels_last: bool = Field(False, description="NHWC inputs and outputs for 4-D tensors (litert-torch's "
                                "to_channel_last_io); the model's declared NCHW shapes are transposed")
    compact: bool = Field(True, description="shorten generated tensor names, share identical constants and "
                          "zero points (exact: outputs are bit-identical)")
    signature: str | None = Field(None, description="signature run by the benchmark and validation; "
                                  "default: the model's first")


class TFLiteTarget(Target):
    name = "tflite"
    suffixes = (".tflite",)
    options_model = TFLiteOptions
    modes = ("static", "dynamic", "fp16", "qat", "weight_only")
    quantizer_family = "litert"  # litert-torch's PT2E quantizer
    per_tensor_lowering = True
    float_op_kinds = TORCH_CASUALTIES

    def export(self, model: "Model", variant: "QuantVariant | None", out: Path, options: "TargetOptions | dict",
               calibration: "Dataset | None", base: Artifact | None = None) -> Artifact:
        from targets.tflite import convert, runtime

        opts = self.options(options)
        from targets.tflite.keras import KerasModel, export_keras

        from targets.tflite.source import TfliteFileModel

        if isinstance(model, (KerasModel, TfliteFileModel)):
            if isinstance(model, KerasModel):  # TensorFlow's converter instead of litert-torch
                artifact = export_keras(model, variant, out, opts, calibration)
            else:  # an existing .tflite: ai-edge-quantizer rewrites it
                from targets.tflite.file_export import export_file

                artifact = export_file(model, variant, out, opts, calibration, base)
            artifact.meta.update({"signature": opts.signature} if opts.signature else {})
            return artifact
        final = Path(f"{out}.tflite")
        with staging_dir(final.parent, final.name) as work:
            staged = work / final.name
            if variant is None:
                meta = convert.export_fp32(model, staged, opts.channels_last)
            elif variant.mode == "qat":  # the model already holds the LiteRT quantizer's Q/DQ pairs
                meta = convert.export_prequantized(model, variant, staged, opts.channels_last, opts.io)
            elif variant.mode == "static":
                meta = convert.export_full_integer(model, variant, staged, calibration, opts.channels_last,
                                                   opts.io, fp32_works=base is not None)
            else:
                if base is None:
                    raise ValueError("the TFLite fp16 and dynamic lowerings start from the fp32 artifact")
                from targets.tflite.lower import lower_from_fp32

                meta = {**{k: base.meta[k] for k in ("output_names", "input_names", "channels_last")
                           if k in base.meta}, **lower_from_fp32(base.path, staged, variant)}
            if opts.channels_last:  # validation and the harness feed these tensors NHWC
                meta.update(_nhwc_tensors(model, meta))
            if opts.compact:
                meta["compacted"] = convert.compact_file(staged)
            runtime.check_tflite_file(staged)
            meta["op_types"] = runtime.op_histogram(staged)
            meta.update({"signature": opts.signature} if opts.signature else {})
            publish({staged: final})
        return Artifact(target=self.name, label=variant.label if variant else "fp32",
                        precision=variant.precision if variant else "fp32", path=final, meta=meta)

    def check_file(self, path: Path) -> None:
        from targets.tflite.runtime import check_tflite_file

        check_tflite_file(path)

    def open_session(self, path: Path, device: Device, threads: int, signature: str | None = None):
        from targets.tflite.runtime import LiteSession

        return LiteSession(path, device, threads, signature=signature)

    def open_artifact(self, artifact: Artifact, device: Device, threads: int):
        return self.open_session(artifact.path, device, threads, signature=artifact.meta.get("signature"))

    def probe_cache(self):
        """The model's capture and the last converted graphs, shared by the fallback's probes."""
        from targets.tflite.reuse import probe_cache

        return probe_cache()

    def screen(self, model: "Model", variant: "QuantVariant", calibration: "Dataset | None", inputs):
        """Full-integer int8: the converted PT2E graph litert-torch would lower, run in
        PyTorch (its reference int8 arithmetic; XNNPACK's kernels round a little
        differently, so the fallback checks what it finds on the real file)."""
        from targets.tflite.keras import KerasModel

        from targets.tflite.source import TfliteFileModel

        if variant.mode != "static" or isinstance(model, (KerasModel, TfliteFileModel)):
            return None
        from targets.tflite import convert, reuse

        converted = convert.export_full_integer(model, variant, None, calibration, False, "float", True)
        if not hasattr(converted, "graph"):  # a lowering that returned notes, not a graph: no screen
            return None
        return reuse.run(converted, model, inputs)


def _nhwc_tensors(model: "Model", meta: dict) -> dict:
    """Which inputs and outputs the channels-last artifact takes and gives NHWC: the 4-D
    ones (litert-torch's to_channel_last_io wraps exactly those)."""
    outs = model.run({s.name: t.numpy() for s, t in zip(model.inputs, model.example_inputs())})
    names = meta.get("output_names") or [f"output_{i}" for i in range(len(outs))]
    return {"nhwc_inputs": [s.name for s in model.inputs if len(s.shape) == 4],
            "nhwc_outputs": [n for n, o in zip(names, outs) if o.ndim == 4]}

"""The TorchScript target: trace (or script), freeze, optimize for inference; int8 on
PyTorch's own x86 quantized kernels. What C++ (libtorch) and mobile deployments load
with torch::jit::load, no Python code of ours needed."""

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


class TorchScriptOptions(TargetOptions):
    capture: Literal["auto", "trace", "script"] = Field(
        "auto", description="trace; script; or auto: trace, and script when the model branches on tensor values")
    optimize_for_inference: bool = Field(
        True, description="run float graphs through torch.jit.optimize_for_inference (oneDNN convolutions); "
        "applied when the session loads the archive, since its prepacked constants cannot be saved")
    dynamic_batch: bool = Field(True, description="declare a symbolic batch axis when the graph runs any batch")
    quantized_engine: Literal["auto", "x86", "onednn", "fbgemm"] = Field(
        "auto", description="int8 kernels the session packs the weights for when it loads the archive; "
        "auto: onednn on CPUs with VNNI, else x86, decided on the machine that loads it")
    compress: bool = Field(True, description="deflate archive records that shrink by 10% or more "
                           "(int8 zero points and scales); torch.jit.load reads them as usual")


class TorchScriptTarget(Target):
    name = "torchscript"
    suffixes = (".pt",)
    options_model = TorchScriptOptions
    modes = ("static", "dynamic", "qat")
    requires_trust = True  # torch.jit.load runs the archive's code
    quantizer_family = "fx"  # torch.ao FX graph mode, x86 kernels
    calibration_methods = ("percentile",)
    per_tensor_lowering = True
    symmetric_activation_lowering = True
    float_op_kinds = TORCH_CASUALTIES

    def export(self, model: "Model", variant: "QuantVariant | None", out: Path, options: "TargetOptions | dict",
               calibration: "Dataset | None", base: Artifact | None = None) -> Artifact:
        import torch

        from compressor.errors import ExportError
        from targets.torch_archive import output_names_for, signature
        from targets.torchscript import export as ts
        from targets.torchscript.quantize import dynamic_int8, static_int8
        from targets.torchscript.linear_int8 import transformer_int8
        from targets.torchscript.runtime import resolve_engine

        opts = self.options(options)
        # Batch 2, not 1: a size-1 axis can be baked in as a broadcast. Integer inputs are padded.
        inputs = ts.trace_inputs(model, calibration, batch=2)
        example = inputs.example
        meta: dict[str, Any] = {}
        source, atol, engine = model.module, 1e-4, None
        if variant is not None:
            resolve_engine(opts.quantized_engine)  # an engine this torch lacks fails here, not at load
            engine = opts.quantized_engine
            if variant.mode == "qat":
                # Already converted by FX (quantized::conv2d modules): trace it as is.
                torch.backends.quantized.engine = "x86"
                source, meta = model.module, {"engine": "torch.ao FX graph mode (QAT or its PTQ twin), x86",
                                              "excluded": list(variant.exclude)}
            elif (lowered := transformer_int8(model.module, model.input_names, calibration, variant)) is not None:
                source, meta = lowered
                engine = meta.pop("quantized_engine")  # its static kernel is an fbgemm one
            elif variant.mode == "static":
                source, meta = static_int8(model.module, model.input_names, example, variant, calibration)
            else:
                source, meta = dynamic_int8(model.module, variant)
            atol = 1e-2
        try:
            captured, how, checked = ts.capture(source, inputs, "trace" if variant and variant.mode in ("static", "qat")
                                                else opts.capture, atol)
        except ExportError as e:
            from targets.elsewhere import exporting_target

            raise ExportError(f"{e}; {exporting_target(model, self.name)}") from None
        if checked:
            meta["trace_checked"] = checked
        frozen = ts.freeze(captured)
        # int8 graphs are left un-optimized: their convolutions already run int8 kernels.
        optimize = opts.optimize_for_inference and variant is None
        with torch.no_grad():
            outputs = frozen(*example)
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        dynamic = opts.dynamic_batch and ts.takes_any_batch(frozen, source, example, atol)
        output_names = output_names_for(model, outputs)
        meta.update(capture=how, frozen=True, optimize_for_inference=optimize and "when loaded",
                    dynamic_batch=dynamic, output_names=output_names, torch=torch.__version__)
        if engine:
            meta["quantized_engine"] = engine
        stored = signature(model, dynamic, output_names, precision=variant.precision if variant else "fp32",
                           quantized_engine=engine, optimize_for_inference=optimize)
        final = Path(f"{out}.pt")
        with staging_dir(final.parent, final.name) as work:
            staged = work / final.name
            # The uncompressed archive under the same name in a folder of its own: its records
            # are named after the file, and an artifact called "plain" must not overwrite it.
            plain = work / "uncompressed" / final.name
            plain.parent.mkdir()
            ts.save(frozen, plain if opts.compress else staged, stored)
            if opts.compress:
                from targets.torch_archive import recompress

                meta.update(recompress(plain, staged))
            self.check_file(staged)
            publish({staged: final})
        return Artifact(target=self.name, label=variant.label if variant else "fp32",
                        precision=variant.precision if variant else "fp32", path=final, meta=meta)

    def check_file(self, path: Path) -> None:
        from targets.torchscript.runtime import check_torchscript_file

        check_torchscript_file(path)

    def open_session(self, path: Path, device: Device, threads: int):
        from targets.torchscript.runtime import open_torchscript

        return open_torchscript(path, device, threads)

    def probe_cache(self):
        """The ReLU6 analysis of the model, shared by the fallback's probes."""
        from targets.torchscript.quantize import probe_cache

        return probe_cache()

    def screen(self, model: "Model", variant: "QuantVariant", calibration: "Dataset | None", inputs):
        """Static int8: the FX-converted module this target traces, run in-process (the
        same quantized kernels the archive runs)."""
        if variant.mode != "static":
            return None
        from targets.torchscript.linear_int8 import transformer_int8

        lowered = transformer_int8(model.module, model.input_names, calibration, variant)
        if lowered is not None:  # a transformer: the Linear-only module, as export lowers it
            from compressor.sensitivity import run_module

            return run_module(lowered[0], inputs, model.input_names)
        from targets.torchscript.quantize import screen

        return screen(model, variant, calibration, inputs)

"""The torch.export targets: `pt2`, the ExportedProgram archive (fp32, and the PT2E
int8 graph for Inductor/ExecuTorch to lower), and `aoti`, that program compiled ahead of
time by AOTInductor into a package of native code that aoti_load_package runs.

AOTI is its own target rather than an option of pt2: compiling takes tens of seconds
(34 s for ResNet-18 here), so a recipe opts in by naming it (`targets: {aoti: {}}`),
and its artifacts get their own rows, suffix (.aoti.pt2) and benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from compressor.fsutil import publish, staging_dir
from targets.base import TORCH_CASUALTIES, Artifact, Device, Target, TargetOptions

if TYPE_CHECKING:
    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.config.quantize import QuantVariant


class Pt2Options(TargetOptions):
    dynamic_batch: bool = Field(True, description="export a symbolic batch axis when the model allows it")


class _Pt2Base(Target):
    options_model = Pt2Options
    modes = ("static", "weight_only")
    requires_trust = True  # both formats unpickle (ExportedProgram) or load native code (AOTI)
    compiled = False
    quantizer_family = "x86"  # the PT2E x86 quantizer lowers both
    calibration_methods = ("percentile",)  # no per-tensor alternative: its quantizer is per-channel only
    float_op_kinds = TORCH_CASUALTIES

    def export(self, model: "Model", variant: "QuantVariant | None", out: Path, options: "TargetOptions | dict",
               calibration: "Dataset | None", base: Artifact | None = None) -> Artifact:
        import time

        import torch

        from targets.pt2 import export as ex
        from targets.torch_archive import output_names_for, signature

        opts = self.options(options)
        weight_only = variant is not None and variant.mode == "weight_only"
        notes: dict[str, Any] = {}
        if weight_only:  # torchao's int8 weights, exported as int8 constants with a dequantize each
            from targets.pt2.weight_only import quantize_weights

            source, notes = quantize_weights(model.module, variant, self.name)
        else:
            source = ex.unshare_stateless_modules(model.module) if variant is not None else model.module
        program, dynamic = ex.export_program(source, model, opts.dynamic_batch)
        meta: dict[str, Any] = {"exporter": f"torch.export {torch.__version__}", "dynamic_batch": dynamic, **notes}
        if weight_only and not self.compiled:
            meta["runs_as"] = "eager PyTorch: each layer dequantizes its int8 weights as it runs (smaller, not faster)"
        if variant is not None and not weight_only:
            converted, notes = ex.pt2e_int8(program, model, variant, calibration, for_inductor=self.compiled,
                                             dynamic_batch=dynamic)
            meta.update(notes)
            program, dynamic = ex.export_program(converted, model, dynamic)
            meta["dynamic_batch"] = dynamic
            if not self.compiled:  # say so: this artifact is not the fast one
                meta["runs_as"] = ("reference quantize/dequantize ops in eager PyTorch, slower than fp32; "
                                   "the aoti target compiles it to int8 kernels")
        with torch.no_grad():
            outputs = program.module()(*model.example_inputs(batch=2 if dynamic else None))
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        meta["output_names"] = output_names_for(model, outputs)
        stored = signature(model, dynamic, meta["output_names"], precision=variant.precision if variant else "fp32")
        final = Path(f"{out}{self.suffixes[0]}")
        with staging_dir(final.parent, final.name) as work:
            staged = work / final.name
            if self.compiled:
                from targets.pt2.runtime import encode_meta

                start = time.perf_counter()
                # Freezing would fold the dequantized weights back into fp32 constants.
                ex.compile_package(program, staged, encode_meta(stored), freezing=not weight_only)
                meta["compile_s"] = round(time.perf_counter() - start, 2)
            else:
                import json

                from targets.torch_archive import META_NAME

                with ex.quiet():
                    torch.export.save(program, str(staged), extra_files={META_NAME: json.dumps(stored)})
            self.check_file(staged)
            publish({staged: final})
        return Artifact(target=self.name, label=variant.label if variant else "fp32",
                        precision=variant.precision if variant else "fp32", path=final, meta=meta)


class ExportedProgramTarget(_Pt2Base):
    name = "pt2"
    suffixes = (".pt2",)

    def check_file(self, path: Path) -> None:
        from targets.pt2.runtime import check_program_file

        check_program_file(path)

    def open_session(self, path: Path, device: Device, threads: int):
        from targets.pt2.runtime import open_program

        return open_program(path, device, threads)


class AotInductorTarget(_Pt2Base):
    name = "aoti"
    suffixes = (".aoti.pt2",)
    compiled = True

    def check_file(self, path: Path) -> None:
        from targets.pt2.runtime import check_package_file

        check_package_file(path)

    def open_session(self, path: Path, device: Device, threads: int):
        from targets.pt2.runtime import open_package

        return open_package(path, device, threads)

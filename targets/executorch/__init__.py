"""The ExecuTorch target: PyTorch's on-device runtime for ARM phones and boards (the
successor of the TorchScript/PyTorch Mobile path), measured beside ONNX, TFLite and
TorchScript. torch.export captures the model, `to_edge_transform_and_lower` hands what
XNNPACK takes to its delegate, and the program is one `.pte` flatbuffer.

int8 is PT2E with ExecuTorch's XNNPACKQuantizer (int8 activations, symmetric weights),
calibrated by the same code as the pt2 target's x86 lowering; `dynamic` is XNNPACK's
dynamically quantized Linear (activations quantized per call: no calibration), which ran
6.7x faster than fp32 on a 4-layer MLP here. A .pte has no room for side files, so the
signature (input names and shapes, output names, the batch bound) is a constant method
of the program itself.
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

# The runtime's tolerance for int8 ops left outside the delegate: their reference kernels
# must agree with the PT2E graph this closely on the example input, or the export refuses.
OUTSIDE_MIN_COSINE = 0.99


class ExecuTorchOptions(TargetOptions):
    dynamic_batch: bool = Field(True, description="export a symbolic batch axis when the model allows it")
    max_batch: int = Field(64, ge=2, le=4096, description="largest batch the program plans its buffers for; "
                           "larger batches run in chunks of this size")


class ExecuTorchTarget(Target):
    name = "executorch"
    suffixes = (".pte",)
    options_model = ExecuTorchOptions
    modes = ("static", "dynamic")
    # litert-torch's PT2EQuantizer is the XNNPACK quantizer's scheme (int8 per-tensor
    # activations, weights symmetric in -127..127): its simulation is this lowering's.
    quantizer_family = "litert"
    calibration_methods = ("percentile",)  # a HistogramObserver's ranges, as on pt2
    per_tensor_lowering = True
    float_op_kinds = TORCH_CASUALTIES

    def export(self, model: "Model", variant: "QuantVariant | None", out: Path, options: "TargetOptions | dict",
               calibration: "Dataset | None", base: Artifact | None = None) -> Artifact:
        import torch
        from executorch.version import __version__

        from targets.executorch import export as et

        opts = self.options(options)
        program, dynamic, notes = self._program(model, variant, opts, calibration)
        label = variant.label if variant else "fp32"
        names, data, left = self._lowered(program, model, variant, dynamic, opts.max_batch)
        if dynamic and not et.batch_holds(data, model, opts.max_batch):
            # torch.export kept the batch symbolic, XNNPACK did not: export it fixed instead.
            program, dynamic, notes = self._program(model, variant, opts.model_copy(update={"dynamic_batch": False}),
                                                    calibration)
            names, data, left = self._lowered(program, model, variant, dynamic, None)
            notes["batch_note"] = ("fixed batch: XNNPACK lowered a reshape of the batch axis with a constant size, "
                                   "so the program runs at the model's own batch only")
        max_batch = opts.max_batch if dynamic else None
        meta: dict[str, Any] = {"exporter": f"torch.export {torch.__version__}, executorch {__version__}",
                                "dynamic_batch": dynamic, **notes}
        et.refuse_missing_kernels(left, label)
        meta.update({"output_names": names, "max_batch": max_batch, "undelegated_ops": left})
        outside = et.quantized_left(left)
        if outside:  # int8 arithmetic on reference kernels: kept only when it agrees
            cos = et.check_runs(data, program, model, label, left)
            if cos < OUTSIDE_MIN_COSINE:
                from compressor.errors import UnsupportedOpError

                raise UnsupportedOpError(f"{label}: {', '.join(outside)} left outside the XNNPACK delegate give "
                                         f"cosine {cos:.4f} on ExecuTorch's reference kernels; keep that part in "
                                         "float (exclude_ops=[...]) or use another target (tflite, onnx)")
            meta["undelegated_note"] = (f"{', '.join(outside)} run outside XNNPACK on ExecuTorch's portable "
                                        f"reference kernels (slower; cosine {cos:.4f} against the PT2E graph)")
        elif left:
            meta["undelegated_note"] = "these ops run on ExecuTorch's portable kernels, outside the XNNPACK delegate"
        final = Path(f"{out}{self.suffixes[0]}")
        with staging_dir(final.parent, final.name) as work:
            staged = work / final.name
            staged.write_bytes(data)
            self.check_file(staged)
            publish({staged: final})
        return Artifact(target=self.name, label=label, precision=variant.precision if variant else "fp32",
                        path=final, meta=meta)

    def _lowered(self, program, model: "Model", variant: "QuantVariant | None", dynamic: bool,
                 max_batch: int | None) -> tuple[list[str], bytes, list[str]]:
        """(output names, the .pte bytes, the ops left outside the delegate)."""
        import torch

        from targets.executorch import export as et
        from targets.torch_archive import output_names_for, signature

        max_batch = max_batch if dynamic else None
        with torch.no_grad():
            outputs = program.module()(*model.example_inputs(batch=2 if dynamic else None))
        names = output_names_for(model, [outputs] if isinstance(outputs, torch.Tensor) else list(outputs))
        stored = signature(model, dynamic, names, precision=variant.precision if variant else "fp32",
                           max_batch=max_batch)
        data, left = et.lower(program, stored, max_batch)
        return names, data, left

    def _program(self, model: "Model", variant: "QuantVariant | None", opts: ExecuTorchOptions,
                 calibration: "Dataset | None"):
        """The torch.export program to lower (for int8, re-captured from the PT2E graph,
        with the quantizer's notes), and whether its batch axis is symbolic."""
        from targets.pt2 import export as ex

        if variant is None:
            return (*ex.export_program(model.module, model, opts.dynamic_batch), {})
        converted, dynamic, notes = self._converted(model, variant, opts, calibration)
        program, dynamic = ex.export_program(converted, model, dynamic)
        return program, dynamic, notes

    def _converted(self, model: "Model", variant: "QuantVariant", opts: ExecuTorchOptions,
                   calibration: "Dataset | None"):
        """The PT2E-converted graph (reference int8 in PyTorch), whether its batch is symbolic, notes."""
        from compressor.errors import RecipeError
        from targets.executorch.export import xnnpack_quantizer
        from targets.pt2 import export as ex

        if variant.mode not in self.modes:
            raise RecipeError(f"{variant.label}: the executorch target lowers {', '.join(self.modes)} int8, "
                              f"not {variant.mode}")
        source = ex.unshare_stateless_modules(model.module)
        program, dynamic = ex.export_program(source, model, opts.dynamic_batch)
        dyn = variant.mode == "dynamic"
        data = _example_data(model) if dyn else calibration  # placeholder observers: one pass sets nothing
        converted, notes = ex.pt2e_int8(program, model, variant, data, dynamic_batch=dynamic,
                                         quantizer=xnnpack_quantizer(model, variant))
        notes.pop("float_one_channel_convolutions", None)
        notes.update({"engine": "torchao PT2E, XNNPACKQuantizer", "excluded_ops": list(variant.exclude_ops),
                      "weights": f"int8 symmetric {'per-channel' if variant.per_channel else 'per-tensor'}",
                      "activations": "int8 per batch at run time (Linear only)" if dyn else "int8 asymmetric"})
        if dyn:
            for key in ("calibration", "calibration_samples"):
                notes.pop(key, None)
        return converted, dynamic, notes

    def check_file(self, path: Path) -> None:
        from targets.executorch.runtime import check_pte_file

        check_pte_file(path)

    def open_session(self, path: Path, device: Device, threads: int):
        from targets.executorch.runtime import open_pte

        return open_pte(path, device, threads)

    def screen(self, model: "Model", variant: "QuantVariant", calibration: "Dataset | None", inputs):
        """The PT2E-converted graph XNNPACK would take, run in PyTorch (reference int8
        arithmetic; XNNPACK rounds a little differently, so the fallback checks what it
        finds on the real .pte)."""
        if variant.mode not in self.modes:
            return None
        from compressor.sensitivity import run_module

        converted, dynamic, _ = self._converted(model, variant, self.options({}), calibration)
        step = 16 if dynamic else model.inputs[0].shape[0]
        return run_module(converted, inputs, model.input_names, step)


def _example_data(model: "Model"):
    from compressor.data import Dataset

    return Dataset({s.name: t.numpy() for s, t in zip(model.inputs, model.example_inputs(batch=2))})

"""The OpenVINO target: the IR (.xml graph + .bin weights) for Intel CPUs, GPUs and NPUs.

fp32 comes from our own ONNX export read by OpenVINO (or `source: torch`, OpenVINO's
PyTorch converter); fp16 is the same graph with fp16 weights; static int8 is NNCF's
post-training quantization of that graph with the recipe's calibration data (and, as a
fallback lowering, NNCF's accuracy-aware variant of it); weight-only is NNCF's weight
compression; dynamic int8 is that compression of the MatMuls with the CPU plugin's dynamic
quantization of their activations. The session compiles with a latency hint on the recipe's thread count.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from compressor.fsutil import publish, staging_dir
from targets.base import Artifact, Device, Target, TargetOptions

if TYPE_CHECKING:
    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.config.quantize import QuantVariant
    from compressor.quant.search import Lowering

# OpenVINO op types int8 commonly breaks (gates, normalisations, smooth activations).
OV_CASUALTIES = ("HSigmoid", "HSwish", "Sigmoid", "Swish", "Softmax", "SoftMax", "MVN", "Gelu", "Multiply")


class OpenVinoOptions(TargetOptions):
    source: Literal["onnx", "torch"] = Field(
        "onnx", description="how the fp32 graph is made: onnx (our ONNX export, read by OpenVINO) or torch "
        "(OpenVINO's PyTorch converter)")
    dynamic_batch: bool = Field(True, description="a symbolic batch axis in the IR (the session reshapes it to "
                                "the first feed's shapes and compiles for those)")
    device: Literal["CPU", "GPU", "NPU", "AUTO"] = Field(
        "CPU", description="the OpenVINO device the artifact is compiled for when it is validated and "
                           "benchmarked (recorded in the IR)")
    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        "f32", description="arithmetic of the layers left float on CPU; OpenVINO's own default is bf16 where the "
        "CPU has it, which differs from PyTorch in the third digit")
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="NNCF preset of a static variant without symmetric_activations: performance "
        "(symmetric activations, NNCF's default; MobileNetV2 ran 1.2x slower under mixed) or mixed (asymmetric "
        "activations, which hold more of a ReLU-free range); the fallback tries mixed too")
    accuracy_control: bool = Field(False, description="static int8 through nncf.quantize_with_accuracy_control: "
                                   "NNCF reverts the quantizers that cost most until the mean output cosine on "
                                   "held-out calibration inputs is within fallback.min_cosine (default 0.99)")


class OpenVinoTarget(Target):
    name = "openvino"
    suffixes = (".xml",)
    options_model = OpenVinoOptions
    modes = ("static", "dynamic", "fp16", "weight_only")
    quantizer_family = "x86"  # per-channel symmetric int8 weights, uint8 activations: PT2E x86 simulates it
    calibration_methods = ("percentile",)
    per_tensor_lowering = True
    symmetric_activation_lowering = False  # activations are symmetric already (preset performance)
    float_op_kinds = OV_CASUALTIES

    def export(self, model: "Model", variant: "QuantVariant | None", out: Path, options: "TargetOptions | dict",
               calibration: "Dataset | None", base: Artifact | None = None) -> Artifact:
        from targets.openvino import export as ex

        opts = self.options(options)
        final = Path(f"{out}.xml")
        with staging_dir(final.parent, final.name) as work:
            staged = work / final.name
            ov_model, record = self._float(model, opts, base, work)
            record.update(device=opts.device, inference_precision=opts.inference_precision,
                          precision=variant.precision if variant else "fp32")
            ov_model, notes = self._lower(ov_model, record, variant, calibration, model, opts)
            files = ex.save_ir(ov_model, record, staged, compress_to_fp16=bool(variant and variant.mode == "fp16"))
            meta = {k: v for k, v in record.items() if k != "scopes"}
            meta.update(notes, op_types=ex.op_histogram(ov_model), openvino=_ov_version())
            if variant is not None and variant.mode == "fp16":
                meta["weights"] = "fp16 (compress_to_fp16), decompressed to f32 when compiled"
            publish({f: final.parent / f"{final.stem}{f.suffix}" for f in files})
        return Artifact(target=self.name, label=variant.label if variant else "fp32",
                        precision=variant.precision if variant else "fp32", path=final,
                        extra_files=[final.with_suffix(".bin")], meta=meta)

    def _lower(self, ov_model, record: dict, variant: "QuantVariant | None", calibration: "Dataset | None",
               model: "Model", opts: OpenVinoOptions) -> tuple[Any, dict[str, Any]]:
        """`ov_model` lowered as `variant` asks (fp32 and fp16: as it is; fp16 is a matter
        of how its weights are saved), and notes on what was done. A variant whose
        activations get quantized as it runs leaves its group size in `record`."""
        from targets.openvino import quantize as q

        if variant is None or variant.mode == "fp16":
            return ov_model, {}
        if variant.mode == "static":
            budget = None
            if opts.accuracy_control:
                budget = variant.fallback.min_cosine if variant.fallback and variant.fallback.min_cosine else 0.99
            return q.static_int8(ov_model, record, variant, calibration, model.input_names, opts.preset, budget)
        if variant.mode == "weight_only":
            ov_model, notes = q.weight_only(ov_model, variant, calibration, model.input_names)
        elif variant.mode == "dynamic":
            ov_model, notes = q.dynamic_int8(ov_model, record, variant)
        else:
            from compressor.errors import RecipeError

            raise RecipeError(f"{variant.label}: the openvino target lowers {', '.join(self.modes)}, not "
                              f"{variant.mode}")
        record["dynamic_quantization_group_size"] = notes.pop("dynamic_quantization_group_size")
        return ov_model, notes

    def _float(self, model: "Model", opts: OpenVinoOptions, base: Artifact | None, work: Path):
        """The fp32 ov.Model: read back from `base` (the fp32 IR of this model) when it was
        made the same way, else exported afresh."""
        from targets.openvino.runtime import read_model, record_of

        if base is not None and base.path.is_file():
            ov_model = read_model(base.path)
            record = record_of(ov_model)
            if record.get("source") == opts.source and record.get("dynamic_batch") == opts.dynamic_batch:
                return ov_model, record
        from targets.openvino.export import float_model

        return float_model(model, opts.source, opts.dynamic_batch, work)

    def check_file(self, path: Path) -> None:
        from targets.openvino.runtime import check_ir_file

        check_ir_file(path)

    def open_session(self, path: Path, device: Device, threads: int):
        from targets.openvino.runtime import OvSession

        return OvSession(path, device, threads)

    def companion_files(self, path: Path) -> list[Path]:
        weights = Path(path).with_suffix(".bin")
        return [weights] if weights.is_file() else []

    def alternative_lowerings(self, variant: "QuantVariant", base: Artifact, model: "Model") -> list["Lowering"]:
        """The other lowerings, then for a static variant asymmetric activations (NNCF's
        mixed preset) and NNCF's accuracy-aware quantization, which does its own search for
        the quantizers to revert."""
        from compressor.quant.search import Lowering

        out = super().alternative_lowerings(variant, base, model)
        if variant.mode == "static":
            if not variant.symmetric_activations:
                out.append(Lowering("asymmetric activations (nncf mixed preset)", options={"preset": "mixed"}))
            out.append(Lowering("nncf accuracy control", options={"accuracy_control": True}))
        return out

    def op_kinds(self, base: Artifact, model: "Model") -> set[str]:
        """The fp32 IR's op types (its export recorded them)."""
        return set((base.meta or {}).get("op_types") or {})

    def keeps_float(self, base: Artifact, layer: str) -> bool:
        """Only a layer the IR has ops of can be kept float here."""
        from compressor.errors import RecipeError
        from targets.openvino.scopes import ops_to_ignore, recorded_scopes

        try:
            return bool(ops_to_ignore(recorded_scopes(base.path), [layer]))
        except RecipeError:
            return False


def _ov_version() -> str:
    import openvino as ov

    return ov.__version__.split("-")[0]

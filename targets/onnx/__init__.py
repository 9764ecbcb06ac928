"""The ONNX target: dynamo export, ONNX Runtime lowering of int8/fp16, ORT sessions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from compressor.fsutil import publish, staging_dir
from targets.base import Artifact, Device, Target, TargetOptions

if TYPE_CHECKING:
    import numpy as np

    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.config.quantize import QuantVariant

# Protobuf caps one message at 2 GiB; past half of that, weights go to a .data file.
EXTERNAL_DATA_AUTO_BYTES = 1 << 30
# ONNX op types int8 commonly breaks (gates, normalisations, smooth activations).
ONNX_CASUALTIES = ("HardSigmoid", "HardSwish", "Sigmoid", "Softmax", "LayerNormalization", "Gelu", "Erf", "Mul")


# torch.onnx's dynamo exporter builds opset 18 graphs (torchlib) and converts them up to
# the newest opset of the installed onnx; asked for anything outside, it writes opset 18
# without a word.
MIN_OPSET = 18


def supported_opsets() -> tuple[int, int]:
    """The opsets the installed exporter writes when asked: (lowest, highest)."""
    try:
        import onnx.defs
    except ImportError:  # not installed: export fails with its own message later
        return MIN_OPSET, MIN_OPSET
    return MIN_OPSET, onnx.defs.onnx_opset_version()


class OnnxOptions(TargetOptions):
    opset: int | None = Field(None, description="ONNX opset; default: the exporter's (18 to the newest opset "
                              "of the installed onnx package)")
    dynamic_batch: bool = Field(True, description="export a symbolic batch axis when the model allows it")
    external_data: bool | None = Field(None, description="weights in a .data file; default: only past 1 GiB")
    fusions: Literal["none", "bert"] = Field(
        "none", description="bert: ONNX Runtime's transformer optimizer fuses attention, LayerNorm and GELU "
        "into its Attention/SkipLayerNormalization/BiasGelu kernels in the fp32 artifact (fp16 starts from "
        "it; int8 variants lower from the unfused export, which ran faster quantized)")

    @field_validator("opset")
    @classmethod
    def _exporter_writes_it(cls, v: int | None) -> int | None:
        if v is None:
            return v
        low, high = supported_opsets()
        if not low <= v <= high:
            raise ValueError(f"the installed exporter writes opsets {low} to {high} only (torch.onnx builds {low} "
                             "and converts up to the onnx package's newest); pick one of those or leave 'opset' out")
        return v


class OnnxTarget(Target):
    name = "onnx"
    suffixes = (".onnx",)
    options_model = OnnxOptions
    modes = ("static", "dynamic", "fp16", "qat", "weight_only")
    quantizer_family = "x86"  # PT2E x86 simulates ORT's QDQ int8; QAT models export as QDQ under it
    calibration_methods = ("percentile", "entropy")
    per_tensor_lowering = True
    symmetric_activation_lowering = True
    float_op_kinds = ONNX_CASUALTIES

    def export(self, model: "Model", variant: "QuantVariant | None", out: Path, options: "TargetOptions | dict",
               calibration: "Dataset | None", base: Artifact | None = None) -> Artifact:
        from targets.onnx.runtime import check_onnx_file, external_data_files, op_histogram
        from targets.onnx.source import OnnxFileModel

        opts = self.options(options)
        file_source = isinstance(model, OnnxFileModel)
        if file_source and variant is None:  # an existing ONNX file: the file itself, made ready to lower
            from targets.onnx.file_export import export_file_fp32

            return export_file_fp32(model, out, opts.external_data)
        final = Path(f"{out}.onnx")
        external = opts.external_data
        if external is None and file_source:
            external = bool(base is not None and base.meta.get("external_data"))
        elif external is None:
            external = sum(p.numel() * p.element_size() for p in model.module.parameters()) > EXTERNAL_DATA_AUTO_BYTES
        with staging_dir(final.parent, final.name) as work:
            staged = work / final.name
            if variant is None or variant.mode == "qat":
                from targets.onnx.export import export_fp32

                # qat: the model is a converted PT2E graph; its quantize/dequantize nodes
                # export as QDQ with the learned scales, no calibration here.
                meta = export_fp32(model, staged, opts.opset, opts.dynamic_batch, external)
                if variant is None and opts.fusions != "none":
                    from targets.onnx.fusions import fuse_transformer

                    meta.update(fuse_transformer(staged, opts.fusions, external))
                if variant is not None:
                    meta.update(engine="PT2E x86 quantizer (QAT or its PTQ twin), exported as QDQ",
                                activations="uint8 asymmetric", excluded=list(variant.exclude))
            else:
                from targets.onnx.quantize import lower

                if base is None:
                    raise ValueError("the ONNX lowering of a quantized variant starts from the fp32 artifact")
                src = base.path
                if opts.fusions != "none" and variant.mode in ("static", "dynamic", "weight_only"):
                    src = _unfused(model, work, opts, external)
                meta = {**{k: base.meta[k] for k in ("dynamic_batch", "output_names") if k in base.meta},
                        **lower(src, staged, variant, calibration, bool(base.meta.get("dynamic_batch")),
                                work, external)}
            if file_source and variant.mode in ("static", "dynamic"):
                from targets.onnx.source import quantizer_float_ops

                # Left float by ONNX Runtime's quantizer, which has no int8 kernel for them.
                meta["float_op_types"] = quantizer_float_ops(model.nodes, variant.mode)
            _compact(staged, int8=bool(variant) and variant.mode in ("static", "qat"), meta=meta,
                     keep_scopes=variant is None)
            if variant is not None and variant.mode == "qat":
                from targets.onnx.fused import fused_op_types

                meta["ort_fused_ops"] = fused_op_types(staged)
            check_onnx_file(staged)
            companions = external_data_files(staged)
            meta["op_types"] = op_histogram(staged)
            publish({staged: final, **{c: final.parent / c.name for c in companions}})
        return Artifact(target=self.name, label=variant.label if variant else "fp32",
                        precision=variant.precision if variant else "fp32", path=final,
                        extra_files=[final.parent / c.name for c in companions], meta=meta)

    def check_file(self, path: Path) -> None:
        from targets.onnx.runtime import check_onnx_file

        check_onnx_file(path)

    def open_session(self, path: Path, device: Device, threads: int):
        from targets.onnx.runtime import OrtSession

        return OrtSession(path, device, threads)

    def companion_files(self, path: Path) -> list[Path]:
        from targets.onnx.runtime import external_data_files

        return external_data_files(path)

    def op_kinds(self, base: Artifact, model: "Model") -> set[str]:
        """The fp32 graph's op types (its export recorded them)."""
        return set((base.meta or {}).get("op_types") or {})

    def keeps_float(self, base: Artifact, layer: str) -> bool:
        """Only a layer the exported graph has nodes of can be kept float here."""
        from compressor.errors import RecipeError
        from targets.onnx.scopes import nodes_to_exclude

        try:
            return bool(nodes_to_exclude(base.path, [layer], []))
        except RecipeError:
            return False

    def probe_cache(self):
        """The pre-processed graph and the calibration ranges, shared by the probes."""
        from targets.onnx.reuse import probe_cache

        return probe_cache()

    def layer_scores(self, base: Artifact, variant: "QuantVariant", calibration: "Dataset | None",
                     inputs: "dict[str, np.ndarray]", layers: list[str]) -> "dict[str, list[np.ndarray] | None]":
        """ONNX Runtime's static quantizer with `nodes_to_quantize`, one layer at a time."""
        if variant.mode != "static":
            return super().layer_scores(base, variant, calibration, inputs, layers)
        from targets.onnx.layerwise import module_scores

        return module_scores(base.path, variant, calibration, inputs, layers, bool(base.meta.get("dynamic_batch")))


def _unfused(model: "Model", work: Path, opts: OnnxOptions, external: bool) -> Path:
    """The plain export, which quantized variants lower from when the fp32 artifact is
    fused: on BERT, ORT's own fusions of the dynamic int8 graph (DynamicQuantizeMatMul)
    ran 7-9% faster than its QAttention kernel (benchmarks/suite/bert_dynamic.py), and
    QDQ static int8 wants plain MatMuls to wrap."""
    from targets.onnx.export import export_fp32

    path = work / "unfused.onnx"
    export_fp32(model, path, opts.opset, opts.dynamic_batch, external)
    return path


def _compact(path: Path, int8: bool, meta: dict, keep_scopes: bool = False) -> None:
    from targets.onnx.compact import compact_file, has_subgraphs

    rename = int8 and not has_subgraphs(path)
    # The fp32 graph keeps its nodes' module paths: int8 lowerings exclude layers by module name.
    compact_file(path, rename_tensors=rename, keep_scopes=keep_scopes)
    meta["compacted"] = "debug info, shapes, zero weight zero-points, tensor names" if rename else "debug info, shapes"

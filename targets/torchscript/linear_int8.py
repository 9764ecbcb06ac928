"""The TorchScript target's int8 of a transformer: its Linear layers only, outlier-aware
(targets.torch_outliers: smoothing, float outlier channels, per-inference ranges chosen
per layer group), everything else (residual adds, LayerNorm, Softmax, GELU, the
attention products) float. No FX trace: the layers are replaced in the module, so any
model that runs eagerly (a Hugging Face BertModel with its mask code) lowers.

Kernels: PyTorch's x86 int8 GEMM with float input and output. A static layer quantizes
its input with the calibrated range (quantized::linear_with_input_q_dq_qweight_dq_output_fp32,
an fbgemm kernel: the archive asks for the x86 engine); a dynamic one with each input's
own range (quantized::linear_dynamic). Outputs stay float, as in ONNX's QDQ MatMul: no
requantization of the FFN outputs, whose [CLS] values run to 25 where the rest stay under 3.

Activations use the full 8-bit range where the exporting CPU has VNNI; without it 7 bits
(u8 x s8 pair sums of AVX2's kernels saturate int16 at 8), as the FX lowering does. An
8-bit archive loaded on a CPU without VNNI can saturate on large activations.
"""

from __future__ import annotations

import torch
from torch import nn

from compressor.config.quantize import QuantVariant
from compressor.layers import check_module_names


class Int8Linear(nn.Module):
    """A quantized Linear's packed int8 weights with float input and output; `scale`
    None: each input's own range (dynamic), else the calibrated one (static)."""

    def __init__(self, packed: nn.Module, scale: float | None, zero_point: int, reduce_range: bool) -> None:
        super().__init__()
        self._packed_params = packed  # LinearPackedParams: saved and reloaded by torch.jit
        self.scale, self.zero_point, self.reduce_range = scale, zero_point, reduce_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._packed_params._packed_params
        if self.scale is None:
            return torch.ops.quantized.linear_dynamic(x, w, self.reduce_range)
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(x, self.scale, self.zero_point, w)


def transformer_int8(module: nn.Module, names: list[str], calibration, v: QuantVariant,
                     ) -> tuple[nn.Module, dict] | None:
    """The outlier-aware Linear-only int8 of `module`, and its meta; None when it does not
    apply (outliers off, no calibration data to plan from, or no Linear reading a
    LayerNorm's output: not a transformer)."""
    if v.outliers == "off" or v.mode not in ("static", "dynamic") or calibration is None or not len(calibration):
        return None
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    from targets.torch_outliers import apply, kept_float, plan_linears

    check_module_names(module, v.exclude, "torchscript")
    skip = kept_float(module, v, "torchscript")
    dynamic_mode = v.mode == "dynamic"
    plan = plan_linears(module, names, calibration, v.calibration_samples, dynamic_mode, v.smoothing_alpha,
                        rewrites=v.outliers != "linear")
    if plan is None:
        return None
    rewritten, lowered = apply(module, plan, skip)
    torch.backends.quantized.engine = "x86"
    qconfig = per_channel_dynamic_qconfig if v.per_channel else default_dynamic_qconfig
    quantized = quantize_dynamic(rewritten, {name: qconfig for name in lowered}, dtype=torch.qint8, inplace=True)
    bits = 8 if _vnni() else 7
    static = dynamic = 0
    for name, src in lowered.items():
        parent, _, leaf = name.rpartition(".")
        owner = quantized.get_submodule(parent) if parent else quantized
        layer = getattr(owner, leaf)
        if dynamic_mode or plan.plan_of(src).dynamic:
            setattr(owner, leaf, Int8Linear(layer._packed_params, None, 0, bits == 7))
            dynamic += 1
            continue
        lo, hi = plan.input_range(src)
        levels = 2 ** bits - 1
        scale = (hi - lo) / levels or 1.0
        zero = int(min(max(round(-lo / scale), 0), levels))
        setattr(owner, leaf, Int8Linear(layer._packed_params, float(scale), zero, False))
        static += 1
    return quantized.eval(), {
        **plan.notes(dynamic_mode),
        "engine": "int8 Linear layers (PyTorch x86 kernels, float input and output), outlier-aware",
        "activations": f"uint8 asymmetric, {bits}-bit range, "
        + ("per inference" if dynamic_mode else "calibrated min/max (per inference where the plan says)"),
        "weights": f"int8 symmetric {'per-channel' if v.per_channel else 'per-tensor'}",
        "int8_layers": static + dynamic, "dynamic_range_layers": dynamic, "calibration_samples":
        min(len(calibration), v.calibration_samples), "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops),
        "float_ops": "residual adds, normalisations, softmax, activations, attention products",
        "quantized_engine": "x86",
    }


def _vnni() -> bool:
    try:
        return bool(torch.cpu._is_vnni_supported())
    except AttributeError:
        return False

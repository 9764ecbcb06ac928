"""Per-layer sensitivity: quantize one layer (or block) at a time and measure how far
the outputs move from the float model's.

Cheap by design: the target's own quantizer family (its Target.quantizer_family) is
simulated in PyTorch (PT2E x86 for ONNX and pt2, LiteRT's PT2E quantizer for TFLite, FX
x86 for TorchScript; the same quantizers the qat step trains under,
compressor/qat/quantizers.py), calibrated on the calibration data, with only the layer
under test annotated. No export, no runtime: a ranking of where int8 hurts, which the
fallback (compressor/flows/fallback/) then checks for real.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch

from compressor.data import Dataset
from compressor.errors import DataError, ExportError, RecipeError, first_line
from compressor.layers import block_names, check_module_names, is_ops, kind, layers_and_ops, strip_dropout
from compressor.model import Model, flatten_outputs
from compressor.qat.quantizers import release_model_caches
from compressor.reference import top1

# The quantizer families a layer's int8 can be simulated under (a target names its own).
FAMILIES = ("fx", "litert", "x86")
CALIB_SAMPLES = 128
BATCH = 32


@dataclass(frozen=True)
class LayerScore:
    name: str
    kind: str                     # the module's class name
    cosine: float                 # mean output cosine vs fp32 with only this layer quantized
    rel_error: float              # ||y_q - y||^2 / ||y||^2
    accuracy_drop: float | None   # percentage points, with labels

    def to_json(self) -> dict:
        return asdict(self)


def candidates(model: Model, granularity: str = "layer", mode: str | None = None) -> list[str]:
    """Blocks, or layers with the op scopes (`<module>:ops`) of the modules whose own
    forward computes something: a squeeze-excitation product, a residual add, attention.
    A model without a torch module (an ONNX file) names its own (`layer_candidates`), for
    the variant's `mode` (dynamic int8 touches fewer kinds of node)."""
    own = getattr(model, "layer_candidates", None)
    if own is not None:
        return own(granularity, mode)
    if granularity == "block":
        return block_names(model.module)
    try:
        example = model.example_inputs(batch=1)
    except Exception:  # no example input: layers only
        example = None
    return layers_and_ops(model.module, example)


def layer_kind(model, name: str) -> str:
    """A layer's kind: its module class, or what a handle without a torch module says."""
    own = getattr(model, "layer_kind", None)
    return own(name) if own is not None else kind(model.module, name)


def layer_sensitivity(model: Model, family: str, calibration: Dataset | None, inputs: dict[str, np.ndarray],
                      labels: np.ndarray | None = None, layers: list[str] | None = None,
                      granularity: str = "layer", per_channel: bool = True,
                      calibration_samples: int = CALIB_SAMPLES, progress=None,
                      mode: str = "static") -> list[LayerScore]:
    """Rank `layers` (default: every layer, or block with granularity 'block') by the
    damage quantizing each alone does under quantizer `family` (a target's
    quantizer_family), most sensitive first (lowest cosine). `mode`
    'dynamic' simulates dynamic int8 (weights int8, activations quantized per batch at
    run time), so a dynamic variant is ranked by its own error, not static int8's."""
    if granularity not in ("layer", "block"):
        raise RecipeError(f"granularity {granularity!r}: use 'layer' or 'block'")
    scorer = LayerScorer(model, family, calibration, inputs, labels, per_channel, calibration_samples, mode)
    names = list(layers) if layers is not None else candidates(model, granularity)
    check_module_names(model.module, names, "the sensitivity pass")
    scores = []
    for i, name in enumerate(names):
        if progress is not None:
            progress(i, len(names), name)
        scores.append(scorer.score(name))
    return rank(scores)


DYNAMIC_FUNCTIONS = frozenset({"linear", "matmul", "bmm", "addmm", "baddbmm", "einsum",
                               "multi_head_attention_forward", "scaled_dot_product_attention"})


class LayerScorer:
    """The damage of quantizing one layer, op scope or block alone under a quantizer
    family's simulation; the model is captured once for every score."""

    def __init__(self, model: Model, family: str, calibration: Dataset | None, inputs: dict[str, np.ndarray],
                 labels: np.ndarray | None = None, per_channel: bool = True,
                 calibration_samples: int = CALIB_SAMPLES, mode: str = "static") -> None:
        if family not in FAMILIES:
            raise RecipeError(f"no sensitivity simulation for quantizer family {family!r}; families with one: "
                              f"{', '.join(FAMILIES)}")
        if mode not in ("static", "dynamic"):
            raise RecipeError(f"the sensitivity pass simulates static and dynamic int8, not {mode!r}")
        if not hasattr(model, "module"):
            raise ExportError("sensitivity: the simulation runs a PyTorch model; this source has none")
        if calibration is None or not len(calibration):
            raise DataError("the sensitivity pass needs calibration data: add 'data: {calibration: ...}' to the "
                            "recipe")
        self.model, self.inputs, self.labels, self.mode = model, inputs, labels, mode
        self.calib = calibration.take(calibration_samples).inputs
        self.ref = run_module(model.module, inputs, model.input_names)
        self.ref_acc = accuracy(self.ref[0], labels)
        self.sim = _Simulator(family, model, per_channel, dynamic=mode == "dynamic")
        self._scopes: dict[str, list[str]] | None = None

    def score(self, name: str) -> LayerScore:
        model = self.model
        if self.mode == "dynamic" and not self._dynamic(name):
            # Dynamic int8 quantizes weighted layers (and the matmuls of attention) only:
            # on every target this one stays float, so quantizing it alone changes nothing.
            return LayerScore(name=name, kind=kind(model.module, name), cosine=1.0, rel_error=0.0,
                              accuracy_drop=None if self.ref_acc is None else 0.0)
        quantized = self.sim.only(name, self.calib)
        got = run_module(quantized, self.inputs, model.input_names)
        del quantized
        release_model_caches()
        cos, rel = output_cosine(self.ref, got), relative_error(self.ref, got)
        acc = accuracy(got[0], self.labels)
        return LayerScore(name=name, kind=kind(model.module, name), cosine=cos, rel_error=rel,
                          accuracy_drop=None if acc is None else 100 * (self.ref_acc - acc))


    def _dynamic(self, name: str) -> bool:
        """Whether dynamic int8 touches `name`: a layer (or block) holding a weight of two
        or more dimensions, or an op scope that multiplies matrices."""
        from compressor.layers import op_scopes

        if is_ops(name):
            if self._scopes is None:
                self._scopes = op_scopes(self.model.module, self.model.example_inputs(batch=1))
            return bool(DYNAMIC_FUNCTIONS & set(self._scopes.get(name, [])))
        return any(p.dim() >= 2 for p in self.model.module.get_submodule(name).parameters())


def rank(scores: list[LayerScore]) -> list[LayerScore]:
    """Most sensitive first: the largest accuracy drop, then the lowest cosine, then the
    largest relative error (a NaN cosine, i.e. broken outputs, counts as the worst)."""
    def key(s: LayerScore):
        cos = s.cosine if np.isfinite(s.cosine) else -2.0
        return (-(s.accuracy_drop or 0.0), cos, -s.rel_error if np.isfinite(s.rel_error) else -np.inf)
    return sorted(scores, key=key)


class _Simulator:
    """One layer quantized under a family's quantizer, everything else float. The model
    is captured once; each layer gets a copy of the capture."""

    def __init__(self, family: str, model: Model, per_channel: bool, dynamic: bool = False) -> None:
        self.family, self.model, self.per_channel, self.dynamic = family, model, per_channel, dynamic
        self.example = model.example_inputs(batch=2)  # not 1: torch.export would fix the batch axis
        self._graph = None
        if family != "fx":
            from compressor.qat.graph import BATCH_DIM_MAX

            dims = tuple({0: torch.export.Dim("batch", min=1, max=BATCH_DIM_MAX)} for _ in self.example)
            try:
                self._graph = torch.export.export(copy.deepcopy(model.module).eval(), self.example,
                                                  dynamic_shapes=dims).module()
            except Exception as e:
                raise ExportError(f"sensitivity: torch.export cannot capture the model for the {family} quantizer "
                                  f"({type(e).__name__}: {first_line(e)})") from None

    def only(self, name: str, calib: dict[str, np.ndarray]) -> torch.nn.Module:
        try:
            prepared = self._prepare(name)
            # The capture is already in eval form: run the observers directly (the qat
            # step's calibrate() re-exports BatchNorm/dropout patterns, seconds per call).
            run_module(prepared, calib, self.model.input_names)
            if self.family == "fx":
                from torch.ao.quantization.quantize_fx import convert_fx

                return convert_fx(prepared).eval()
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

            return convert_pt2e(prepared)
        except Exception as e:
            raise ExportError(f"sensitivity: the {self.family} quantizer fails on layer {name!r} "
                              f"({type(e).__name__}: {first_line(e)})") from None

    def _prepare(self, name: str) -> torch.nn.Module:
        if self.family == "fx":
            from torch.ao.quantization import QConfigMapping
            from torch.ao.quantization.quantize_fx import prepare_fx

            from compressor.qat.quantizers import fx_qconfig_mapping, fx_set_module

            torch.backends.quantized.engine = "x86"
            if self.dynamic:  # what quantize_dynamic (the torchscript target's dynamic int8) does to a Linear
                from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

                qconfig = per_channel_dynamic_qconfig if self.per_channel else default_dynamic_qconfig
            else:
                qconfig = fx_qconfig_mapping(8, self.per_channel, False, []).global_qconfig
            mapping = fx_set_module(QConfigMapping(), name, qconfig)
            return prepare_fx(strip_dropout(copy.deepcopy(self.model.module).eval()), mapping, self.example)
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

        from compressor.qat.quantizers import pt2e_quantizer

        from compressor.quant.pt2e_guard import unfold_shared_conv_bn

        quantizer = pt2e_quantizer(self.family, 8, self.per_channel, False, [], only=name, dynamic=self.dynamic)
        graph = copy.deepcopy(self._graph)
        unfold_shared_conv_bn(graph)  # prepare_pt2e would fold a BatchNorm into a shared conv output
        return prepare_pt2e(graph, quantizer)


def run_module(module: torch.nn.Module, inputs: dict[str, np.ndarray], names: list[str],
               batch: int = BATCH) -> list[np.ndarray]:
    """Every output of `module` on `inputs` (keyed by the input `names`), `batch` at a time."""
    n = len(inputs[names[0]])
    chunks = []
    with torch.no_grad():
        for s in range(0, n, batch):
            out = module(*[torch.from_numpy(np.ascontiguousarray(inputs[k][s:s + batch])) for k in names])
            chunks.append([t.detach().float().numpy() for t in flatten_outputs(out)])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def output_cosine(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    worst = 1.0
    for r, g in zip(ref, got):
        rf, gf = r.reshape(len(r), -1).astype(np.float64), g.reshape(len(g), -1).astype(np.float64)
        if not np.isfinite(gf).all():
            return float("nan")
        den = np.linalg.norm(rf, axis=1) * np.linalg.norm(gf, axis=1)
        cos = np.where(den > 0, (rf * gf).sum(1) / np.where(den > 0, den, 1), 1.0)
        worst = min(worst, float(cos.mean()))
    return worst


def relative_error(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    num = sum(float(((g.astype(np.float64) - r) ** 2).sum()) for r, g in zip(ref, got))
    den = sum(float((r.astype(np.float64) ** 2).sum()) for r in ref)
    return num / max(den, 1e-12)


def accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return top1(logits, labels)

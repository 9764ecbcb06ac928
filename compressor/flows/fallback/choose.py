"""What the fallback tries, and in which order: the layers it may keep in float, ranked
by sensitivity (simulated under the target's quantizer family, or the target's own
per-layer lowerings on its runtime), and the target's lowerings of the variant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from compressor.config.quantize import FallbackSpec, QuantVariant
from compressor.errors import CompressorError, DataError, RecipeError, first_line
from compressor.model import Model
from compressor.quant.search import Lowering

if TYPE_CHECKING:
    from compressor.sensitivity import LayerScore
    from targets.base import Artifact, Target


def lowerings(target: "Target", variant: QuantVariant, base: "Artifact", model: Model,
              budget: FallbackSpec) -> list[Lowering]:
    """The default lowering, then (when the budget allows) the target's alternatives."""
    return [Lowering("default")] + (target.alternative_lowerings(variant, base, model) if budget.alternatives
                                    else [])


def lowering_named(target: "Target", variant: QuantVariant, base: "Artifact", model: Model, label: str) -> Lowering:
    for low in target.alternative_lowerings(variant, base, model):
        if low.label == label:
            return low
    return Lowering(label)


def order(model, target, variant, calibration, base, reference, labels, budget, ranking, say):
    """Layers in sensitivity order (most sensitive first), the same layers in model
    (execution) order, the scores, and how the order was made."""
    from compressor.sensitivity import candidates, layer_sensitivity

    names = [n for n in candidates(model, budget.granularity) if n not in variant.exclude]
    names = [n for n in names if target.keeps_float(base, n)]
    if ranking:
        ranked = [s.name for s in ranking if s.name in names]
        return ranked + [n for n in names if n not in ranked], names, ranking, "given"
    n = budget.sensitivity_samples
    inputs = {k: v[:n] for k, v in reference.inputs.items()}
    lab = labels[:n] if labels is not None and reference.on_real_data else None
    say(f"{variant.label}: sensitivity of {len(names)} {budget.granularity}s")
    try:
        if budget.sensitivity == "target":
            outputs = [o[:n] for o in reference.outputs]
            scores = target_sensitivity(target, model, variant, calibration, base, inputs, outputs, lab, names)
            how = f"real {target.name} lowering of one {budget.granularity} at a time, on its runtime"
        else:
            scores = layer_sensitivity(model, target.quantizer_family, calibration, inputs, lab, layers=names,
                                       granularity=budget.granularity, per_channel=variant.per_channel,
                                       calibration_samples=variant.calibration_samples, mode=variant.mode)
            how = f"simulated {target.name} {variant.mode} quantizer, one {budget.granularity} at a time"
    except (RecipeError, DataError):
        raise
    except CompressorError as e:
        return names, names, [], f"model order (sensitivity failed: {first_line(e)})"
    return [s.name for s in scores], names, scores, how


def target_sensitivity(target: "Target", model: Model, variant: QuantVariant, calibration, base: "Artifact",
                       inputs: dict, outputs: list[np.ndarray], labels, layers: list[str]) -> list["LayerScore"]:
    """Ranking from the target's own lowering, one layer at a time (Target.layer_scores:
    for ONNX, ONNX Runtime's quantizer with `nodes_to_quantize`), scored on its runtime."""
    from compressor.layers import kind
    from compressor.sensitivity import LayerScore, accuracy, output_cosine, rank, relative_error

    got = target.layer_scores(base, variant, calibration, inputs, layers)
    ref_acc = accuracy(outputs[0], labels)
    scores = []
    for name in layers:
        outs = got.get(name)
        if outs is None:  # no node of its own in the graph (fused away): nothing to quantize
            scores.append(LayerScore(name, kind(model.module, name), 1.0, 0.0, None if labels is None else 0.0))
            continue
        acc = accuracy(outs[0], labels)
        scores.append(LayerScore(name, kind(model.module, name), output_cosine(outputs, outs),
                                 relative_error(outputs, outs), None if acc is None else 100 * (ref_acc - acc)))
    return rank(scores)

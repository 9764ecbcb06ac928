"""What the fallback tries, and in which order: the layers it may keep in float, ranked
by sensitivity (simulated under the target's quantizer family, or the target's own
per-layer lowerings on its runtime), and the target's lowerings of the variant.
"""

from __future__ import annotations

from dataclasses import dataclass
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


RANK_SHARE = 0.4          # of the time budget left, at most, for the ranking


@dataclass
class Order:
    """What the search walks: the layers most sensitive first, the same layers in model
    order, the scores behind it (blocks and layers), how they were made, and how many
    leading layers the scores predict it takes."""

    ranked: list[str]
    in_model_order: list[str]
    scores: list["LayerScore"]
    mode: str
    guess: int | None = None


def order(model, target, variant, calibration, base, reference, labels, budget: FallbackSpec, ranking,
          say, probe=None, first=None) -> Order:
    """Rank the candidate layers, blocks first (compressor/quant/ranking.py), each unit
    scored with only it quantized: on the target (its per-layer lowering on its runtime,
    or its in-process screen) or simulated, as `budget.sensitivity` says; within
    RANK_SHARE of the time left. `first`: the plain lowering's probe (how far it misses)."""
    from compressor.quant.ranking import first_guess, rank
    from compressor.sensitivity import candidates

    names = [n for n in candidates(model, budget.granularity, variant.mode) if n not in variant.exclude]
    names = [n for n in names if target.keeps_float(base, n)]
    if ranking:
        ranked = [s.name for s in ranking if s.name in names]
        return Order(ranked + [n for n in names if n not in ranked], names, ranking, "given")
    n = budget.sensitivity_samples
    inputs = {k: v[:n] for k, v in reference.inputs.items()}
    outputs = [o[:n] for o in reference.outputs]
    lab = labels[:n] if labels is not None and reference.on_real_data else None
    share, total = _share(first, budget)
    clock = probe.clock if probe is not None else None
    until = clock.elapsed() + RANK_SHARE * clock.left() if clock is not None else None
    try:
        scorer, how = _scorer(model, target, variant, calibration, base, inputs, outputs, lab, names, budget, probe)
    except (RecipeError, DataError):
        raise
    except CompressorError as e:
        return Order(names, names, [], f"model order (sensitivity failed: {first_line(e)})")
    scores: dict[str, "LayerScore"] = {}
    spent: list[float] = []

    def score(units) -> dict[str, float]:
        import time

        got = {}
        for u in units:
            if clock is not None and clock.elapsed() + max(spent[-3:], default=0.0) > until:
                break
            t0 = time.perf_counter()
            try:
                s = scorer(u)
            except CompressorError as e:
                say(f"{variant.label}: sensitivity of {u.name} failed ({first_line(e)})")
                continue
            finally:
                spent.append(time.perf_counter() - t0)
            scores[u.name] = s
            got[u.name] = 2.0 if not np.isfinite(s.cosine) else 1.0 - s.cosine
            if probe is not None:
                say(f"{variant.label}: sensitivity {len(scores)} ({u.name}, {len(u.members)} layer(s)): "
                    f"cosine {s.cosine:.4f} alone [{clock}]")
        return got

    say(f"{variant.label}: sensitivity of {len(names)} {budget.granularity}s, blocks first ({how})")
    result = rank(names, score, share, say=lambda msg: say(f"{variant.label}: {msg}"))
    if not result.complete:
        how += f"; stopped after {result.scored} scores at the ranking's share of max_seconds"
    from compressor.sensitivity import rank as by_damage

    guess = first_guess(result.order, result, share * total, total) if total > 0 else None
    return Order(result.order, names, by_damage(list(scores.values())), how, guess)


def _share(first, budget: FallbackSpec) -> tuple[float, float]:
    """The part of the plain lowering's error the float layers must remove, and that
    error (1 - mean cosine); (1, 0) when the plain probe gave no cosine."""
    if first is None or first.cosine is None:
        return 1.0, 0.0
    total = max(1.0 - first.cosine, 1e-9)
    parts = []
    if budget.min_cosine is not None:
        parts.append((budget.min_cosine - first.cosine) / total)
    if budget.min_worst_cosine is not None and first.cosine_min is not None:
        parts.append((budget.min_worst_cosine - first.cosine_min) / max(1.0 - first.cosine_min, 1e-9))
    if budget.max_accuracy_drop is not None or not parts:
        parts.append(1.0)
    return float(min(1.0, max(0.05, *parts))), total


def _scorer(model, target, variant, calibration, base, inputs, outputs, labels, names, budget, probe):
    """unit -> LayerScore with only that unit quantized, and how the scores are made."""
    from compressor.sensitivity import LayerScorer

    mode = budget.sensitivity
    onnx_like = _has_layer_scores(target, variant)
    screen = probe is not None and mode != "simulated" and not onnx_like and probe.has_screen
    if mode == "target" and not (onnx_like or screen):
        target.layer_scores(base, variant, calibration, inputs, [])  # raises: the target has neither
    if mode != "simulated" and onnx_like:
        def on_runtime(unit):
            return target_sensitivity(target, model, variant, calibration, base, inputs, outputs, labels,
                                      [unit.name])[0]
        return on_runtime, f"real {target.name} lowering of one unit at a time, on its runtime"
    if mode != "simulated" and screen:
        everything = set(names)

        def on_screen(unit):
            got = probe.screen_outputs(sorted(everything - set(unit.members)), Lowering("default"), inputs)
            return _score(model, unit.name, outputs, got, labels)
        return on_screen, f"{target.name}'s own lowering of one unit at a time, run in-process"
    scorer = LayerScorer(model, target.quantizer_family, calibration, inputs, labels,
                         per_channel=variant.per_channel, calibration_samples=variant.calibration_samples,
                         mode=variant.mode)
    return (lambda unit: scorer.score(unit.name),
            f"simulated {target.name} {variant.mode} quantizer, one unit at a time")


def _has_layer_scores(target, variant) -> bool:
    """Whether the target lowers one layer at a time on its runtime (Target.layer_scores)."""
    from targets.base import Target

    return type(target).layer_scores is not Target.layer_scores and variant.mode == "static"


def _score(model, name: str, reference: list[np.ndarray], got: list[np.ndarray], labels) -> "LayerScore":
    from compressor.sensitivity import LayerScore, accuracy, layer_kind, output_cosine, relative_error

    ref_acc, acc = accuracy(reference[0], labels), accuracy(got[0], labels)
    return LayerScore(name, layer_kind(model, name), output_cosine(reference, got), relative_error(reference, got),
                      None if acc is None else 100 * (ref_acc - acc))


def target_sensitivity(target: "Target", model: Model, variant: QuantVariant, calibration, base: "Artifact",
                       inputs: dict, outputs: list[np.ndarray], labels, layers: list[str]) -> list["LayerScore"]:
    """Ranking from the target's own lowering, one layer at a time (Target.layer_scores:
    for ONNX, ONNX Runtime's quantizer with `nodes_to_quantize`), scored on its runtime."""
    from compressor.sensitivity import LayerScore, accuracy, layer_kind, output_cosine, rank, relative_error

    got = target.layer_scores(base, variant, calibration, inputs, layers)
    ref_acc = accuracy(outputs[0], labels)
    scores = []
    for name in layers:
        outs = got.get(name)
        if outs is None:  # no node of its own in the graph (fused away): nothing to quantize
            scores.append(LayerScore(name, layer_kind(model, name), 1.0, 0.0, None if labels is None else 0.0))
            continue
        acc = accuracy(outs[0], labels)
        scores.append(LayerScore(name, layer_kind(model, name), output_cosine(outputs, outs),
                                 relative_error(outputs, outs), None if acc is None else 100 * (ref_acc - acc)))
    return rank(scores)

"""Int8 that holds: lower a variant, check it on the target's own runtime, and when it
misses the budget keep the fewest, most sensitive layers in float; when no float set
works, walk the target's other lowerings. Every try is recorded; only the chosen
artifact is published (attempts live in a scratch directory beside it), and a model
that cannot be lowered within the budget is refused with one line naming the worst
layer and the precisions that do hold.

The search itself is core algorithm (compressor/quant/search.py); this package backs its
probe with real exports and runs of the target's runtime (probe.py), chooses the layer
order and the lowerings from what the target says of itself (choose.py), and ends with
the published artifact or the refusal (report.py).

    outcome = lower_with_fallback(target, model, variant, options, calibration, base, reference, out, budget)
    result = export_with_fallback(...)   # the run's use: artifact or error, report section, notes
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from compressor.config.quantize import FallbackSpec, QuantVariant
from compressor.data import Dataset
from compressor.errors import CompressorError, RecipeError
from compressor.flows.fallback.choose import lowerings, order, target_sensitivity
from compressor.flows.fallback.probe import Prober
from compressor.flows.fallback.report import FallbackOutcome, FallbackRefused, LoweringRefused, finish, refuse
from compressor.fsutil import staging_dir
from compressor.model import Model
from compressor.quant.search import Lowering, search

if TYPE_CHECKING:
    from compressor.reference import Reference
    from compressor.sensitivity import LayerScore
    from targets.base import Artifact, Target

__all__ = ["FallbackOutcome", "FallbackRefused", "FallbackResult", "LoweringRefused", "export_with_fallback",
           "lower_with_fallback", "target_sensitivity"]


def lower_with_fallback(target: "Target", model: Model, variant: QuantVariant, options: dict, calibration,
                        base: "Artifact", reference: "Reference", out: Path, budget: FallbackSpec,
                        evaluation: Dataset | None = None, progress: Callable[[str], None] | None = None,
                        threads: int = 1, measure_latency: bool = True,
                        ranking: list["LayerScore"] | None = None) -> FallbackOutcome:
    """Export `variant` to `out` (a path without suffix) meeting `budget`, or refuse."""
    if variant.mode not in ("static", "dynamic"):
        raise RecipeError(f"{variant.label}: fallback re-lowers the float model, so it works for static and "
                          f"dynamic int8, not {variant.mode}")
    labels = evaluation.labels if evaluation is not None else None
    if budget.max_accuracy_drop is not None and (labels is None or reference.accuracy is None):
        raise RecipeError(f"{variant.label}: fallback.max_accuracy_drop needs labelled evaluation data "
                          "(data.evaluation); or budget on min_cosine only")
    say = progress or (lambda _msg: None)
    out = Path(out)
    with staging_dir(out.parent, out.name + ".fallback") as work:
        probe = Prober(target, model, variant, options, calibration, base, reference, evaluation, budget,
                       work, out.name, threads)
        say(f"{variant.label}: default lowering")
        first = probe([], Lowering("default"))
        if first.ok:
            return finish(probe, first, [], "default", ranking or [], "none needed", out, measure_latency)
        ranked, in_model_order, ranking, mode = order(model, target, variant, calibration, base, reference, labels,
                                                      budget, ranking, say)
        found = search(probe, lowerings(target, variant, base, model, budget), ranked, in_model_order, budget,
                       say=lambda msg: say(f"{variant.label}: {msg}"))
        if found is not None:
            result, low = found
            return finish(probe, result, result.float_layers, low.label, ranking, mode, out, measure_latency)
        return refuse(probe, variant, target, ranking, mode)


@dataclass
class FallbackResult:
    """What the run takes from a variant's fallback export."""

    artifact: "Artifact | None"            # None when refused
    error: CompressorError | None          # the refusal, to raise
    section: dict                          # the report row's "fallback" section
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)   # {title: {layer: 1 - cosine}}
    notes: list[str] = field(default_factory=list)                         # for the report row's notes


def export_with_fallback(target: "Target", model: Model, variant: QuantVariant, options: dict, calibration,
                         base: "Artifact", reference: "Reference", out: Path, evaluation: Dataset | None,
                         threads: int = 1, progress: Callable[[str], None] | None = None) -> FallbackResult:
    """The run's export of a variant with `fallback`: the artifact (or the refusal as an
    error), the report row's `fallback` section, the sensitivity bars and the row's notes."""
    import contextlib
    import io
    import warnings

    budget = variant.fallback
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # torch.ao and the quantizers warn at every prepare
        outcome = lower_with_fallback(target, model, variant, options, calibration, base, reference, out, budget,
                                      evaluation=evaluation, progress=progress, threads=threads)
    per_layer = {}
    if outcome.sensitivity:
        per_layer[f"{target.name}/{variant.label} sensitivity (1 - cosine, one {budget.granularity} int8)"] = {
            s.name: (1.0 - s.cosine) if np.isfinite(s.cosine) else 2.0 for s in outcome.sensitivity}
    section = outcome.to_json(budget)
    if outcome.refused:
        return FallbackResult(artifact=None, error=outcome.error(), section=section, per_layer=per_layer)
    notes = []
    if outcome.float_layers:
        notes.append(f"kept in float to meet the budget ({outcome.lowering} lowering): "
                     f"{', '.join(outcome.float_layers)}")
    elif outcome.lowering != "default":
        notes.append(f"met the budget with the {outcome.lowering} lowering")
    return FallbackResult(artifact=outcome.artifact, error=None, section=section, per_layer=per_layer, notes=notes)

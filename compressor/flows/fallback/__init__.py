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
from compressor.flows.fallback.probe import Clock, Prober
from compressor.flows.fallback.report import FallbackOutcome, FallbackRefused, LoweringRefused, finish, refuse
from compressor.fsutil import staging_dir
from compressor.model import Model
from compressor.quant.search import BudgetSpent, Lowering, SearchEnd, search

if TYPE_CHECKING:
    from compressor.reference import Reference
    from compressor.sensitivity import LayerScore
    from targets.base import Artifact, Target

__all__ = ["FallbackOutcome", "FallbackRefused", "FallbackResult", "LoweringRefused", "export_with_fallback",
           "lower_with_fallback", "target_sensitivity"]


SCREEN_ROUNDS = 3         # searches on the screen, each answer checked on a real artifact
RESERVE = 1.25            # the time kept for that check, in probes (as long as the slowest recent one)
MORE = 1.05               # after a screened answer failed on the artifact, its errors count this much more


def lower_with_fallback(target: "Target", model: Model, variant: QuantVariant, options: dict, calibration,
                        base: "Artifact", reference: "Reference", out: Path, budget: FallbackSpec,
                        evaluation: Dataset | None = None, progress: Callable[[str], None] | None = None,
                        threads: int = 1, measure_latency: bool = True,
                        ranking: list["LayerScore"] | None = None) -> FallbackOutcome:
    """Export `variant` to `out` (a path without suffix) meeting `budget`, or refuse,
    within budget.max_seconds."""
    if variant.mode not in ("static", "dynamic"):
        raise RecipeError(f"{variant.label}: fallback re-lowers the float model, so it works for static and "
                          f"dynamic int8, not {variant.mode}")
    labels = evaluation.labels if evaluation is not None else None
    if budget.max_accuracy_drop is not None and (labels is None or reference.accuracy is None):
        raise RecipeError(f"{variant.label}: fallback.max_accuracy_drop needs labelled evaluation data "
                          "(data.evaluation); or budget on min_cosine only")
    say = progress or (lambda _msg: None)
    out = Path(out)
    clock = Clock(budget.max_seconds)
    with staging_dir(out.parent, out.name + ".fallback") as work, target.probe_cache():
        probe = Prober(target, model, variant, options, calibration, base, reference, evaluation, budget,
                       work, out.name, threads, clock=clock, say=lambda msg: say(f"{variant.label}: {msg}"))
        say(f"{variant.label}: default lowering [{clock}]")
        first = probe([], Lowering("default"), force=True)
        if first.ok:
            return finish(probe, first, [], "default", ranking or [], "none needed", out, measure_latency)
        if probe.has_screen and budget.max_accuracy_drop is None:
            try:  # while the first probe's lowering is still at hand
                probe.screen([], Lowering("default"))
            except BudgetSpent:  # the first probe took the time: the search below stops and says so
                pass
        plan = order(model, target, variant, calibration, base, reference, labels, budget, ranking, say, probe,
                     first)
        end = _search(probe, lowerings(target, variant, base, model, budget), plan, budget,
                      lambda msg: say(f"{variant.label}: {msg}"), first)
        notes = [_stopped_note(end, budget, probe)] if end.stopped else []
        if end.result is not None and end.result.ok and not end.result.screened:
            return finish(probe, end.result, end.result.float_layers, end.lowering.label, plan.scores, plan.mode, out,
                          measure_latency, notes=notes)
        return refuse(probe, variant, target, plan.scores, plan.mode, stopped=end.stopped)


def _search(probe: Prober, lows: list[Lowering], plan, budget: FallbackSpec, say, first) -> SearchEnd:
    """The search, on the target's screen where it has one (each answer then checked on a
    real artifact; when the screen was optimistic, searched again with the bounds raised
    by what it missed), else on real artifacts."""
    try:
        plain = probe.screen([], Lowering("default")) if budget.max_accuracy_drop is None else None
    except BudgetSpent:
        plain = None
    if plain is None or plain.cosine is None or first.cosine is None:
        return search(probe, lows, plan.ranked, plan.in_model_order, budget, say=say, guess=plan.guess)
    optimism = _optimism(plain, first)
    say(f"searching on {probe.target.name}'s in-process screen (cosine {plain.cosine:.4f} where the artifact gave "
        f"{first.cosine:.4f}: its errors count {optimism[0]:.2f}x), each answer checked on a real artifact")
    end = SearchEnd()
    for _ in range(SCREEN_ROUNDS):
        # Room for the real check of what it finds, which then runs whatever the clock says:
        # a probe less the lowering the screen has already made (half a probe at least).
        expected = probe.expected_seconds()
        probe.reserve = RESERVE * max(expected - plain.seconds, expected / 2)
        end = search(probe.screened(optimism), lows, plan.ranked, plan.in_model_order, budget, say=say,
                     guess=plan.guess)
        probe.reserve = 0.0
        found = end.result
        if found is None or not found.screened:
            return end
        real = probe(found.float_layers, end.lowering, force=True)
        if real.ok:
            return SearchEnd(real, end.lowering, end.stopped)
        if end.stopped or real.cosine is None:
            return SearchEnd(stopped=end.stopped or f"the screen's answer failed on the artifact ({real.error})")
        seen = _optimism(found, real)
        optimism = (MORE * max(optimism[0], seen[0]), MORE * max(optimism[1], seen[1]))
        say(f"the artifact's error was {seen[0]:.2f}x the screen's (worst sample {seen[1]:.2f}x): searching again "
            f"with the screen's errors counted {optimism[0]:.2f}x ({optimism[1]:.2f}x)")
    return SearchEnd(stopped=end.stopped or f"{SCREEN_ROUNDS} screened answers failed on the artifact")


def _optimism(screened, real) -> tuple[float, float]:
    """How many times larger the artifact's error (1 - cosine) is than the screen's, for
    the mean and the worst sample (at least 1: a pessimistic screen is taken as it is)."""
    def ratio(s, r):
        if s is None or r is None or 1.0 - s <= 1e-9:
            return 1.0
        return max(1.0, (1.0 - r) / (1.0 - s))
    return ratio(screened.cosine, real.cosine), ratio(screened.cosine_min, real.cosine_min)


def _stopped_note(end: SearchEnd, budget: FallbackSpec, probe: Prober) -> str:
    what = (f"published the smallest float set found that meets the budget ({len(end.result.float_layers)} "
            "layer(s)); a longer search may keep fewer" if end.result is not None else "nothing met the budget")
    return (f"{end.stopped} (max_seconds={budget.max_seconds:g}, {probe.probes} probes, "
            f"{len(probe.screens)} screens): {what}")


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
        per_layer[f"{target.name}/{variant.label} sensitivity (1 - cosine, one block or {budget.granularity} int8)"] = {
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

"""How the fallback ends: the chosen artifact published under its final name (with the
latency each float layer costs), or a one-line refusal naming the worst layer and the
precisions that do hold; and the outcome's report section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.config.quantize import FallbackSpec, QuantVariant
from compressor.errors import CompressorError, FidelityError, UnsupportedOpError
from compressor.flows.fallback.choose import lowering_named
from compressor.flows.fallback.probe import Probe, Prober, latency_costs
from compressor.fsutil import publish
from compressor.quant.search import BudgetSpent, Lowering

if TYPE_CHECKING:
    from compressor.sensitivity import LayerScore
    from targets.base import Artifact, Target

LATENCY_AT_MOST = 8       # float sets larger than this get no per-layer latency cost


class FallbackRefused(FidelityError):
    """No lowering within the float-layer bound meets the variant's budget."""


class LoweringRefused(UnsupportedOpError):
    """Every lowering of the variant failed to export."""


@dataclass
class FallbackOutcome:
    artifact: "Artifact | None"
    fidelity: dict | None
    float_layers: list[str]
    lowering: str
    attempts: list[dict]
    refused: str | None
    sensitivity: list["LayerScore"] = field(default_factory=list)
    sensitivity_mode: str = "simulated"
    latency_ms: dict[str, float | None] = field(default_factory=dict)   # float layer -> ms it costs
    accuracy: float | None = None
    error_type: type[CompressorError] = FallbackRefused
    notes: list[str] = field(default_factory=list)
    screens: int = 0              # in-process screens the search ran besides the probes
    seconds: float = 0.0          # the fallback's wall time

    def error(self) -> CompressorError:
        return self.error_type(self.refused or "fallback refused")

    def to_json(self, budget: FallbackSpec) -> dict:
        scores = {s.name: s for s in self.sensitivity}
        return {
            "budget": budget.model_dump(), "lowering": self.lowering, "refused": self.refused,
            "sensitivity_mode": self.sensitivity_mode,
            "float_layers": [{"name": n, "kind": scores[n].kind if n in scores else None,
                              "cosine_alone": scores[n].cosine if n in scores else None,
                              "latency_ms": self.latency_ms.get(n)} for n in self.float_layers],
            "accuracy": self.accuracy, "attempts": self.attempts, "notes": self.notes,
            "screens": self.screens, "seconds": round(self.seconds, 1),
        }


def finish(probe: Prober, found: Probe, float_layers: list[str], lowering: str, ranking, mode: str,
           out: Path, measure_latency: bool, notes: list[str] | None = None) -> FallbackOutcome:
    from targets.base import Artifact

    latency: dict[str, float | None] = {}
    notes = list(notes or [])
    if measure_latency and float_layers:
        if len(float_layers) <= LATENCY_AT_MOST:
            low = (Lowering(lowering) if lowering == "default"
                   else lowering_named(probe.target, probe.variant, probe.base, probe.model, lowering))
            latency = latency_costs(probe, found, float_layers, low)
            if len(latency) < len(float_layers):
                notes.append(f"per-layer latency cost measured for {len(latency)} of {len(float_layers)} float "
                             f"layers within max_seconds={probe.budget.max_seconds:g}")
        else:
            notes.append(f"{len(float_layers)} float layers: per-layer latency cost is measured only up to "
                         f"{LATENCY_AT_MOST}")
    art = found.artifact
    dest = {f: out.parent / f.name for f in art.files}
    publish(dest)
    meta = {**art.meta, "fallback": {"lowering": lowering, "float_layers": list(float_layers)}}
    final = Artifact(target=art.target, label=probe.variant.label, precision=art.precision, path=dest[art.path],
                     extra_files=[dest[f] for f in art.extra_files], meta=meta)
    return FallbackOutcome(artifact=final, fidelity=found.fidelity.to_json(), float_layers=list(float_layers),
                           lowering=lowering, attempts=probe.attempts, refused=None, sensitivity=list(ranking),
                           sensitivity_mode=mode, latency_ms=latency, accuracy=found.accuracy, notes=notes,
                           screens=len(probe.screens), seconds=probe.clock.elapsed())


def refuse(probe: Prober, variant: QuantVariant, target: "Target", ranking, mode: str,
           stopped: str | None = None) -> FallbackOutcome:
    bound = probe.budget.max_float_layers
    crashed = [a for a in probe.cache.values() if a.crashed is not None]
    scored = [a for a in probe.cache.values() if a.cosine is not None and not a.lowering.startswith("mode=")
              and (bound is None or len(a.float_layers) <= bound)]
    all_crashed = crashed and not scored
    budget = probe.budget
    if all_crashed:
        cause = f"every {target.name} lowering of {variant.label} failed to export ({crashed[0].error})"
    else:
        best = max(scored, key=lambda a: a.cosine, default=None)
        worst = ranking[0] if ranking else None
        cause = (f"no {target.name} lowering of {variant.label} meets the budget ({_budget_text(budget)})"
                 + (f" (best: cosine {best.cosine:.4f}" + (f", worst sample {best.cosine_min:.4f}"
                                                           if best.cosine_min is not None else "")
                    + f" with {best.lowering}, {len(best.float_layers)} float layer(s))" if best else "")
                 + (f"; most sensitive of the {len(ranking)} blocks and layers scored: {worst.name!r} "
                    f"({worst.kind}, cosine {worst.cosine:.4f} alone)" if worst else ""))
    if stopped:
        cause += (f"; {stopped} after {probe.probes} probes and {len(probe.screens)} screens in "
                  f"{probe.clock.elapsed():.0f} s: raise fallback.max_seconds (now {budget.max_seconds:g}) "
                  "or loosen the budget")
    works = _precisions_that_work(probe, variant, target)
    msg = (f"{cause}; " + (f"within max_float_layers={bound}; " if bound is not None else "")
           + (f"precisions that meet it: {', '.join(works)}" if works
              else "no other precision of this target meets it"))
    return FallbackOutcome(artifact=None, fidelity=None, float_layers=[], lowering="", attempts=probe.attempts,
                           refused=msg, sensitivity=list(ranking), sensitivity_mode=mode,
                           error_type=LoweringRefused if all_crashed else FallbackRefused,
                           screens=len(probe.screens), seconds=probe.clock.elapsed())


def _budget_text(budget: FallbackSpec) -> str:
    parts = []
    if budget.min_cosine is not None:
        parts.append(f"cosine >= {budget.min_cosine:g}")
    if budget.min_worst_cosine is not None:
        parts.append(f"worst-sample cosine >= {budget.min_worst_cosine:g}")
    if budget.max_accuracy_drop is not None:
        parts.append(f"accuracy drop <= {budget.max_accuracy_drop:g} points")
    return ", ".join(parts)


def _precisions_that_work(probe: Prober, variant: QuantVariant, target: "Target") -> list[str]:
    """The target's other precisions that meet the budget, as far as the time left allows
    (one export each, forced when none of the search's was slower than the time left)."""
    works, untried, tries = [], [], []
    if "dynamic" in target.modes and variant.mode != "dynamic":
        tries.append(("int8 dynamic", Lowering("mode=dynamic", {"mode": "dynamic", "per_channel": True})))
    if "fp16" in target.modes:
        tries.append(("fp16", Lowering("mode=fp16", {"mode": "fp16"})))
    for label, low in tries:
        try:
            if probe([], low).ok:
                works.append(label)
        except BudgetSpent:
            untried.append(label)
    works.append("fp32")  # the base artifact passed validation before the fallback ran
    if untried:
        works[-1] += f" ({', '.join(untried)} not tried: time budget spent)"
    return works

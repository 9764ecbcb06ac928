"""The fallback's search: the fewest layers (most sensitive first) to keep in float so
that a lowering meets its budget, over a probe callable

    probe(float_layers, lowering) -> result with .ok, .crashed, .float_layers and .cosine

that exports and checks one (float set, lowering); a probe caches its results, so a set
asked twice costs one export, and raises BudgetSpent when the time budget leaves no room
for another export. Doubling (from a first guess) then bisection over the ranking's
prefixes, a pruning pass, and when the ranking singles out no short set, the shortest
run of consecutive layers in model order. When the time runs out the search ends with
the smallest float set it found that meets the budget, if any, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from compressor.config.quantize import FallbackSpec

PRUNE_AT_MOST = 12        # float sets larger than this skip the one-by-one pruning pass


class BudgetSpent(Exception):
    """The fallback's time budget (FallbackSpec.max_seconds) leaves no room for the next
    export; raised by a probe before it starts one."""


@dataclass
class Lowering:
    """One lowering of a quantization intent: what it changes in the variant and in the
    target's options. Targets list their alternatives as these (Target.alternative_lowerings)."""

    label: str
    variant: dict[str, Any] = field(default_factory=dict)   # QuantVariant fields changed
    options: dict[str, Any] = field(default_factory=dict)   # target options changed


# probe(float_layers, lowering) -> a result with .ok, .crashed (an exception type or None),
# .float_layers and .cosine
Probe = Callable[[list[str], Lowering], Any]


@dataclass
class SearchEnd:
    """How the search ended: the probe result it chose (None: nothing meets the budget)
    and its lowering, and, when the time budget stopped it, what was left undone."""

    result: Any = None
    lowering: Lowering | None = None
    stopped: str | None = None      # e.g. "time budget spent during the pruning pass"


def meets(budget: FallbackSpec, cosine: float, accuracy: float | None, reference_accuracy: float | None,
          worst: float | None = None, optimism: tuple[float, float] = (1.0, 1.0)) -> tuple[bool, str | None]:
    """Whether a lowering's mean output cosine, its worst sample's cosine and its accuracy
    (against the float model's) hold `budget`, and why not. `optimism` (mean, worst): how
    many times larger the real error (1 - cosine) is than the one measured (a screen that
    misses some of the target's rounding); the cosines are judged as 1 - optimism * error."""
    if not np.isfinite(cosine) or (worst is not None and not np.isfinite(worst)):
        return False, "non-finite outputs"
    if optimism != (1.0, 1.0):
        cosine = 1.0 - optimism[0] * (1.0 - cosine)
        worst = None if worst is None else 1.0 - optimism[1] * (1.0 - worst)
    judged = " (as the artifact would give it)" if optimism != (1.0, 1.0) else ""
    if budget.min_cosine is not None and cosine < budget.min_cosine:
        return False, f"cosine {cosine:.5f}{judged} < {budget.min_cosine:g}"
    if budget.min_worst_cosine is not None and worst is not None and worst < budget.min_worst_cosine:
        return False, f"worst-sample cosine {worst:.5f}{judged} < {budget.min_worst_cosine:g}"
    if budget.max_accuracy_drop is not None and accuracy is not None:
        drop = 100 * (reference_accuracy - accuracy)
        if drop > budget.max_accuracy_drop:
            return False, f"accuracy drop {drop:.2f} points > {budget.max_accuracy_drop:g}"
    return True, None


class _Best:
    """The smallest float set met so far (fewest layers, then the highest cosine)."""

    def __init__(self, probe: Probe) -> None:
        self.probe, self.result, self.lowering = probe, None, None

    def __call__(self, layers: list[str], low: Lowering):
        res = self.probe(layers, low)
        if res.ok and (self.result is None or _better(res, self.result)):
            self.result, self.lowering = res, low
        return res


def _better(a, b) -> bool:
    ca, cb = getattr(a, "cosine", None) or 0.0, getattr(b, "cosine", None) or 0.0
    return (len(a.float_layers), -ca) < (len(b.float_layers), -cb)


def search(probe: Probe, lowerings: Sequence[Lowering], order: list[str], in_model_order: list[str],
           budget: FallbackSpec, say: Callable[[str], None] | None = None, guess: int | None = None,
           skip_plain: bool = True) -> SearchEnd:
    """The first lowering, in the order given, with a float set that meets the budget, and
    that probe's result (SearchEnd.result None when none has one). The first lowering's
    plain probe is taken as already made (the caller tried it before ranking the layers)
    unless `skip_plain` is false. `guess`: how many leading layers the ranking's scores
    predict it takes (where the doubling starts). When the probe raises BudgetSpent, the
    end holds the smallest set met so far, if any, and says where it stopped."""
    say = say or (lambda _msg: None)
    best = _Best(probe)
    stage = "the float-layer search"
    try:
        for i, low in enumerate(lowerings):
            stage = f"the float-layer search ({low.label})"
            say(f"{low.label}, float-layer search over {len(order)} ranked layers")
            found = fewest_leading(best, low, order, budget, skip_plain=skip_plain and i == 0,
                                   guess=guess if i == 0 else None)
            if found is None or len(found.float_layers) > PRUNE_AT_MOST:
                # The ranking did not single out a few layers (each alone is harmless, or the
                # simulation misses the target's own kernels): look for one short run of
                # consecutive layers instead, by real exports.
                stage = f"the window search ({low.label})"
                say(f"{low.label}, window search in model order")
                window = shortest_window(best, low, in_model_order, budget)
                if window is not None and (found is None or len(window.float_layers) < len(found.float_layers)):
                    found = window
            if found is not None:
                return SearchEnd(found, low)
    except BudgetSpent:
        return SearchEnd(best.result, best.lowering, stopped=f"time budget spent during {stage}")
    return SearchEnd()


def fewest_leading(probe: Probe, low: Lowering, order: list[str], budget: FallbackSpec,
                   skip_plain: bool = False, guess: int | None = None):
    """The fewest leading layers of `order` that meet the budget (doubling from `guess`,
    then bisection), then drop any of them the budget holds without (as far as the time
    budget allows: what is met stays met)."""
    limit = len(order) if budget.max_float_layers is None else min(len(order), budget.max_float_layers)
    if not skip_plain:
        plain = probe([], low)
        if plain.ok:
            return plain
        if plain.crashed is not None and limit == 0:
            return None
    if limit == 0:
        return None
    lo, hi, k = 0, None, max(1, min(guess or 1, limit))
    while hi is None:
        k = min(k, limit)
        if probe(order[:k], low).ok:
            hi = k
        elif k == limit:
            return None
        else:
            lo, k = k, 2 * k
    while hi - lo > 1:  # invariant: lo leading layers fail, hi meet the budget
        mid = (lo + hi) // 2
        if probe(order[:mid], low).ok:
            hi = mid
        else:
            lo = mid
    chosen = prune(probe, low, list(order[:hi]), least_first=True)  # least sensitive tried first
    return probe(chosen, low)


def prune(probe: Probe, low: Lowering, chosen: list[str], least_first: bool = False) -> list[str]:
    """Drop, one at a time, each layer of a short float set the budget holds without
    (known failures come from the probe cache). Stops, keeping what it has, when the
    time budget runs out."""
    if not 1 < len(chosen) <= PRUNE_AT_MOST:
        return chosen
    try:
        for name in (list(reversed(chosen)) if least_first else list(chosen)):
            trial = [n for n in chosen if n != name]
            if probe(trial, low).ok:
                chosen = trial
    except BudgetSpent:
        pass
    return chosen


def shortest_window(probe: Probe, low: Lowering, names: list[str], budget: FallbackSpec):
    """The shortest run names[a:b] of consecutive layers (model order) whose float
    version meets the budget, found by two bisections (the latest start a whose suffix
    meets it, then the earliest end b); then, when short, any layer the budget holds
    without is dropped. Int8 error that builds up in one region of the network (a stage
    whose layers each look harmless alone) is found this way in about 2 log2(n) exports."""
    limit = len(names) if budget.max_float_layers is None else budget.max_float_layers
    if len(names) < 2 or limit == 0 or not probe(names, low).ok:
        return None
    lo, hi = 0, len(names)          # names[lo:] meets the budget; names[hi:] (empty) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(names[mid:], low).ok:
            lo = mid
        else:
            hi = mid
    start = lo
    lo, hi = start, len(names)      # names[start:lo] does not meet it; names[start:hi] does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(names[start:mid], low).ok:
            hi = mid
        else:
            lo = mid
    chosen = prune(probe, low, list(names[start:hi]))
    if len(chosen) > limit:
        return None
    return probe(chosen, low)

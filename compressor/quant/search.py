"""The fallback's search: the fewest layers (most sensitive first) to keep in float so
that a lowering meets its budget, over a probe callable

    probe(float_layers, lowering) -> result with .ok, .crashed and .float_layers

that exports and checks one (float set, lowering); a probe caches its results, so a set
asked twice costs one export. Doubling then bisection over the ranking's prefixes, a
pruning pass, and when the ranking singles out no short set, the shortest run of
consecutive layers in model order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from compressor.config.quantize import FallbackSpec

PRUNE_AT_MOST = 12        # float sets larger than this skip the one-by-one pruning pass


@dataclass
class Lowering:
    """One lowering of a quantization intent: what it changes in the variant and in the
    target's options. Targets list their alternatives as these (Target.alternative_lowerings)."""

    label: str
    variant: dict[str, Any] = field(default_factory=dict)   # QuantVariant fields changed
    options: dict[str, Any] = field(default_factory=dict)   # target options changed


# probe(float_layers, lowering) -> a result with .ok, .crashed (an exception type or None)
# and .float_layers
Probe = Callable[[list[str], Lowering], Any]


def meets(budget: FallbackSpec, cosine: float, accuracy: float | None,
          reference_accuracy: float | None) -> tuple[bool, str | None]:
    """Whether a lowering's output cosine (and accuracy, against the float model's) holds
    `budget`, and why not."""
    if not np.isfinite(cosine):
        return False, "non-finite outputs"
    if budget.min_cosine is not None and cosine < budget.min_cosine:
        return False, f"cosine {cosine:.5f} < {budget.min_cosine:g}"
    if budget.max_accuracy_drop is not None and accuracy is not None:
        drop = 100 * (reference_accuracy - accuracy)
        if drop > budget.max_accuracy_drop:
            return False, f"accuracy drop {drop:.2f} points > {budget.max_accuracy_drop:g}"
    return True, None


def search(probe: Probe, lowerings: Sequence[Lowering], order: list[str], in_model_order: list[str],
           budget: FallbackSpec, say: Callable[[str], None] | None = None) -> tuple[Any, Lowering] | None:
    """The first lowering, in the order given, with a float set that meets the budget, and
    that probe's result; None when none has one. The first lowering's plain probe is taken
    as already made (the caller tried it before ranking the layers)."""
    say = say or (lambda _msg: None)
    for i, low in enumerate(lowerings):
        say(f"{low.label}, float-layer search")
        found = fewest_leading(probe, low, order, budget, skip_plain=i == 0)
        if found is None or len(found.float_layers) > PRUNE_AT_MOST:
            # The ranking did not single out a few layers (each alone is harmless, or the
            # simulation misses the target's own kernels): look for one short run of
            # consecutive layers instead, by real exports.
            say(f"{low.label}, window search in model order")
            window = shortest_window(probe, low, in_model_order, budget)
            if window is not None and (found is None or len(window.float_layers) < len(found.float_layers)):
                found = window
        if found is not None:
            return found, low
    return None


def fewest_leading(probe: Probe, low: Lowering, order: list[str], budget: FallbackSpec,
                   skip_plain: bool = False):
    """The fewest leading layers of `order` that meet the budget (doubling, then
    bisection), then drop any of them the budget holds without."""
    limit = len(order) if budget.max_float_layers is None else min(len(order), budget.max_float_layers)
    if not skip_plain:
        plain = probe([], low)
        if plain.ok:
            return plain
        if plain.crashed is not None and limit == 0:
            return None
    if limit == 0:
        return None
    lo, hi, k = 0, None, 1
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
    (known failures come from the probe cache)."""
    if not 1 < len(chosen) <= PRUNE_AT_MOST:
        return chosen
    for name in (list(reversed(chosen)) if least_first else list(chosen)):
        trial = [n for n in chosen if n != name]
        if probe(trial, low).ok:
            chosen = trial
    return chosen


def shortest_window(probe: Probe, low: Lowering, names: list[str], budget: FallbackSpec):
    """The shortest run names[a:b] of consecutive layers (model order) whose float
    version meets the budget, found by two bisections (the latest start a whose suffix
    meets it, then the earliest end b); then, when short, any layer the budget holds
    without is dropped. Int8 error that builds up in one region of the network (a stage
    whose layers each look harmless alone) is found this way in about 2 log2(n) exports."""
    limit = len(names) if budget.max_float_layers is None else budget.max_float_layers
    if len(names) < 2 or not probe(names, low).ok:
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

"""Latency-aware choice of per-group channel counts.

FLOPs are a poor guide to latency on a CPU runtime: a depthwise conv or a stem conv is
memory-bound, channel counts off the kernels' vector block fall off the fast path, and
deep 3x3 convs at small resolution are bound by their weights. So the search asks the
target runtime: `layer_ms(LayerSpec)` times one layer of a given shape there (cached),
and the model's latency is estimated as the sum over its layers.

Greedy: repeatedly take the step (one `round_to`-sized chunk off one group) with the
largest measured latency saving per unit of importance removed, until the MACs or the
latency target is met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from compressor.prune.structured import ChannelGroup

STEPS_PER_GROUP = 16  # a group is pruned in chunks of about 1/16 of its channels


@dataclass(frozen=True)
class LayerSpec:
    """One conv or linear layer at batch 1: what a runtime needs to time it alone."""

    kind: str                      # "conv" | "linear"
    cin: int
    cout: int
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    in_hw: tuple[int, ...] = ()    # spatial size of the input
    out_hw: tuple[int, ...] = ()

    @property
    def macs(self) -> int:
        if self.kind == "linear":
            return self.cin * self.cout
        k = 1
        for d in (*self.kernel, *self.out_hw):
            k *= d
        return self.cout * (self.cin // self.groups) * k


@dataclass
class _Layer:
    name: str
    spec: LayerSpec
    out_group: int | None
    in_group: int | None
    depthwise: bool


def record_layers(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, LayerSpec]:
    """Every conv2d/linear layer that runs, with its input and output spatial sizes."""
    specs, hooks = {}, []
    for name, mod in module.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            def hook(m, args, out, name=name):
                if isinstance(m, nn.Linear):
                    specs[name] = LayerSpec("linear", m.in_features, m.out_features)
                else:
                    pad = m.padding if not isinstance(m.padding, str) else \
                        tuple(0 if m.padding == "valid" else d * (k // 2) for k, d in zip(m.kernel_size, m.dilation))
                    specs[name] = LayerSpec("conv", m.in_channels, m.out_channels, tuple(m.kernel_size),
                                            tuple(m.stride), tuple(pad), tuple(m.dilation), m.groups,
                                            tuple(args[0].shape[2:]), tuple(out.shape[2:]))
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return specs


class Allocation:
    """Channel counts per group and what they cost, by layer."""

    def __init__(self, specs: dict[str, LayerSpec], groups: list[ChannelGroup],
                 layer_ms: Callable[[LayerSpec], float]) -> None:
        self.groups = groups
        self.layer_ms = layer_ms
        out_of = {n: g.index for g in groups for n in g.out_layers}
        in_of = {n: g.index for g in groups for n in g.in_layers}
        self.layers = [_Layer(n, s, out_of.get(n), in_of.get(n), s.kind == "conv" and s.groups == s.cin > 1)
                       for n, s in specs.items()]
        self.touching = {g.index: [l for l in self.layers if g.index in (l.out_group, l.in_group)] for g in groups}

    def spec(self, layer: _Layer, keep: dict[int, int]) -> LayerSpec:
        s = layer.spec
        cout = keep[layer.out_group] if layer.out_group is not None else s.cout
        cin = keep[layer.in_group] if layer.in_group is not None else s.cin
        if layer.depthwise:  # in, out and groups are one set of channels
            cin = cout = min(cin, cout)
            return LayerSpec(**{**s.__dict__, "cin": cin, "cout": cout, "groups": cin})
        return LayerSpec(**{**s.__dict__, "cin": cin, "cout": cout})

    def macs(self, keep: dict[int, int]) -> int:
        return sum(self.spec(l, keep).macs for l in self.layers)

    def latency(self, keep: dict[int, int], layers: list[_Layer] | None = None) -> float:
        return sum(self.layer_ms(self.spec(l, keep)) for l in (self.layers if layers is None else layers))


def greedy(alloc: Allocation, scores: dict[int, torch.Tensor], round_to: int, max_ratio: float,
           macs_ratio: float | None, latency_ratio: float | None, skip_depthwise: bool,
           fixed: dict[int, int] | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Choose `keep` per group; returns {"keep", "macs", "latency_ms", "dense_latency_ms", "steps"}."""
    groups = alloc.groups
    keep = {g.index: g.channels for g in groups}
    keep.update(fixed or {})
    dense_macs = alloc.macs({g.index: g.channels for g in groups})
    dense_ms = alloc.latency({g.index: g.channels for g in groups})
    sorted_scores = {i: torch.sort(s).values for i, s in scores.items()}

    def done() -> bool:
        if macs_ratio is not None:
            return alloc.macs(keep) <= macs_ratio * dense_macs
        return alloc.latency(keep) <= latency_ratio * dense_ms

    def chunk(g: ChannelGroup) -> int:
        return max(round_to, -(-g.channels // STEPS_PER_GROUP // round_to) * round_to)

    def floor(g: ChannelGroup) -> int:
        return max(round_to, -(-int(g.channels * (1 - max_ratio)) // round_to) * round_to)

    steps = 0
    movable = [g for g in groups if g.channels > round_to and g.index not in (fixed or {})]
    # Depthwise groups last: their latency is memory-bound, so a chunk of them buys little.
    tiers = [[g for g in movable if not g.depthwise], [g for g in movable if g.depthwise]] if skip_depthwise \
        else [movable]
    for tier in tiers:
        while not done():
            best, best_score = None, 0.0
            for g in tier:
                new = keep[g.index] - chunk(g)
                new = new - new % round_to
                if new < floor(g):
                    continue
                touched = alloc.touching[g.index]
                trial = {**keep, g.index: new}
                saved = alloc.latency(keep, touched) - alloc.latency(trial, touched)
                # Importance removed: the weakest channels still kept, as a share of the group.
                lost = float(sorted_scores[g.index][g.channels - keep[g.index]:g.channels - new].sum())
                score = saved / (lost + 1e-4)
                if best is None or score > best_score:
                    best, best_score = (g, new), score
            if best is None:
                break  # every group is at its floor
            keep[best[0].index] = best[1]
            steps += 1
            if progress is not None:
                progress(f"latency search: {alloc.macs(keep) / dense_macs:.2f} of the MACs")
        if done():
            break
    return {"keep": keep, "macs": alloc.macs(keep), "dense_macs": dense_macs,
            "latency_ms": alloc.latency(keep), "dense_latency_ms": dense_ms, "steps": steps,
            "met": done()}

"""Outlier-aware int8 of a transformer's linear layers on the torch-based targets
(TorchScript, TFLite through litert-torch): what compressor.quant.outliers decides
(smoothing, float outlier channels, per-inference ranges), built into the float module
before a target's quantizer sees it.

`plan_linears` finds the nn.Linear layers, groups those that read the same tensor (Q, K
and V), and collects each group's input over the calibration data with forward hooks;
`apply` replaces each planned layer by an `OutlierLinear`. Both leave the module's
outputs as they were in float (x / s times W diag(s) is x W; a channel taken out of the
int8 product comes back on a float side path); only what int8 then does to them changes.
The caller's module is never modified: `apply` works on a copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compressor.quant.outliers import Activations, GroupPlan, plan_group

ROWS_PER_INPUT = 32   # rows of each calibration input kept for the simulation
STAT_BATCH = 8
# MiniLM's FFN output projections: 40-220x; every other layer's output under 9x.
WIDE_OUTPUT_RATIO = 16.0


class OutlierLinear(nn.Module):
    """y = linear(x * inv_scale) + x[..., channels] @ side_weight.T: `linear` holds
    W diag(s) with the float channels' columns zeroed and is what int8 lowers; the
    input scaling and the side path are float operations of this module's own forward."""

    def __init__(self, linear: nn.Linear, scales: np.ndarray | None, channels: np.ndarray) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        c = w.shape[1]
        s = torch.ones(c) if scales is None else torch.from_numpy(np.asarray(scales, np.float32))
        inv = 1.0 / s
        idx = torch.from_numpy(np.asarray(channels, np.int64))
        inv[idx] = 0.0
        self.linear = nn.Linear(c, w.shape[0], bias=linear.bias is not None)
        with torch.no_grad():
            scaled = w * s[None, :]
            scaled[:, idx] = 0.0
            self.linear.weight.copy_(scaled)
            if linear.bias is not None:
                self.linear.bias.copy_(linear.bias.detach())
        self.register_buffer("inv_scale", inv)
        self.register_buffer("channels", idx)
        self.register_buffer("side_weight", w[:, idx].t().contiguous())  # [k, O]
        self.has_side = len(idx) > 0  # decided here: a trace keeps no Python branch on a tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x * self.inv_scale)
        if self.has_side:
            y = y + torch.matmul(torch.index_select(x, -1, self.channels), self.side_weight)
        return y


@dataclass
class LinearPlan:
    groups: list[list[str]]                 # Linear names reading one tensor
    plans: list[GroupPlan]
    ranges: list[tuple[np.ndarray, np.ndarray]]  # each group input's channel min and max, calibration-wide
    layer_norm_fed: int                     # groups whose input a LayerNorm made
    output_absmax: dict[str, np.ndarray]    # each Linear's output, max |y| per channel

    def wide_outputs(self, ratio: float = WIDE_OUTPUT_RATIO) -> set[str]:
        """Linear layers whose outputs have channels `ratio` times the median channel's
        range: the FFN output projections that write a trained encoder's outlier hidden
        dimensions into the residual stream. One int8 scale on such an output leaves the
        ordinary channels a few levels."""
        return {n for n, a in self.output_absmax.items() if np.median(a) > 0 and a.max() > ratio * np.median(a)}

    def input_range(self, name: str) -> tuple[float, float]:
        """The calibrated range of what the int8 product of layer `name` reads: its input
        times the plan's 1/s, the float channels left out (zero there)."""
        for g, p, (lo, hi) in zip(self.groups, self.plans, self.ranges):
            if name in g:
                inv = np.ones_like(lo) if p.scales is None else 1.0 / p.scales
                keep = np.ones(len(lo), dtype=bool)
                keep[p.float_channels] = False
                return float(min((lo * inv)[keep].min(), 0.0)), float(max((hi * inv)[keep].max(), 0.0))
        raise KeyError(name)

    def plan_of(self, name: str) -> GroupPlan | None:
        for g, p in zip(self.groups, self.plans):
            if name in g:
                return p
        return None

    def notes(self, dynamic_mode: bool) -> dict:
        smoothed = [p for p in self.plans if p.scales is not None]
        return {"outliers": {
            "linear_groups": len(self.groups), "layer_norm_fed_groups": self.layer_norm_fed,
            "smoothed_groups": len(smoothed), "alphas": sorted({p.alpha for p in smoothed}),
            "float_outlier_channels": int(sum(len(p.float_channels) for p in self.plans)),
            "per_inference_range_layers": 0 if dynamic_mode else
            sum(len(g) for g, p in zip(self.groups, self.plans) if p.dynamic),
            "simulated_error": {"plain": float(np.mean([p.error_before for p in self.plans])),
                                "planned": float(np.mean([p.error_after for p in self.plans]))}}}


def plan_linears(module: nn.Module, names: list[str], calibration, samples: int, dynamic_mode: bool,
                 alpha: float | None = None, rewrites: bool = True) -> LinearPlan | None:
    """The plan for every one of `module`'s Linear layers (None when no Linear reads a
    LayerNorm's output: not a transformer, nothing here for it); the layers a recipe keeps
    float are left out when it is applied, so that the fallback's probes, each keeping
    another set float, share one plan. `rewrites` False: the statistics only, every group
    plain (outliers: linear)."""
    linears = {n: m for n, m in module.named_modules() if isinstance(m, nn.Linear)}
    norms = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    if not linears or not norms or calibration is None or not len(calibration):
        return None
    data = calibration.take(samples)
    key = _fingerprint(module, data, (names, dynamic_mode, alpha, rewrites))
    if key in _PLANS:
        return _PLANS[key]
    reads: dict[str, int] = {}          # Linear -> group index, from the first batch
    groups: list[list[str]] = []
    fed_by_norm: set[int] = set()
    collectors: list[_Collector] = []
    norm_outputs: set[int] = set()
    first = {"batch": True}
    seen: dict[int, int] = {}           # id(input tensor) -> group, within one forward
    alive: list[torch.Tensor] = []      # held through the forward: no id is reused

    def on_norm(_m, _inp, out):
        norm_outputs.add(id(out))
        alive.append(out)

    def on_linear(name):
        def hook(_m, inp):
            x = inp[0]
            if first["batch"]:
                g = seen.get(id(x))
                if g is None:
                    g = seen[id(x)] = len(groups)
                    groups.append([])
                    collectors.append(_Collector())
                    if id(x) in norm_outputs:
                        fed_by_norm.add(g)
                groups[g].append(name)
                reads[name] = g
                alive.append(x)
            g = reads.get(name)
            if g is not None and groups[g][0] == name:  # each group's input once per forward
                collectors[g].add(x)
        return hook

    output_absmax: dict[str, np.ndarray] = {}

    def on_output(name):
        def hook(_m, _inp, out):
            a = out.detach().abs().reshape(-1, out.shape[-1]).amax(0).float().numpy()
            output_absmax[name] = np.maximum(output_absmax[name], a) if name in output_absmax else a
        return hook

    handles = [m.register_forward_hook(on_norm) for m in norms]
    handles += [m.register_forward_pre_hook(on_linear(n)) for n, m in linears.items()]
    handles += [m.register_forward_hook(on_output(n)) for n, m in linears.items()]
    try:
        with torch.no_grad():
            for batch in data.batches(STAT_BATCH):
                module(*(torch.from_numpy(np.ascontiguousarray(batch[n])) for n in names))
                first["batch"] = False
                seen.clear()
                norm_outputs.clear()
                alive.clear()
    finally:
        for h in handles:
            h.remove()
    if not fed_by_norm:
        _PLANS[key] = None
        return None
    plans, ranges = [], []
    for g, members in enumerate(groups):
        weights = [linears[n].weight.detach().float().t().numpy() for n in members]  # [C, O]
        acts = collectors[g].activations()
        plans.append(plan_group(acts, weights, dynamic_mode, alpha=alpha) if rewrites else
                     GroupPlan(dynamic=dynamic_mode))
        ranges.append((acts.cmin, acts.cmax))
    _PLANS.clear()  # one model at a time: the fallback's probes ask for the same plan again
    _PLANS[key] = LinearPlan(groups, plans, ranges, len(fed_by_norm), output_absmax)
    return _PLANS[key]


_PLANS: dict[str, LinearPlan | None] = {}


def _fingerprint(module: nn.Module, data, extra) -> str:
    """The weights, the calibration inputs and the options a plan was made from."""
    import hashlib

    h = hashlib.sha256(repr(extra).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        try:
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        except (RuntimeError, TypeError):  # a dtype without a byte view
            h.update(repr(t).encode())
    for name in sorted(data.inputs):
        arr = np.ascontiguousarray(data.inputs[name])
        h.update(name.encode() + str(arr.shape).encode() + arr.tobytes())
    return h.hexdigest()


class _Collector:
    """One group's input, streamed: per input (a sequence) its channel ranges and a
    seeded sample of its rows."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.rows: list[np.ndarray] = []
        self.tags: list[np.ndarray] = []
        self.smin: list[np.ndarray] = []
        self.smax: list[np.ndarray] = []

    def add(self, x: torch.Tensor) -> None:
        a = x.detach().float().numpy()
        per_input = a if a.ndim >= 3 else a[None]
        for sample in per_input:
            flat = sample.reshape(-1, sample.shape[-1])
            k = len(self.smin)
            self.smin.append(flat.min(axis=0))
            self.smax.append(flat.max(axis=0))
            take = flat if len(flat) <= ROWS_PER_INPUT else flat[self.rng.choice(len(flat), ROWS_PER_INPUT,
                                                                                  replace=False)]
            self.rows.append(take.copy())
            self.tags.append(np.full(len(take), k, dtype=np.int64))

    def activations(self) -> Activations:
        smin, smax = np.stack(self.smin), np.stack(self.smax)
        return Activations(np.concatenate(self.rows), np.concatenate(self.tags), smin.min(axis=0), smax.max(axis=0),
                           smin, smax)


def kept_float(module: nn.Module, v, target: str) -> frozenset[str]:
    """Linear layers the recipe keeps float: named, inside a named module, or of a kind
    named in exclude_ops."""
    from compressor.layers import module_types

    kinds = tuple(module_types(module, v.exclude_ops, target))
    owners = [n.removesuffix(":ops") for n in v.exclude if not n.endswith(":ops")]
    out = set()
    for name, m in module.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        if (kinds and isinstance(m, kinds)) or any(name == o or name.startswith(o + ".") for o in owners if o):
            out.add(name)
    return frozenset(out)


def apply(module: nn.Module, plan: LinearPlan,
          skip: frozenset[str] = frozenset()) -> tuple[nn.Module, dict[str, str]]:
    """A copy of `module` with each smoothed or split Linear replaced by an OutlierLinear,
    and {name of a module int8 should lower as a Linear layer (an OutlierLinear's inner
    `.linear`, or the Linear itself): the planned Linear's name}. The layers in `skip`
    stay as they are, float."""
    out = copy.deepcopy(module)
    targets: dict[str, str] = {}
    for members, p in zip(plan.groups, plan.plans):
        for name in members:
            if name in skip:
                continue
            if p.scales is None and not len(p.float_channels):
                targets[name] = name
                continue
            parent, _, leaf = name.rpartition(".")
            owner = out.get_submodule(parent) if parent else out
            setattr(owner, leaf, OutlierLinear(getattr(owner, leaf), p.scales, p.float_channels))
            targets[f"{name}.linear"] = name
    return out, targets

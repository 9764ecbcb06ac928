"""Channel pruning on Torch-Pruning's dependency graph.

A group is every layer whose channels are tied together (a conv, its BatchNorm, the
convs that read it, the other branch of a residual add, the depthwise conv in between);
removing channel i removes it from all of them, so the pruned model stays consistent.
We choose per group how many channels to keep (a multiple of `round_to`), and which
ones by importance; Torch-Pruning does the surgery.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from compressor.errors import UnsupportedOpError


@dataclass
class ChannelGroup:
    """One group of coupled channels, rooted at the conv or linear layer that owns them."""

    index: int
    root: str
    channels: int
    out_layers: list[str] = field(default_factory=list)   # layers whose outputs lose channels
    in_layers: list[str] = field(default_factory=list)    # layers whose inputs lose them
    depthwise: bool = False
    keep: int = 0


def build_graph(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]):
    """Trace `module` into a dependency graph, or name the module that breaks the trace."""
    import torch_pruning as tp

    ran, cut, stack = [], [], []
    hooks = _trace_hooks(module, ran, cut, stack)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = tp.DependencyGraph().build_dependency(module, example_inputs=list(example_inputs),
                                                          verbose=False)
    except Exception as e:
        where = f"module {stack[-1][0]!r} ({stack[-1][1]})" if stack else "the model"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UnsupportedOpError(f"structured pruning cannot trace the model: {where} failed while "
                                 f"Torch-Pruning traced it ({type(e).__name__}: {first}); use unstructured "
                                 "pruning, or make the module traceable") from None
    finally:
        for h in hooks:
            h.remove()
    # Torch-Pruning follows autograd: a module that leaves the graph (numpy, .detach(),
    # .item()) silently hides every layer before it. Refuse rather than prune half a model.
    if cut:
        name, kind = cut[0]
        raise UnsupportedOpError(f"structured pruning cannot trace the model: module {name!r} ({kind}) returns "
                                 "a tensor cut from the autograd graph (numpy, .detach() or .item() inside), "
                                 "so the layers before it cannot be coupled; rewrite it in torch ops, or use "
                                 "unstructured pruning")
    return graph


def _trace_hooks(module: nn.Module, ran: list, cut: list, stack: list) -> list:
    hooks = []
    for name, mod in module.named_modules():
        if not name:
            continue

        def pre(m, args, name=name):
            stack.append((name, type(m).__name__))

        def post(m, args, out, name=name):
            if stack:
                stack.pop()
            ins = [a for a in args if isinstance(a, torch.Tensor)]
            outs = [out] if isinstance(out, torch.Tensor) else [o for o in (out if isinstance(out, (tuple, list))
                                                                            else []) if isinstance(o, torch.Tensor)]
            if any(a.grad_fn is not None or a.requires_grad for a in ins) and outs and \
                    all(o.grad_fn is None and not o.requires_grad for o in outs) and torch.is_grad_enabled():
                cut.append((name, type(m).__name__))
            ran.append(name)

        hooks.append(mod.register_forward_pre_hook(pre))
        hooks.append(mod.register_forward_hook(post))
    return hooks


def channel_groups(graph, module: nn.Module, ignored: list[nn.Module]) -> list[ChannelGroup]:
    """The prunable groups of `module`; a group touching an ignored layer's output is left out."""
    import torch_pruning as tp

    names = {m: n for n, m in module.named_modules()}
    groups = []
    for g in graph.get_all_groups(ignored_layers=ignored, root_module_types=[tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR]):
        root = g[0].dep.target.module
        cg = ChannelGroup(index=len(groups), root=names[root], channels=graph.get_out_channels(root))
        for dep, _ in g:
            mod = dep.target.module
            if not isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) or mod not in names:
                continue
            bucket = cg.out_layers if graph.is_out_channel_pruning_fn(dep.handler) else cg.in_layers
            if names[mod] not in bucket:
                bucket.append(names[mod])
            if isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.in_channels:
                cg.depthwise = True
        cg.keep = cg.channels
        groups.append(cg)
    return groups


def importance(kind: str, norm_p: int | None = None):
    import torch_pruning as tp

    if kind == "bn_scale":
        return tp.importance.BNScaleImportance()
    if kind == "taylor":
        return tp.importance.TaylorImportance()
    return tp.importance.MagnitudeImportance(p=1 if kind == "l1" else 2)


def rounded_keep(channels: int, ratio: float, round_to: int, max_ratio: float) -> int:
    """Channels kept when pruning `ratio` of them: a multiple of `round_to` (the kernels'
    vector block), at least one block, never more than `channels`."""
    if channels <= round_to or ratio <= 0:
        return channels
    floor = channels * (1 - max_ratio)
    keep = round(channels * (1 - ratio) / round_to) * round_to
    keep = max(keep, -(-floor // round_to) * round_to, round_to)
    return int(min(keep, channels))


def group_scores(graph, module: nn.Module, groups: list[ChannelGroup], imp) -> dict[int, torch.Tensor]:
    """Per-channel importance of every group, each normalised to sum to one (a proxy of
    the share of the group's signal that pruning a channel takes away)."""
    byname = dict(module.named_modules())
    out = {}
    for g in groups:
        root = byname[g.root]
        full = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels,
                                       list(range(g.channels)))
        s = imp(full)
        s = torch.ones(g.channels) if s is None else s.detach().float().abs()
        out[g.index] = s / s.sum().clamp_min(1e-12)
    return out


def apply_keep(graph, module: nn.Module, groups: list[ChannelGroup], scores: dict[int, torch.Tensor]) -> None:
    """Prune each group down to `keep` channels, removing the least important ones."""
    byname = dict(module.named_modules())
    for g in groups:
        if g.keep >= g.channels:
            continue
        root = byname[g.root]
        drop = torch.argsort(scores[g.index])[: g.channels - g.keep].tolist()
        graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, drop).prune()

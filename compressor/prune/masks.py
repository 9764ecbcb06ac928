"""Weight masks: unstructured magnitude pruning and N:M semi-structured sparsity.

Masks are kept beside the model, not inside it: after every optimizer update the masked
weights are zeroed again in place. So there are never forward pre-hooks or
parametrizations to strip before export; the zeros are in the weights themselves, and
the exported graph is the ordinary dense one (smaller after gzip, not faster).
"""

from __future__ import annotations

import torch
from torch import nn

from compressor.config.prune import NMSpec, UnstructuredSpec

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class MaskSet:
    """{layer name: (module, boolean keep-mask shaped like its weight)}."""

    def __init__(self) -> None:
        self.masks: dict[str, tuple[nn.Module, torch.Tensor]] = {}

    def set(self, name: str, module: nn.Module, mask: torch.Tensor) -> None:
        self.masks[name] = (module, mask)

    @torch.no_grad()
    def apply(self) -> None:
        for module, mask in self.masks.values():
            module.weight.mul_(mask)

    def __len__(self) -> int:
        return len(self.masks)


def magnitude_masks(layers: dict[str, nn.Module], spec: UnstructuredSpec, sparsity: float | None = None) -> MaskSet:
    """Keep the largest weights. `sparsity` overrides spec.sparsity (the gradual schedule
    passes its current value); per-layer entries in spec.layers scale with it."""
    target = spec.sparsity if sparsity is None else sparsity
    scale = target / spec.sparsity if spec.sparsity else 0.0
    masks = MaskSet()
    # |w| and w^2 rank single weights identically; 'norm' matters for channel pruning only.
    scores = {n: m.weight.detach().abs() for n, m in layers.items()}
    own = {n: r * scale for n, r in spec.layers.items() if n in layers}
    pooled = [n for n in layers if n not in own]
    if spec.scope == "global" and pooled:
        flat = torch.cat([scores[n].flatten() for n in pooled])
        thr = _threshold(flat, target)
        for n in pooled:
            masks.set(n, layers[n], scores[n] > thr)
    else:
        own.update({n: target for n in pooled})
    for n, r in own.items():
        masks.set(n, layers[n], scores[n] > _threshold(scores[n].flatten(), r))
    return masks


def _threshold(values: torch.Tensor, sparsity: float) -> float:
    k = int(round(sparsity * values.numel()))
    if k <= 0:
        return -1.0  # keep everything, zeros included
    return float(torch.kthvalue(values, k).values)


def nm_masks(layers: dict[str, nn.Module], spec: NMSpec) -> tuple[MaskSet, dict[str, str]]:
    """N non-zeros in every M consecutive weights along the input (reduction) dimension,
    the layout sparse kernels consume. Returns the masks and {layer: why it was skipped}."""
    masks, skipped = MaskSet(), {}
    for name, mod in layers.items():
        w = mod.weight.detach()
        cin = w.shape[1]
        if cin % spec.m:
            skipped[name] = f"input dimension {cin} is not a multiple of {spec.m}"
            continue
        # Conv weights [out, in, *k] -> [out, *k, in]: groups of M run along the input channels.
        perm = (0, *range(2, w.ndim), 1)
        wp = w.abs().permute(perm).reshape(-1, spec.m)
        keep = torch.zeros_like(wp, dtype=torch.bool)
        keep.scatter_(1, wp.topk(spec.n, dim=1).indices, True)
        inv = torch.argsort(torch.tensor(perm)).tolist()
        mask = keep.reshape(w.permute(perm).shape).permute(inv).contiguous()
        masks.set(name, mod, mask)
    return masks, skipped


def check_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """True when every M consecutive weights along the input dimension hold at most N non-zeros."""
    perm = (0, *range(2, weight.ndim), 1)
    groups = (weight.permute(perm).reshape(-1, m) != 0).sum(1)
    return bool((groups <= n).all())


def cubic_sparsity(final: float, step: int, end_step: int) -> float:
    """Zhu & Gupta (2017): s_t = s_f * (1 - (1 - t/T)^3). Prunes fast while the network
    has redundancy to spare, slowly as it approaches the final sparsity."""
    t = min(1.0, step / max(1, end_step))
    return final * (1.0 - (1.0 - t) ** 3)


def layer_sparsity(module: nn.Module, names: list[str] | None = None) -> dict[str, float]:
    """Fraction of exact zeros in each conv/linear weight."""
    out = {}
    for name, mod in module.named_modules():
        if isinstance(mod, PRUNABLE) and (names is None or name in names):
            out[name] = float((mod.weight == 0).sum()) / mod.weight.numel()
    return out


def overall_sparsity(module: nn.Module, names: list[str] | None = None) -> float:
    zeros = total = 0
    for name, mod in module.named_modules():
        if isinstance(mod, PRUNABLE) and (names is None or name in names):
            zeros += int((mod.weight == 0).sum())
            total += mod.weight.numel()
    return zeros / total if total else 0.0

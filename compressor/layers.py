"""Naming the parts of a PyTorch model that int8 lowerings keep in float: layers (leaf
modules that compute something a quantizer touches), blocks (the model's top-level
children, or a stage's children when the top level is one container), and module
kinds (`exclude_ops` on the torch-based targets)."""

from __future__ import annotations

import difflib

from torch import nn

from compressor.errors import RecipeError

# Leaf modules with nothing of their own to quantize: folded into the layer before them
# (BatchNorm), fused with it (ReLU), or no computation at all.
PASSIVE = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Flatten, nn.Unflatten, nn.ReLU, nn.ReLU6)


def layer_names(module: nn.Module) -> list[str]:
    """Leaf modules a quantizer acts on, in definition order."""
    return [n for n, m in module.named_modules() if n and not any(True for _ in m.children())
            and not isinstance(m, PASSIVE)]


def block_names(module: nn.Module) -> list[str]:
    """Top-level children; when the model is one container (a Sequential of stages, or
    `features` plus a small head), the children of its largest container instead."""
    top = [(n, m) for n, m in module.named_children() if not isinstance(m, PASSIVE)]
    if not top:
        return []
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in top}
    total = sum(params.values()) or 1
    big = max(top, key=lambda nm: params[nm[0]])
    if params[big[0]] / total > 0.8 and len(list(big[1].children())) > 1:
        inner = [f"{big[0]}.{n}" for n, m in big[1].named_children() if not isinstance(m, PASSIVE)]
        return _splice(top, big[0], inner)
    return [n for n, _ in top]


def _splice(top: list, name: str, inner: list[str]) -> list[str]:
    out: list[str] = []
    for n, _ in top:
        out.extend(inner if n == name else [n])
    return out


def kind(module: nn.Module, name: str) -> str:
    return type(module.get_submodule(name)).__name__


def check_module_names(module: nn.Module, names: list[str], target: str) -> None:
    known = dict(module.named_modules())
    unknown = [n for n in names if n not in known or not n]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [n for n in known if n], n=1, cutoff=0.6)
        raise RecipeError(f"exclude names {unknown}, which the model does not have; {target} excludes module "
                          "names" + (f"; did you mean {close[0]!r}?" if close else
                                     f" such as {[n for n in known if n][:6]}"))


def module_types(module: nn.Module, names: list[str], target: str) -> list[type]:
    """The module classes `exclude_ops` names: torch.nn classes, or classes of the model."""
    own = {type(m).__name__: type(m) for m in module.modules()}
    out = []
    for name in names:
        cls = own.get(name) or getattr(nn, name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            close = difflib.get_close_matches(name, sorted(set(own) | {k for k in dir(nn) if k[:1].isupper()}),
                                              n=1, cutoff=0.6)
            raise RecipeError(f"exclude_ops names {name!r}, which is no torch.nn module class nor a class of the "
                              f"model; {target} takes PyTorch module class names (Hardsigmoid, LayerNorm, ...)"
                              + (f"; did you mean {close[0]!r}?" if close else ""))
        out.append(cls)
    return out

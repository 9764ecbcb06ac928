"""Naming the parts of a PyTorch model that int8 lowerings keep in float: layers (leaf
modules that compute something a quantizer touches), op scopes (the operations a
module's own forward runs outside its submodules: the `scale * x` of a squeeze-excitation
block, a residual `+=`, the attention matmuls of nn.MultiheadAttention; named
`<module>:ops`, `:ops` for the model's own forward), blocks (the model's top-level
children, or a stage's children when the top level is one container), and module
kinds (`exclude_ops` on the torch-based targets)."""

from __future__ import annotations

import difflib
from typing import Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from compressor.errors import RecipeError

# Leaf modules with nothing of their own to quantize: folded into the layer before them
# (BatchNorm), fused with it (ReLU), or no computation at all.
PASSIVE = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Flatten, nn.Unflatten, nn.ReLU, nn.ReLU6)


def layer_names(module: nn.Module) -> list[str]:
    """Leaf modules a quantizer acts on, in definition order."""
    return [n for n, m in module.named_modules() if n and not any(True for _ in m.children())
            and not isinstance(m, PASSIVE)]


OPS = ":ops"

# Functions that compute something an int8 lowering quantizes (Q/DQ on ONNX, an observer
# on the torch quantizers). Shape and indexing functions are left out: no op scope is
# made of them alone.
COMPUTE = frozenset("""
add sub mul div truediv floordiv matmul bmm baddbmm addmm einsum linear conv1d conv2d conv3d
softmax log_softmax layer_norm group_norm batch_norm instance_norm rms_norm normalize
sigmoid hardsigmoid hardswish silu gelu relu relu6 hardtanh tanh elu leaky_relu mish softplus
mean sum amax adaptive_avg_pool1d adaptive_avg_pool2d avg_pool2d max_pool2d adaptive_max_pool2d
cat concat concatenate stack scaled_dot_product_attention multi_head_attention_forward
interpolate upsample pad clamp clip exp pow sqrt rsqrt erf neg abs square var std
""".split())


def is_ops(name: str) -> bool:
    return name.endswith(OPS)


def owner(name: str) -> str:
    """The module an exclude name stands in: itself, or for `<module>:ops` that module."""
    return name[:-len(OPS)] if is_ops(name) else name


def with_scope(scope: str, name: str) -> str:
    """`name` inside a wrapper whose model sits at `scope` (e.g. 'wrapped.')."""
    if is_ops(name) and not owner(name):
        return scope.rstrip(".") + OPS
    return scope + name


def _compute_name(func) -> str | None:
    name = getattr(func, "__name__", "") or ""
    name = name.strip("_")
    if name.startswith(("i", "r")) and name[1:] in COMPUTE and name not in COMPUTE:
        name = name[1:]  # __iadd__, __rmul__, ...
    return name if name in COMPUTE else None


class _Recorder(TorchFunctionMode):
    """Records, for each module, the compute functions its own forward calls, and the
    order in which layers and op scopes first compute."""

    def __init__(self, stack: list[str], seen: dict[str, list[str]], first: dict[str, int],
                 watched: dict | None = None, uses: list[int] | None = None) -> None:
        super().__init__()
        self.stack, self.seen, self.first = stack, seen, first
        # Tensors watched (id -> (weak reference, serial)) and the computing calls that read each.
        self.watched, self.uses = (watched if watched is not None else {}), (uses if uses is not None else [])

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _compute_name(func)
        if name is not None:  # reads that compute (not `x.dim()`)
            for a in args:
                if isinstance(a, torch.Tensor) and (w := watched_serial(self.watched, a)) is not None:
                    self.uses[w] += 1
        if name is not None and self.stack:
            self.seen.setdefault(self.stack[-1], []).append(name)
            self.first.setdefault(self.stack[-1] + OPS, len(self.first))
        return func(*args, **(kwargs or {}))


def _record(module: nn.Module, example: Sequence[torch.Tensor]) -> tuple[dict[str, list[str]], dict[str, int],
                                                                       set[str]]:
    """Run the model once (a copy: a model that caches tensors in eval mode keeps its
    state): (module -> compute functions of its own forward, layer or op scope -> rank
    of its first computation, the BatchNorm layers that are not the one reader of a
    convolution's output, which no exporter folds away). Empty when it cannot run."""
    import copy
    import weakref

    try:
        module = copy.deepcopy(module)
    except Exception:  # not copyable: its own forward, then
        pass
    stack: list[str] = []
    seen: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    made_by_conv: dict[int, tuple[weakref.ref, int]] = {}
    uses: list[int] = []
    norms: dict[str, int | None] = {}  # BatchNorm -> the convolution output it read (None: another tensor)
    names = {id(m): n for n, m in module.named_modules()}
    handles = []

    def enter(mod, args):
        name = names.get(id(mod), "?")
        stack.append(name)
        first.setdefault(name, len(first))
        if isinstance(mod, BATCHNORMS) and not any(True for _ in mod.children()) and args:
            norms[name] = watched_serial(made_by_conv, args[0])

    def leave(mod, _args, out):
        if stack:
            stack.pop()
        if isinstance(mod, CONVS) and isinstance(out, torch.Tensor):
            made_by_conv[id(out)] = (weakref.ref(out), len(uses))
            uses.append(0)

    for m in module.modules():
        handles.append(m.register_forward_pre_hook(enter))
        handles.append(m.register_forward_hook(leave))
    was_training = module.training
    module.eval()  # no BatchNorm statistics move
    try:
        with torch.no_grad(), _Recorder(stack, seen, first, made_by_conv, uses):
            module(*example)
    except Exception:
        return {}, {}, set()
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    # Folded into its convolution only when it is the one reader of that output.
    standalone = {n for n, src in norms.items() if src is None or uses[src] != 1}
    return seen, first, standalone


def watched_serial(watched: dict, t: torch.Tensor) -> int | None:
    """The serial of tensor `t` among the watched ones (an id alone can be reused)."""
    hit = watched.get(id(t))
    return hit[1] if hit is not None and hit[0]() is t else None


BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def op_scopes(module: nn.Module, example: Sequence[torch.Tensor]) -> dict[str, list[str]]:
    """`<module>:ops` -> the compute functions that module's own forward runs (outside
    its submodules), for every non-leaf module that runs any; found by running the
    model once on `example`. Empty when the model cannot run eagerly on it."""
    return _scopes(module, _record(module, example)[0])


def _scopes(module: nn.Module, seen: dict[str, list[str]]) -> dict[str, list[str]]:
    """The op scopes among recorded modules: non-leaf modules (a leaf's own functions are
    the layer itself)."""
    leaves = {n for n, m in module.named_modules() if not any(True for _ in m.children())}
    return {n + OPS: fns for n, fns in seen.items() if n not in leaves and n != "?"}


def layers_and_ops(module: nn.Module, example: Sequence[torch.Tensor] | None) -> list[str]:
    """Layers and op scopes in the order they first compute on `example` (a ViT
    encoder's position-embedding add comes before its layers); layers that never ran
    follow in definition order. Without an example, the layers alone."""
    layers = layer_names(module)
    if example is None:
        return layers
    seen, first, standalone = _record(module, example)
    # A BatchNorm on a block's input (FastViT's identity branch, RepMixer's norm) is a
    # layer of its own: no convolution folds it.
    wanted = set(layers) | set(_scopes(module, seen)) | standalone
    ran = sorted((n for n in first if n in wanted), key=first.__getitem__)
    return ran + [n for n in layers if n not in first]


DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class _Skip(nn.Module):
    """The identity, written so that torch.fx traces through it and leaves no node."""

    def forward(self, x, *args, **kwargs):
        return x


def strip_dropout(module: nn.Module) -> nn.Module:
    """Replace (in place) every dropout of an eval-mode model, the identity at inference,
    and every nn.Identity by a module FX traces away. FX quantization otherwise gives each
    its own int8 input: behind a float neighbour (the position-embedding add of a ViT kept
    float, the `drop` Identity inside timm's BatchNormAct2d) that one quantize costs the
    accuracy the float neighbour was kept for."""
    for name, child in list(module.named_modules()):
        if isinstance(child, DROPOUTS) or type(child) is nn.Identity:
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, _Skip())
    return module


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
    cls = type(module.get_submodule(owner(name))).__name__
    return f"{cls} ops" if is_ops(name) else cls


def check_module_names(module: nn.Module, names: list[str], target: str) -> None:
    """Every name is a module of the model, or `<module>:ops` (`:ops`: the model's own)."""
    known = dict(module.named_modules())
    unknown = [n for n in names if owner(n) not in known or not n or (not owner(n) and not is_ops(n))]
    if unknown:
        pool = [n + OPS for n in known] if is_ops(unknown[0]) else [n for n in known if n]
        close = difflib.get_close_matches(unknown[0], pool, n=1, cutoff=0.6)
        raise RecipeError(f"exclude names {unknown}, which the model does not have; {target} excludes module "
                          "names (or '<module>:ops', the operations of its own forward)"
                          + (f"; did you mean {close[0]!r}?" if close else f" such as {[n for n in known if n][:6]}"))


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

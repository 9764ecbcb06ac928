"""prune(model, step, ...) -> (pruned model, PruneResult): the one verb of the step."""

from __future__ import annotations

import copy
import difflib
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from compressor.errors import DataError, RecipeError
from compressor.finetune import FinetuneHistory, TrainHooks, accuracy, finetune
from compressor.model import Model
from compressor.prune import masks as M
from compressor.prune import structured as S
from compressor.config.prune import PruneStep

if TYPE_CHECKING:
    from compressor.data import Dataset
    from compressor.prune.search import LayerSpec

DENSE_KERNELS_NOTE = ("unstructured and N:M sparsity: dense kernels do not get faster from zeros; the gain "
                      "is the compressed (gzip) size")
MASK_UPDATES = 32  # a gradual schedule recomputes its masks this many times


@dataclass
class PruneResult:
    method: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    sparsity: float                       # zeros among the pruned layers' weights (unstructured, N:M)
    layer_sparsity: dict[str, float]
    layer_ratios: dict[str, float]        # structured: fraction of output channels removed per layer
    accuracy_before: float | None = None  # the dense model, on the evaluation data
    accuracy_pruned: float | None = None  # after pruning, before fine-tuning
    accuracy_after: float | None = None
    finetune: FinetuneHistory | None = None
    search: dict | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["finetune"] = self.finetune.to_json() if self.finetune else None
        return d


def prune(model: Model, step: PruneStep, train: "Dataset | None" = None, evaluation: "Dataset | None" = None,
          layer_ms: "Callable[[LayerSpec], float] | None" = None,
          measure_latency: Callable[[Model], float] | None = None,
          show_progress: bool = False) -> tuple[Model, PruneResult]:
    """Prune a copy of `model` as `step` says and fine-tune it on `train` when asked.
    `layer_ms` times one layer on the target runtime (the latency search's lookup
    table); `measure_latency` times a whole model there (checks a latency target)."""
    start = time.perf_counter()
    dense = model.module.eval()
    module = copy.deepcopy(dense).eval()
    example = model.example_inputs()
    names = model.input_names
    prunable = {n: m for n, m in module.named_modules() if isinstance(m, M.PRUNABLE)}
    _check_names(step, module, prunable)
    ignored = (set(step.ignore) | {_output_layer(module, example)}) - {""}
    if step.finetune is not None and step.finetune.epochs and train is None:
        raise DataError("the prune step fine-tunes, but the recipe has no training data: add data.train "
                        "(e.g. {source: digits, split: train})")
    macs0, params0 = _count(module, example)
    res = PruneResult(method=step.method, params_before=params0, params_after=params0, macs_before=macs0,
                      macs_after=macs0, sparsity=0.0, layer_sparsity={}, layer_ratios={})
    res.accuracy_before = accuracy(dense, evaluation, names) if evaluation is not None else None
    layers = {n: m for n, m in prunable.items() if n not in ignored and not _under(n, step.ignore)}
    hooks = TrainHooks()
    if step.unstructured is not None or step.nm is not None:
        hooks = _mask_step(step, layers, res)
    else:
        module = _structured(step, model, module, ignored, train, res, layer_ms, measure_latency)
    res.accuracy_pruned = accuracy(module, evaluation, names) if evaluation is not None else None
    if step.finetune is not None and step.finetune.epochs and train is not None:
        teacher = dense if step.finetune.distill is not None else None
        res.finetune = finetune(module, train, step.finetune, names, evaluation, teacher, hooks, show_progress)
        res.accuracy_after = accuracy(module, evaluation, names) if evaluation is not None else None
    else:
        res.accuracy_after = res.accuracy_pruned
    res.macs_after, res.params_after = _count(module, example)
    kept = list(layers)
    res.layer_sparsity = M.layer_sparsity(module, kept)
    res.sparsity = M.overall_sparsity(module, kept)
    if step.method != "structured":
        res.notes.append(DENSE_KERNELS_NOTE)
    res.wall_s = time.perf_counter() - start
    out = Model(module=module.eval(), inputs=model.inputs, output_names=model.output_names, source=model.source,
                notes=[*model.notes, f"pruned ({step.method})"])
    return out, res


def _mask_step(step: PruneStep, layers: dict[str, nn.Module], res: PruneResult) -> TrainHooks:
    """Masks now (one-shot, N:M) or along the fine-tuning steps (gradual); the hooks
    re-zero the masked weights after every update, so the zeros stay in the weights."""
    if step.nm is not None:
        masks, res.skipped = M.nm_masks(layers, step.nm)
        masks.apply()
        return TrainHooks(after_step=lambda i, n: masks.apply())
    spec = step.unstructured
    if spec.schedule == "one_shot":
        masks = M.magnitude_masks(layers, spec)
        masks.apply()
        return TrainHooks(after_step=lambda i, n: masks.apply())
    state = {"masks": M.MaskSet(), "done_at": None}

    def after_step(i: int, n: int) -> None:
        end = max(1, int(n * spec.gradual_end))
        every = max(1, end // MASK_UPDATES)
        if i % every == 0 or i >= end:
            if state["done_at"] is None:
                state["masks"] = M.magnitude_masks(layers, spec, M.cubic_sparsity(spec.sparsity, i, end))
                if i >= end:
                    state["done_at"] = i
        state["masks"].apply()

    def selectable(epoch: int) -> bool:
        return state["done_at"] is not None  # only weights at the final sparsity can be kept

    return TrainHooks(after_step=after_step, selectable=selectable)


def _structured(step: PruneStep, model: Model, module: nn.Module, ignored: set[str], train, res: PruneResult,
                layer_ms, measure_latency) -> nn.Module:
    from compressor.prune.search import Allocation, greedy, record_layers

    spec = step.structured
    example = model.example_inputs()
    byname = dict(module.named_modules())
    ignored_mods = [byname[n] for n in ignored]
    graph = S.build_graph(module, example)
    groups = S.channel_groups(graph, module, ignored_mods)
    if spec.importance == "taylor":
        _accumulate_grads(module, train, model.input_names, spec.calibration_batches)
    scores = S.group_scores(graph, module, groups, S.importance(spec.importance))
    fixed = {}
    for g in groups:  # per-layer ratios name any layer of the group
        named = [n for n in [g.root, *g.out_layers] if n in spec.layers]
        ratio = spec.layers[named[0]] if named else spec.ratio
        if ratio is not None:
            g.keep = S.rounded_keep(g.channels, ratio, spec.round_to, max(spec.max_layer_ratio, ratio))
            if named:
                fixed[g.index] = g.keep
    if spec.target is not None:
        if spec.target.latency_ratio is not None and layer_ms is None:
            raise RecipeError("a latency target needs latency measured on the target runtime; run it through "
                              "the pipeline (compressor run), or pass layer_ms")
        timer = layer_ms or (lambda s: float(s.macs))  # no runtime: MACs stand in for latency
        alloc = Allocation(record_layers(module, example), groups, timer)
        macs_t, lat_t = spec.target.macs_ratio, spec.target.latency_ratio
        dense_ms, best = None, None
        # The search sums conv/linear layers; the target holds for the whole model (MACs as
        # Torch-Pruning counts them, latency as measured): re-aim when it falls short.
        for _ in range(6):
            found = greedy(alloc, scores, spec.round_to, spec.max_layer_ratio, macs_t, lat_t,
                           spec.skip_depthwise, fixed)
            if lat_t is None:
                trial = copy.deepcopy(module)
                _apply(trial, example, ignored, found["keep"], scores)
                got = _count(trial, example)[0] / res.macs_before
                found["counted_macs_ratio"] = got
                if got <= spec.target.macs_ratio or not found["met"]:
                    break
                # BatchNorm and activations count too, and do not shrink where channels stay.
                macs_t -= 1.25 * (got - spec.target.macs_ratio) + 1e-4
                continue
            if measure_latency is None:
                break
            trial = copy.deepcopy(module)
            _apply(trial, example, ignored, found["keep"], scores)
            dense_ms = dense_ms or measure_latency(model)
            ms = measure_latency(Model(module=trial, inputs=model.inputs, output_names=model.output_names))
            ratio = ms / dense_ms
            found.update(measured_dense_ms=dense_ms, measured_ms=ms, measured_ratio=ratio,
                         met=ratio <= spec.target.latency_ratio)
            # Keep the lightest pruning that meets the target on the clock; re-aim either way.
            if found["met"] and (best is None or ratio > best["measured_ratio"]):
                best = found
            if abs(ratio - spec.target.latency_ratio) < 0.03 or (ratio > spec.target.latency_ratio and
                                                                 found["steps"] == 0):
                break
            lat_t = min(0.99, lat_t * spec.target.latency_ratio / ratio)
        found = best or found
        for g in groups:
            g.keep = found["keep"][g.index]
        res.search = {k: v for k, v in found.items() if k != "keep"}
        if not found["met"]:
            res.notes.append("the pruning target was not reached: every group is at max_layer_ratio")
    res.search = {**(res.search or {}), "groups": [
        {"root": g.root, "channels": g.channels, "keep": g.keep, "depthwise": g.depthwise} for g in groups]}
    before = {n: _out_channels(m) for n, m in module.named_modules() if isinstance(m, M.PRUNABLE)}
    S.apply_keep(graph, module, groups, scores)
    res.layer_ratios = {n: 1 - _out_channels(m) / before[n] for n, m in module.named_modules()
                        if isinstance(m, M.PRUNABLE) and n in before}
    return module


def _apply(module: nn.Module, example, ignored: set[str], keep: dict[int, int], scores) -> None:
    byname = dict(module.named_modules())
    graph = S.build_graph(module, example)
    groups = S.channel_groups(graph, module, [byname[n] for n in ignored])
    for g in groups:
        g.keep = keep[g.index]
    S.apply_keep(graph, module, groups, scores)


def _accumulate_grads(module: nn.Module, train, names: list[str], batches: int) -> None:
    """First-order Taylor importance reads the gradients of a few training batches."""
    if train is None or train.labels is None:
        raise DataError("Taylor importance needs labelled training data (data.train)")
    module.zero_grad()
    module.eval()  # BatchNorm statistics stay as they are
    for s in range(0, min(len(train), 64 * batches), 64):
        out = module(*[torch.from_numpy(train.inputs[k][s:s + 64]) for k in names])
        torch.nn.functional.cross_entropy(out, torch.from_numpy(train.labels[s:s + 64]).long()).backward()


def _out_channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _count(module: nn.Module, example) -> tuple[int, int]:
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(module, list(example) if len(example) > 1 else example[0])
    return int(macs), int(params)


def _output_layer(module: nn.Module, example) -> str:
    """The last conv/linear layer to run: its outputs are the model's (classes), never pruned."""
    order, hooks = [], []
    for n, m in module.named_modules():
        if isinstance(m, M.PRUNABLE):
            hooks.append(m.register_forward_hook(lambda mod, a, o, n=n: order.append(n)))
    try:
        with torch.no_grad():
            module(*example)
    finally:
        for h in hooks:
            h.remove()
    return order[-1] if order else ""


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name.startswith(p + ".") for p in prefixes)


def _check_names(step: PruneStep, module: nn.Module, prunable: dict[str, nn.Module]) -> None:
    """A layer name that is not in the model: one line with the closest names."""
    modules = [n for n, _ in module.named_modules() if n]
    spec = step.unstructured or step.structured
    checks = [("ignore", n, modules) for n in step.ignore]
    checks += [(f"{step.method}.layers", n, list(prunable)) for n in (getattr(spec, "layers", None) or {})]
    for where, name, known in checks:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
                f"; prunable layers: {', '.join(list(prunable)[:8])}{' ...' if len(prunable) > 8 else ''}"
            raise RecipeError(f"prune step: {where} names {name!r}, which is not a layer of the model{hint}")

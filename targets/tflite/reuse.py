"""The PT2E half of the full-integer TFLite lowering (capture, prepare, calibrate,
convert), made fast for the fallback, and what its probes of one model share
(Target.probe_cache): the model's capture; each observer's statistics and scale, kept by
the nodes it observes (the float values calibration sees do not depend on what is kept
float, so they are computed once, and a histogram observer's range search is most of
convert_pt2e's time); and the last few converted graphs, so that the real export of a
float set the screen tried goes straight to litert-torch.

The capture gets a symbolic batch axis where the model allows it, so that calibration
runs in batches of CALIB_BATCH rather than one sample at a time (histogram observers cost
per call: TinyNet-E's calibration took 50 s); litert-torch then converts the graph at
the declared batch as before. Observers the quantizer puts on integer tensors are
removed (nothing to quantize, and the histogram observer fails on them).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections import OrderedDict
from contextvars import ContextVar
from typing import Iterator

import numpy as np

CALIB_BATCH = 16
KEEP_CONVERTED = 3

_SCOPE: ContextVar[dict | None] = ContextVar("tflite_probe_cache", default=None)


@contextlib.contextmanager
def probe_cache() -> Iterator[None]:
    token = _SCOPE.set({"capture": {}, "converted": OrderedDict(), "stats": {}})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def quantized(module, args: tuple, quantizer, model, variant, calibration, channels_last: bool,
              reusable: bool) -> tuple[object, int]:
    """The converted PT2E graph of `module` under `quantizer`, calibrated on
    `calibration`, and how many samples it saw. `reusable`: the module is the model's own
    (not a rewrite made for this lowering), so a probe scope may keep what it made."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    scope = _SCOPE.get() if reusable else None
    key = (id(model.module), channels_last, json.dumps(variant.model_dump(exclude={"name", "fallback"}),
                                                        sort_keys=True, default=str))
    if scope is not None and key in scope["converted"]:
        scope["converted"].move_to_end(key)
        return scope["converted"][key]
    from compressor.quant.pt2e_guard import unfold_shared_conv_bn

    graph, dynamic = _capture(module, args, scope, (id(model.module), channels_last))
    unfold_shared_conv_bn(graph)  # prepare_pt2e would fold a BatchNorm into a shared conv output
    prepared = prepare_pt2e(graph, quantizer)
    _drop_integer_observers(prepared)
    stats = None if scope is None else scope["stats"].setdefault(
        (id(model.module), channels_last, variant.calibration_samples, id(calibration)), {})
    missing = _reuse_stats(prepared, stats)
    if missing or not stats or "samples" not in stats:
        samples = _calibrate(prepared, model, calibration, variant.calibration_samples, channels_last, dynamic)
        if stats is not None:
            _keep_stats(missing, stats, samples)
        for obs in _observers(prepared).values():
            obs.__dict__.pop("forward", None)  # the loaded ones observe again
    else:
        samples = stats["samples"]
    if stats is not None:
        _memoize_qparams(prepared, stats)
    out = convert_pt2e(prepared, fold_quantize=False), samples
    if scope is not None:
        scope["converted"][key] = out
        while len(scope["converted"]) > KEEP_CONVERTED:
            scope["converted"].popitem(last=False)
    return out


def _capture(module, args: tuple, scope: dict | None, key: tuple):
    """torch.export's graph of `module` (a copy of the one kept in the scope), with a
    symbolic batch axis when the model exports with one; and whether it has one."""
    if scope is not None and key in scope["capture"]:
        graph, dynamic = scope["capture"][key]
        return copy.deepcopy(graph), dynamic
    import torch

    from compressor.qat.graph import BATCH_DIM_MAX

    graph, dynamic = None, False
    if all(getattr(a, "ndim", 0) >= 1 for a in args):
        dims = tuple({0: torch.export.Dim("batch", min=1, max=BATCH_DIM_MAX)} for _ in args)
        two = tuple(torch.cat([a, a]) for a in args)  # an example batch of 1 would be specialised to 1
        try:
            graph, dynamic = torch.export.export(module, two, dynamic_shapes=dims).module(), True
        except Exception:  # a reshape to the declared batch, say: calibrate one batch at a time
            graph = None
    if graph is None:
        graph = torch.export.export(module, args).module()
    if scope is not None:
        scope["capture"][key] = (copy.deepcopy(graph), dynamic)
    return graph, dynamic


def _drop_integer_observers(prepared) -> int:
    """Remove the observers the quantizer put on integer tensors (EdgeNeXt's position
    encoding divides an int64 arange): there is nothing to quantize there, and the
    histogram observer fails on them ("histogram_cpu" not implemented for 'Long')."""
    import torch
    from torchao.quantization.pt2e.observer import ObserverBase

    dropped = 0
    for node in list(prepared.graph.nodes):
        if node.op != "call_module" or not node.args or not isinstance(getattr(prepared, str(node.target), None),
                                                                        ObserverBase):
            continue
        val = getattr(node.args[0], "meta", {}).get("val")
        if isinstance(val, torch.Tensor) and not val.dtype.is_floating_point:
            node.replace_all_uses_with(node.args[0])
            prepared.graph.erase_node(node)
            dropped += 1
    if dropped:
        prepared.graph.lint()
        prepared.recompile()
    return dropped


def _observers(prepared) -> dict[tuple, object]:
    """Each observer of a prepared graph under what it observes: the names of the nodes it
    is called on (the capture is one graph copied, so names agree between probes) and its
    class. The float values a node takes during calibration do not depend on what is
    annotated, so an observer with the same key ends with the same statistics."""
    from torchao.quantization.pt2e.observer import ObserverBase

    calls: dict[str, list[str]] = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and node.args and hasattr(node.args[0], "name"):
            calls.setdefault(str(node.target), []).append(node.args[0].name)
    by_instance: dict[int, tuple[object, list[str]]] = {}
    for target, observed in calls.items():
        obs = getattr(prepared, target, None)
        if isinstance(obs, ObserverBase):
            by_instance.setdefault(id(obs), (obs, []))[1].extend(observed)
    return {(tuple(sorted(names)), _settings(obs)): obs for obs, names in by_instance.values()}


def _settings(obs) -> tuple:
    """An observer's class and configuration (not its statistics)."""
    eps = getattr(obs, "eps", None)
    return (type(obs).__name__, *(str(getattr(obs, a, None)) for a in
                                  ("dtype", "qscheme", "quant_min", "quant_max", "ch_axis", "bins", "reduce_range")),
            float(eps) if eps is not None else None)


def _reuse_stats(prepared, stats: dict | None) -> dict:
    """Load each observer's statistics kept in `stats`; the observers that are new, to be
    calibrated (all of them outside a probe scope). The loaded ones sit out that
    calibration: histogram observers cost per call, and their numbers are known."""
    observers = _observers(prepared)
    if not stats or "observers" not in stats:
        return observers
    missing = {}
    for key, obs in observers.items():
        if key in stats["observers"]:
            obs.load_state_dict(stats["observers"][key])
            obs.forward = _passthrough
        else:
            missing[key] = obs
    return missing


def _passthrough(x):
    return x


def _keep_stats(observers: dict, stats: dict, samples: int) -> None:
    stats.setdefault("observers", {}).update({key: copy.deepcopy(obs.state_dict()) for key, obs in observers.items()})
    stats["samples"] = samples


def _memoize_qparams(prepared, stats: dict) -> None:
    """Each observer's scale and zero point computed once per key: a histogram
    observer's search for its clipping range is most of convert_pt2e's time."""
    memo = stats.setdefault("qparams", {})
    for key, obs in _observers(prepared).items():
        def calculate(obs=obs, key=key, compute=obs.calculate_qparams):
            if key not in memo:
                memo[key] = compute()
            return memo[key]
        obs.calculate_qparams = calculate


def _calibrate(prepared, model, calibration, limit: int, channels_last: bool, dynamic: bool) -> int:
    import torch

    n = min(limit, len(calibration))
    declared = model.inputs[0].shape[0]  # the program is exported at the declared (static) batch
    batch = CALIB_BATCH if dynamic else declared
    end = n if dynamic else n - n % declared
    with torch.no_grad():
        for start in range(0, end, batch):
            xs = [torch.from_numpy(np.ascontiguousarray(calibration.inputs[s.name][start:min(start + batch, end)]))
                  for s in model.inputs]
            prepared(*[x.permute(0, 2, 3, 1).contiguous() if channels_last and x.ndim == 4 else x for x in xs])
    return end


def run(converted, model, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The converted graph (reference int8 arithmetic in PyTorch) on `inputs`, in batches
    when its capture has a symbolic batch axis, else one declared batch at a time."""
    from compressor.sensitivity import run_module

    names = model.input_names
    step = model.inputs[0].shape[0]
    for batch in (CALIB_BATCH, step):
        try:
            return run_module(converted, inputs, names, batch)
        except Exception:
            if batch == step:
                raise
    raise AssertionError("unreachable")

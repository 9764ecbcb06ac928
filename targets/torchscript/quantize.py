"""The TorchScript target's lowering of a quantization intent onto PyTorch's int8 CPU
kernels: FX graph mode for static int8, eager dynamic quantization for Linear/LSTM/GRU.
The result is an eager module of real quantized ops (quantized::conv2d_relu,
quantized::linear, ...) that the caller traces.

The graph is built with the x86 configuration (7-bit activations, symmetric per-channel
weights), which both the 'x86' and the 'onednn' engines run. The engine chosen when the
archive is loaded decides the kernels its weights are packed for: 'x86' sends
convolutions with more than 100 groups (MobileNet's depthwise ones) to fbgemm, which at
batch 1 on AVX512-VNNI CPUs is slower than oneDNN's; 'onednn' uses oneDNN for all.
'auto' takes onednn where the CPU has VNNI, else x86. (FX's own onednn configuration,
with Conv+Add fusion, left most convolutions in float here: 0.65x the size, 1.3x the
speed of fp32 on ResNet-18, so it is not used.)"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from contextvars import ContextVar
from typing import Iterator

import torch
from torch import nn

from compressor.data import Dataset
from compressor.errors import DataError, ExportError
from compressor.config.quantize import QuantVariant
from compressor.errors import first_line
from compressor.layers import check_module_names, is_ops, module_types, strip_dropout
from compressor.qat.quantizers import fx_set_module

CALIB_BATCH = 16
MIN_SCALE = 2.0 ** -64
KEEP_LOWERED = 3          # quantized modules a probe scope keeps (the screen's, for the probe's export)

# Inside Target.probe_cache (the fallback's probes of one model): what does not change
# between its lowerings.
_PROBE_CACHE: ContextVar[dict | None] = ContextVar("torchscript_probe_cache", default=None)


@contextlib.contextmanager
def probe_cache() -> Iterator[None]:
    token = _PROBE_CACHE.set({"relu6": {}, "lowered": OrderedDict()})
    try:
        yield
    finally:
        _PROBE_CACHE.reset(token)


def static_int8(module: nn.Module, names: list[str], example: tuple[torch.Tensor, ...], v: QuantVariant,
                calibration: Dataset | None) -> tuple[nn.Module, dict]:
    if calibration is None or len(calibration) == 0:
        raise DataError(f"static int8 ({v.label}) needs calibration data: add 'data: {{calibration: ...}}' "
                        "to the recipe")
    torch.backends.quantized.engine = "x86"
    scope = _PROBE_CACHE.get()
    key = (id(module), id(calibration), v.model_dump_json(exclude={"name", "fallback"}))
    if scope is not None and key in scope["lowered"]:  # the screen made it: the probe's export traces it
        scope["lowered"].move_to_end(key)
        return scope["lowered"][key]
    quantized, meta = _static_int8(module, names, example, v, calibration)
    if scope is not None:
        scope["lowered"][key] = quantized, meta
        while len(scope["lowered"]) > KEEP_LOWERED:
            scope["lowered"].popitem(last=False)
    return quantized, meta


def _static_int8(module: nn.Module, names: list[str], example: tuple[torch.Tensor, ...], v: QuantVariant,
                 calibration: Dataset) -> tuple[nn.Module, dict]:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx

    float_model = strip_dropout(copy.deepcopy(module).eval())
    check_module_names(float_model, v.exclude, "torchscript")
    float_types = module_types(float_model, v.exclude_ops, "torchscript")
    calls, fed_by = _graph_facts(float_model)
    stays = _float_relu6(calls, float_model, v.exclude, float_types)
    relu6 = _relu6_after_conv(float_model, calls, keep=stays)
    mapping = get_default_qconfig_mapping("x86").set_global(_qconfig(v))
    typed = {n for n, m in float_model.named_modules() if float_types and isinstance(m, tuple(float_types))}
    passive, shape_calls = _float_passive(fed_by, v.exclude, typed)
    for name in [*v.exclude, *passive]:
        fx_set_module(mapping, name, None)
    for scope, function, index in shape_calls:
        mapping.set_module_name_object_type_order(scope, function, index, None)
    for cls in float_types:
        mapping.set_object_type(cls, None)
    prepared = _prepare(float_model, mapping, example, v)
    if unclamped := _clamp_observers(prepared, relu6):
        # A convolution kept in float (excluded) has no int8 output range ending at 6 to
        # do ReLU6's job: the ReLU6 after it stays, and the model is prepared again.
        float_model = strip_dropout(copy.deepcopy(module).eval())
        relu6 = _relu6_after_conv(float_model, calls, keep=unclamped | stays)
        prepared = _prepare(float_model, mapping, example, v)
        _clamp_observers(prepared, relu6)
    data = calibration.take(v.calibration_samples)
    try:
        with torch.no_grad():
            for batch in data.batches(CALIB_BATCH):
                prepared(*(torch.from_numpy(batch[n]) for n in names))
    except Exception as e:  # the model's own code: a reshape to a fixed batch size, ...
        raise ExportError(f"TorchScript static int8 ({v.label}) failed while calibrating on batches of "
                          f"{CALIB_BATCH} ({type(e).__name__}: {first_line(e)}); the TorchScript target needs a "
                          "model that runs any batch size (the pt2 target takes a fixed one)") from None
    try:
        quantized = convert_fx(prepared)
    except Exception as e:
        raise ExportError(f"TorchScript static int8 ({v.label}) failed in convert_fx: {first_line(e)}") from None
    return quantized, {
        "engine": "torch.ao FX graph mode, x86 configuration",
        "activations": ("uint8 " + ("symmetric" if v.symmetric_activations else "asymmetric") +
                        ", 7-bit range (reduce_range: no int16 saturation on CPUs without VNNI)"),
        "weights": f"int8 symmetric {'per-channel' if v.per_channel else 'per-tensor'}",
        "calibration": v.calibration, "observer": _observer(v).__name__, "calibration_samples": len(data),
        "relu6_fused": len(relu6), "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops),
    }


def screen(model, v: QuantVariant, calibration: Dataset | None, inputs: dict) -> list:
    """The outputs on `inputs` of the static int8 module, run in-process before tracing."""
    from compressor.sensitivity import run_module

    quantized, _ = static_int8(model.module, model.input_names, model.example_inputs(batch=2), v, calibration)
    return run_module(quantized, inputs, model.input_names)


def _prepare(float_model: nn.Module, mapping, example: tuple[torch.Tensor, ...], v: QuantVariant):
    from torch.ao.quantization.quantize_fx import prepare_fx

    try:
        return prepare_fx(float_model, mapping, example)
    except Exception as e:  # torch.fx raises TraceError, TypeError, RuntimeError, ...
        raise ExportError(f"TorchScript static int8 ({v.label}) failed: torch.fx cannot prepare the model "
                          f"({type(e).__name__}: {first_line(e)}); FX graph mode needs a model it can trace "
                          "symbolically (no branching on tensor values); dynamic int8 does not") from None


def _observer(v: QuantVariant):
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver

    # minmax keeps the whole observed range. percentile and entropy both mean "clip the
    # rare tails"; PyTorch's answer is HistogramObserver, which picks the clipping range
    # that minimises the L2 quantization error over a 2048-bin histogram.
    return MinMaxObserver if v.calibration == "minmax" else HistogramObserver


def _qconfig(v: QuantVariant):
    from torch.ao.quantization import QConfig
    from torch.ao.quantization.observer import default_per_channel_weight_observer, default_weight_observer

    scheme = torch.per_tensor_symmetric if v.symmetric_activations else torch.per_tensor_affine
    # reduce_range: 7-bit activations, so that u8*s8 pairwise sums (AVX2/AVX512 without
    # VNNI) cannot saturate int16 wherever the archive is loaded.
    # eps: the smallest scale an observer gives. PyTorch's default (float32 eps, 1.2e-7)
    # rounds every activation of a model whose activations are that small to zero
    # (random-weight MobileNetV2's late layers span 1e-8, EfficientNet-B0's 1e-14); the kernels take any scale.
    act = _observer(v).with_args(reduce_range=True, qscheme=scheme, eps=MIN_SCALE)
    return QConfig(activation=act, weight=default_per_channel_weight_observer if v.per_channel
                   else default_weight_observer)


def _relu6_after_conv(module: nn.Module, calls: dict[str, list[str | None]],
                      keep: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """Turn each nn.ReLU6 that directly follows a Conv2d (or its BatchNorm2d) into
    nn.ReLU, so that FX fuses it into the convolution; return {conv name: ReLU6 name}.

    Int8 ReLU6 as a separate op (hardtanh on a quantized tensor plus a copy) is half of
    MobileNetV2's int8 run time. Fused, the convolution's output observer is clamped at
    6 (`_clamp_observers`), so the quantized range ends at 6 and saturation does ReLU6's
    job exactly; calibration sees the clamped values too. A ReLU6 module that is also
    called after something other than a convolution (one module reused), or is named in
    `keep`, stays: replacing it would drop the clamp at its other calls.
    """
    fused = {}
    for name, convs in calls.items():
        if name in keep or None in convs:
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, leaf, nn.ReLU(inplace=False).train(module.training))
        fused.update((conv, name) for conv in convs)
    return fused


def _relu6_calls(module: nn.Module) -> dict[str, list[str | None]]:
    """ReLU6 name -> the convolution before each of its calls (None: no convolution)."""
    return _graph_facts(module)[0]


def _graph_facts(module: nn.Module) -> tuple[dict[str, list[str | None]], dict[str, list[str | None]]]:
    """From one symbolic trace: ReLU6 name -> the convolution before each of its calls
    (None: no convolution); and each passive module (an activation, BatchNorm or flatten
    that is no layer of its own) -> what feeds each of its calls (a module name, a
    module's own operations as '<module>:ops', None for the model's input).

    Traced on a copy: a symbolic trace runs the model's forward with proxies, and a model
    that caches a tensor in eval mode (timm's LeViT and EfficientFormer keep their
    attention biases) would keep a proxy that the next trace (prepare_fx's) trips over.
    Inside a probe cache (the fallback's probes of one model) the answer is kept."""
    from compressor.layers import OPS, PASSIVE

    scope = _PROBE_CACHE.get()
    key = _structure_key(module)
    if scope is not None and key in scope["relu6"]:
        return scope["relu6"][key]
    try:
        graph = torch.fx.symbolic_trace(copy.deepcopy(module)).graph
    except Exception:
        return {}, {}  # prepare_fx will report why the model does not trace
    mods = dict(module.named_modules())
    calls: dict[str, list[str | None]] = {}
    fed_by: dict[str | tuple, list[str | None]] = {}
    order: dict[tuple, int] = {}

    def scope_of(node) -> str:
        stack = list(node.meta.get("nn_module_stack", {}))
        return stack[-1] if stack else ""

    def feeder_of(node):
        src = node.args[0] if node.args else None
        if isinstance(src, torch.fx.Node) and src.op == "call_module":
            return str(src.target)
        if isinstance(src, torch.fx.Node) and src.op in ("call_function", "call_method"):
            return f"{scope_of(src)}{OPS}" if not _is_shape_op(src) else ("shape", src.name)
        return None

    for node in graph.nodes:
        if node.op in ("call_function", "call_method"):
            key = (scope_of(node), node.target)
            index = order.get(key, 0)
            order[key] = index + 1
            if _is_shape_op(node):  # (scope, function, index among its calls there)
                fed_by[("shape", node.name)] = [feeder_of(node)]
                fed_by[("call", node.name)] = [key + (index,)]
            continue
        if node.op != "call_module":
            continue
        if _is_relu6(mods.get(node.target)):
            calls.setdefault(node.target, []).append(_conv_before(node, mods))
        if isinstance(mods.get(node.target), (*PASSIVE, nn.Hardtanh)):
            fed_by.setdefault(node.target, []).append(feeder_of(node))
    facts = calls, fed_by
    if scope is not None:
        scope["relu6"][key] = facts
    return facts


_SHAPE_FUNCTIONS = frozenset({"flatten", "reshape", "view", "permute", "transpose", "squeeze", "unsqueeze",
                              "contiguous", "flatten_", "unflatten"})


def _is_shape_op(node: torch.fx.Node) -> bool:
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return node.op in ("call_function", "call_method") and name in _SHAPE_FUNCTIONS


def _float_passive(fed_by: dict, exclude: list[str], float_modules: set[str]) -> tuple[list[str], list[tuple]]:
    """The passive modules, and the shape functions (as (module, function, index) of
    their calls), whose every call reads something kept in float: FX would give them an
    int8 input of their own (a ReLU6 after a float convolution, the activation of timm's
    BatchNormAct2d after its float batch_norm, a flatten after a float pooling), so they
    stay float with it."""
    layers = [n for n in exclude if not is_ops(n)]

    def is_float(name, seen: frozenset) -> bool:
        if name is None:
            return False
        if isinstance(name, str) and (name in exclude or name in float_modules):
            return True
        base = name[:-len(":ops")] if isinstance(name, str) and is_ops(name) else name
        if isinstance(base, str) and any(base == n or base.startswith(n + ".") for n in layers):
            return True
        if name in fed_by and name not in seen:  # passive: as float as what feeds it
            return all(is_float(f, seen | {name}) for f in fed_by[name])
        return False

    modules = [p for p, feeders in fed_by.items()
               if isinstance(p, str) and all(is_float(f, frozenset({p})) for f in feeders)]
    calls = [fed_by[("call", key[1])][0] for key in fed_by
             if isinstance(key, tuple) and key[0] == "shape" and is_float(key, frozenset())]
    return modules, calls


def _structure_key(module: nn.Module) -> tuple:
    """What the ReLU6 analysis depends on: the model's module names and types."""
    return tuple((n, type(m).__name__) for n, m in module.named_modules())


def _float_relu6(calls: dict[str, list[str | None]], float_model: nn.Module, exclude: list[str],
                 float_types: list[type]) -> set[str]:
    """The ReLU6 modules that follow a convolution kept in float (by name, by an enclosing
    module's name, or by type): no int8 output range ends at 6 there, so they must stay
    (found before prepare_fx, so that the model is prepared once)."""
    layers = [n for n in exclude if not is_ops(n)]
    out = set()
    for relu6, convs in calls.items():
        for conv in convs:
            if conv is None:
                continue
            inside = any(conv == n or conv.startswith(n + ".") for n in layers)
            if inside or isinstance(float_model.get_submodule(conv), tuple(float_types)):
                out.add(relu6)
    return out


def _conv_before(node: torch.fx.Node, mods: dict[str, nn.Module]) -> str | None:
    """The Conv2d whose output (through its BatchNorm2d, if any) only `node` reads."""
    src = node.args[0] if node.args else None
    if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
        return None
    if isinstance(mods.get(src.target), nn.BatchNorm2d) and src.args:
        bn_src = src.args[0]
        if isinstance(bn_src, torch.fx.Node) and bn_src.op == "call_module" and len(bn_src.users) == 1:
            src = bn_src
    return src.target if isinstance(mods.get(src.target), nn.Conv2d) else None


def _is_relu6(m: nn.Module | None) -> bool:
    return isinstance(m, nn.ReLU6) or (type(m) is nn.Hardtanh and m.min_val == 0.0 and m.max_val == 6.0)


def _clamp_observers(prepared: torch.fx.GraphModule, relu6: dict[str, str]) -> set[str]:
    """Clamp at 6 the output observer of each convolution in `relu6`; return the ReLU6
    names of those that have none (left in float): their ReLU6 must stay."""
    from torch.ao.quantization.observer import ObserverBase

    clamped = set()
    for node in prepared.graph.nodes:
        if node.op != "call_module" or node.target not in relu6:
            continue
        for user in node.users:
            obs = getattr(prepared, str(user.target), None) if user.op == "call_module" else None
            if isinstance(obs, ObserverBase):
                obs.__class__ = _clamped(type(obs))
                clamped.add(node.target)
    return {name for conv, name in relu6.items() if conv not in clamped}


_CLAMPED: dict[type, type] = {}


def _clamped(cls: type) -> type:
    if cls not in _CLAMPED:
        def forward(self, x):
            return cls.forward(self, x.clamp(max=6.0))

        _CLAMPED[cls] = type(f"ReLU6{cls.__name__}", (cls,), {"forward": forward})
    return _CLAMPED[cls]


def dynamic_int8(module: nn.Module, v: QuantVariant) -> tuple[nn.Module, dict]:
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    torch.backends.quantized.engine = "x86"
    model = copy.deepcopy(module).eval()
    check_module_names(model, v.exclude, "torchscript")
    linear = per_channel_dynamic_qconfig if v.per_channel else default_dynamic_qconfig
    # Recurrent layers have no per-channel dynamic kernel; they take per-tensor weights.
    spec: dict = {nn.Linear: linear, nn.LSTM: default_dynamic_qconfig, nn.GRU: default_dynamic_qconfig}
    # Dynamic int8 quantizes layers only: a module's own operations (`<module>:ops`) stay float anyway.
    spec.update({name: None for name in v.exclude if not is_ops(name)})
    spec.update({cls: None for cls in module_types(model, v.exclude_ops, "torchscript")})
    quantized = quantize_dynamic(model, spec, dtype=torch.qint8)
    import torch.ao.nn.quantized.dynamic as nnqd

    count = sum(1 for m in quantized.modules() if isinstance(m, (nnqd.Linear, nnqd.LSTM, nnqd.GRU)))
    if count == 0:
        raise ExportError(f"TorchScript dynamic int8 ({v.label}): the model has no Linear, LSTM or GRU layer "
                          "to quantize (outside 'exclude'); use static int8 for convolutions")
    return quantized, {"engine": "torch.ao quantize_dynamic",
                       "layers": count, "weights": f"int8 {'per-channel' if v.per_channel else 'per-tensor'} "
                       "(Linear), per-tensor (LSTM/GRU)", "activations": "quantized at run time",
                       "excluded": list(v.exclude)}

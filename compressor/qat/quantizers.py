"""One quantizer per family of targets, for QAT (fake quantization with learnable
weights) and for its PTQ twin (observers only). The families differ in what their
kernels take, so each target gets a model fine-tuned under its own quantizer:

  x86    torchao PT2E X86InductorQuantizer: uint8 asymmetric activations (what ONNX
         Runtime's x86 kernels fuse into QLinearConv), int8 symmetric weights -> ONNX QDQ
  litert litert-torch's PT2EQuantizer: int8 activations, symmetric weights -> TFLite
  fx     torch.ao FX graph mode, the x86 configuration the TorchScript target uses for
         static int8 (7-bit activations): real quantized::conv2d kernels -> TorchScript

`weight_bits` below 8 narrows the weight range (e.g. -7..7 for 4 bits) inside int8
storage: every target carries it with its ordinary int8 kernels. Which family a target
lowers is the target's own `quantizer_family` (targets/).
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from compressor.logs import quiet_third_party

quiet_third_party()  # before any torchao import: the quantizers below are where they start


def weight_range(bits: int) -> tuple[int, int]:
    q = 2 ** (bits - 1) - 1  # symmetric: no -2^(b-1), so that zero point 0 is exact
    return -q, q


def _weight_spec(spec, bits: int, per_channel: bool, qat: bool):
    from torchao.quantization.pt2e import (FusedMovingAvgObsFakeQuantize, MinMaxObserver,
                                           MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver,
                                           PerChannelMinMaxObserver)

    lo, hi = weight_range(bits)
    if qat:
        ctr = FusedMovingAvgObsFakeQuantize.with_args(
            eps=2 ** -12, observer=MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver)
    else:
        ctr = (PerChannelMinMaxObserver if per_channel else MinMaxObserver).with_args(eps=2 ** -12)
    return dataclasses.replace(spec, quant_min=lo, quant_max=hi, ch_axis=0,
                               qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
                               observer_or_fake_quant_ctr=ctr)


def pt2e_config(family: str, bits: int, per_channel: bool, qat: bool, dynamic: bool = False):
    if dynamic:  # activations quantized per batch at run time; nothing to train
        if family == "x86":
            from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
                get_default_x86_inductor_quantization_config)

            base = get_default_x86_inductor_quantization_config(is_dynamic=True)
        else:
            from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

            base = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=True)
        return dataclasses.replace(base, weight=_weight_spec(base.weight, bits, per_channel, False))
    if family == "x86":
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            get_default_x86_inductor_quantization_config)

        base = get_default_x86_inductor_quantization_config(is_qat=qat)
    else:
        from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

        # Its QAT config (is_qat=True) switches on conv+BN annotators that do not run with
        # this torchao; the static one with fake quantizers in place of the observers
        # trains the same way once BatchNorm is folded (compressor.qat.graph.prepare).
        base = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=False)
        if qat:
            from torchao.quantization.pt2e import FusedMovingAvgObsFakeQuantize, MovingAverageMinMaxObserver

            fq = FusedMovingAvgObsFakeQuantize.with_args(eps=2 ** -12, observer=MovingAverageMinMaxObserver)
            act = dataclasses.replace(base.input_activation, observer_or_fake_quant_ctr=fq)
            base = dataclasses.replace(base, input_activation=act, output_activation=act)
    return dataclasses.replace(base, weight=_weight_spec(base.weight, bits, per_channel, qat))


def pt2e_quantizer(family: str, bits: int, per_channel: bool, qat: bool, keep_float: list[str],
                   only: str | None = None, dynamic: bool = False):
    """The family's PT2E quantizer; `only` quantizes that one layer (the sensitivity pass)."""
    config = pt2e_config(family, bits, per_channel, qat, dynamic)
    if family == "x86":
        q = x86_quantizer()
        if only is not None:
            return q.set_module_name_qconfig(only, config)
        q.set_global(config)
        for name in keep_float:
            q.set_module_name_qconfig(name, None)
        return q
    q = litert_quantizer()
    if only is not None:
        return q.set_module_name(only, config)
    q.set_global(config)
    for name in keep_float:
        q.keep_float(name)
    return q


def fx_qconfig_mapping(bits: int, per_channel: bool, qat: bool, keep_float: list[str]):
    """The TorchScript target's x86 configuration (reduce_range activations), with the
    weight range and fake quantization of this step."""
    from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
    from torch.ao.quantization.fake_quantize import FusedMovingAvgObsFakeQuantize
    from torch.ao.quantization.observer import (MinMaxObserver, MovingAverageMinMaxObserver,
                                                MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver)

    lo, hi = weight_range(bits)
    wq = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    if qat:
        act = FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0,
                                                      quant_max=127, dtype=torch.quint8, reduce_range=False)
        weight = FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver,
            quant_min=lo, quant_max=hi, dtype=torch.qint8, qscheme=wq)
    else:
        act = MinMaxObserver.with_args(quant_min=0, quant_max=127, dtype=torch.quint8)
        weight = (PerChannelMinMaxObserver if per_channel else MinMaxObserver).with_args(
            quant_min=lo, quant_max=hi, dtype=torch.qint8, qscheme=wq)
    mapping: QConfigMapping = get_default_qconfig_mapping("x86").set_global(QConfig(activation=act, weight=weight))
    for name in keep_float:
        fx_set_module(mapping, name, None)
    return mapping


def release_model_caches() -> None:
    """Drop the models torch's quantization helpers cache. torchao's and torch.ao's
    `assert_and_get_unique_device` are `lru_cache(maxsize=None)` functions keyed by the
    module, so every prepared model stays alive: the sensitivity pass over Inception-v3's
    203 layers grew by ~190 MB a layer and was killed at 24 GB. Called after each
    simulated layer and each fallback probe."""
    import importlib

    for mod, fn in (("torchao.utils", "_assert_and_get_unique_device"),
                    ("torch.ao.quantization.fx.utils", "assert_and_get_unique_device"),
                    ("torchao.quantization.pt2e.utils", "_assert_and_get_unique_device")):
        try:
            cached = getattr(importlib.import_module(mod), fn, None)
        except ImportError:
            continue
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


def fx_set_module(mapping, name: str, qconfig):
    """Give module `name` `qconfig` (None: keep it float) under an FX QConfigMapping;
    `<module>:ops` means only the functions and methods that module's own forward calls
    (FX scopes each such node to its innermost module, and a regex anchored at both ends
    matches that module alone, not its children)."""
    import re

    from compressor.layers import is_ops, owner

    if is_ops(name):
        return mapping.set_module_name_regex(re.escape(owner(name)) + "$", qconfig)
    return mapping.set_module_name(name, qconfig)


def litert_quantizer():
    """litert-torch's PT2EQuantizer, with module names that match. Its name filter reads
    nn_module_stack keys as 'L__self___<path with _ for .>'; torch.export now writes
    'L__self__<path>' keys (and dots in names are ambiguous that way), so set_module_name
    matched nothing: an excluded layer was quantized anyway. Here the filter reads the
    qualified names stored as the stack's values."""
    from litert_torch.quantize import pt2e_quantizer as lq

    class Quantizer(lq.PT2EQuantizer):
        def annotate(self, model):
            with _swapped(lq, "_get_module_name_filter", _module_name_filter):
                return super().annotate(model)

        # set_module_name(name, None) raises "not supported yet"; a None entry is what the
        # annotator needs: the global pass skips the module and nothing else annotates it.
        def keep_float(self, name: str):
            self.module_name_config[name] = None
            return self

        def keep_float_type(self, module_type: type):
            self.module_type_config[module_type] = None
            return self

    return Quantizer()


def x86_quantizer():
    """torchao's X86InductorQuantizer, whose module names also take `<module>:ops` (the
    operations of that module's own forward; compressor.layers)."""
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    def all_nodes_in(module_name: str):
        accept = _module_name_filter(module_name)
        return lambda nodes: all(accept(n) for n in nodes)

    class Quantizer(xiq.X86InductorQuantizer):
        def annotate(self, model):
            with _swapped(xiq, "_create_module_name_filter", all_nodes_in):
                return super().annotate(model)

    return Quantizer()


@contextlib.contextmanager
def _swapped(owner_module, attr: str, value):
    """`owner_module.attr` replaced by `value` for the duration (the quantizers' own name
    filters, during their annotate)."""
    original = getattr(owner_module, attr)
    setattr(owner_module, attr, value)
    try:
        yield
    finally:
        setattr(owner_module, attr, original)


def _stack_paths(node) -> list[str]:
    """The module paths of a torch.export node, outermost first ('' is the model)."""
    return [str(path).removeprefix("L['self']").removeprefix(".")
            for path, _ in (node.meta.get("nn_module_stack") or {}).values()]


def _module_name_filter(module_name: str):
    """Nodes of `module_name` and everything inside it; for `<module>:ops`, only the
    nodes that module's own forward makes (its innermost module is that one)."""
    from compressor.layers import is_ops, owner

    if is_ops(module_name):
        own = owner(module_name)

        def accept_ops(node) -> bool:
            paths = _stack_paths(node)
            return (paths[-1] if paths else "") == own

        return accept_ops
    prefix = module_name + "."

    def accept(node) -> bool:
        return any(path == module_name or path.startswith(prefix) for path in _stack_paths(node))

    return accept

"""Preparing, calibrating and converting a model under one family's quantizer, and the
training wrapper that gives a prepared graph ordinary train()/eval() semantics.

A prepared graph's fake quantizers keep observing whatever runs through them, in eval
mode too; `QatModule.eval()` switches observing off so that evaluation between epochs
does not move the scales, and `train()` switches it back on unless the observers are
frozen. Frozen BatchNorm trains with its running statistics (no batch statistics, no
updates): PT2E graphs get the eval BatchNorm pattern, FX ones `freeze_bn_stats`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from compressor.qat.quantizers import fx_qconfig_mapping, pt2e_quantizer

BATCH_DIM_MAX = 1 << 16


def prepare(family: str, module: nn.Module, example: tuple[torch.Tensor, ...], bits: int, per_channel: bool,
            keep_float: list[str], qat: bool) -> nn.Module:
    """A copy of `module` with fake quantizers (qat) or observers (PTQ) inserted."""
    float_model = copy.deepcopy(module)
    if family == "fx":
        from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

        torch.backends.quantized.engine = "x86"
        mapping = fx_qconfig_mapping(bits, per_channel, qat, keep_float)
        return (prepare_qat_fx(float_model.train(), mapping, example) if qat
                else prepare_fx(float_model.eval(), mapping, example))
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    if family == "litert" and qat:
        # litert-torch's conv+BN QAT annotator does not run with this torchao (it hands
        # torch.export a function). With BatchNorm folded into the convolutions first, QAT
        # trains the folded weights: BN is frozen from the start for this family.
        from torch.fx.experimental.optimization import fuse

        float_model = fuse(float_model.eval())
    elif qat and keep_float:
        # torchao's conv+BN QAT rewrite fails on a conv+BN pair the quantizer leaves
        # unannotated; a float layer gains nothing from training BN apart: fold it.
        _fold_bn_into(float_model.eval(), keep_float)
    # A symbolic batch axis: training batches and the last, shorter one share one graph.
    dims = tuple({0: torch.export.Dim("batch", min=1, max=BATCH_DIM_MAX)} for _ in example)
    graph = torch.export.export(float_model.eval(), example, dynamic_shapes=dims).module()
    quantizer = pt2e_quantizer(family, bits, per_channel, qat, keep_float)
    prepared = prepare_qat_pt2e(graph, quantizer) if qat else prepare_pt2e(graph, quantizer)
    return _train_eval(prepared)


def _fold_bn_into(module: nn.Module, convs: list[str]) -> None:
    """Fold each BatchNorm that directly follows one of `convs` into it (eval statistics)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:
        return  # not traceable by FX: export will say what it cannot handle
    mods = dict(module.named_modules())
    for node in graph.nodes:
        bn = mods.get(node.target) if node.op == "call_module" else None
        src = node.args[0] if node.args else None
        if not isinstance(bn, nn.BatchNorm2d) or not isinstance(src, torch.fx.Node) or src.target not in convs:
            continue
        conv = mods.get(src.target)
        if isinstance(conv, nn.Conv2d) and len(src.users) == 1:
            for name, new in ((src.target, fuse_conv_bn_eval(conv, bn)), (node.target, nn.Identity())):
                parent, _, leaf = name.rpartition(".")
                setattr(module.get_submodule(parent) if parent else module, leaf, new)


def calibrate(prepared: nn.Module, family: str, inputs: dict[str, np.ndarray], names: list[str],
              batch: int = 32) -> None:
    """Run samples through the observers, BatchNorm on its running statistics."""
    _set_mode(prepared, family, train=False)
    _observers(prepared, family, on=True)
    n = len(inputs[names[0]])
    with torch.no_grad():
        for s in range(0, n, batch):
            prepared(*[torch.from_numpy(inputs[k][s:s + batch]) for k in names])


def convert(prepared: nn.Module, family: str) -> nn.Module:
    _observers(prepared, family, on=False)
    _set_mode(prepared, family, train=False)
    prepared = copy.deepcopy(prepared)
    _keep_trained_qparams(prepared)
    if family == "fx":
        from torch.ao.quantization.quantize_fx import convert_fx

        return convert_fx(prepared).eval()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    # litert-torch reads the quantize/dequantize pairs itself (as targets/tflite does for
    # PTQ); the ONNX exporter wants int8 constants, i.e. folded quantize nodes.
    out = _train_eval(convert_pt2e(prepared, fold_quantize=family != "litert"))
    out.eval()
    for m in out.modules():  # a graph module starts out "training"; helpers restore that flag
        m.training = False
    return out


def _train_eval(graph: nn.Module) -> nn.Module:
    """train()/eval() on an exported graph that rewrite its BatchNorm and dropout patterns
    (torchao's allow_exported_model_train_eval) and, like nn.Module's, return the module:
    callers such as litert-torch's converter write `module = module.eval()`."""
    import types

    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    def train(self, mode: bool = True):
        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self)
        self.training = mode
        return self

    graph.train = types.MethodType(train, graph)
    graph.eval = types.MethodType(lambda self: self.train(False), graph)
    return graph


def _keep_trained_qparams(graph: nn.Module) -> None:
    """Make convert use the scales and zero points the fake quantizers trained with.

    convert asks each fake quantizer's observer for fresh qparams from its moving-average
    min/max; the fused fake-quantize kernel keeps its own `scale` buffer, and for weights
    the two drift apart (a 3-bit per-tensor digits CNN lost 5 points between the trained
    graph and the converted one). The buffers are what the weights were trained against."""
    for m in graph.modules():
        if hasattr(m, "fake_quant_enabled") and isinstance(getattr(m, "scale", None), torch.Tensor):
            m.calculate_qparams = (lambda m=m: (m.scale.detach().clone(), m.zero_point.detach().clone()))


class QatModule(nn.Module):
    def __init__(self, prepared: nn.Module, family: str) -> None:
        super().__init__()
        self.graph = prepared
        self.family = family
        self.observers_frozen = False
        self.bn_frozen = False

    def forward(self, *args):
        return self.graph(*args)

    def train(self, mode: bool = True) -> "QatModule":
        self.training = mode
        _set_mode(self.graph, self.family, train=mode, bn_frozen=self.bn_frozen)
        _observers(self.graph, self.family, on=mode and not self.observers_frozen)
        return self

    def freeze_observers(self) -> None:
        self.observers_frozen = True
        _observers(self.graph, self.family, on=False)

    def freeze_bn(self) -> None:
        self.bn_frozen = True
        self.train(self.training)


def _set_mode(graph: nn.Module, family: str, train: bool, bn_frozen: bool = False) -> None:
    if family == "fx":
        nn.Module.train(graph, train)
        if bn_frozen:
            from torch.ao.nn.intrinsic.qat import freeze_bn_stats

            graph.apply(freeze_bn_stats)
        return
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    # PT2E graphs have no train flag of their own: BatchNorm's pattern is rewritten.
    if train and not bn_frozen:
        move_exported_model_to_train(graph)
    else:
        move_exported_model_to_eval(graph)


def _observers(graph: nn.Module, family: str, on: bool) -> None:
    if family == "fx":
        from torch.ao.quantization import disable_observer, enable_observer
    else:
        from torchao.quantization.pt2e import disable_observer, enable_observer
    graph.apply(enable_observer if on else disable_observer)

"""Outlier-aware int8 of a transformer's linear layers on ONNX: what
compressor.quant.outliers decides (smoothing, float outlier channels, per-inference
ranges), written into the float graph before ONNX Runtime's quantizer runs.

Every rewrite leaves the float graph's outputs as they were (x / s times diag(s) W is x W;
a channel taken out of the int8 product is added back in float); only what int8 does to
them changes. Node names stay, so layers kept float by name still are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from compressor.quant.outliers import Activations, GroupPlan, plan_group

if TYPE_CHECKING:
    import onnx

    from compressor.data import Dataset

# Rows kept of each calibration input for the simulation (the ranges see every row of
# every calibration input: one input with a spike is what a calibrated range has to hold).
ROWS_PER_INPUT = 16
STAT_BATCH = 8
# Ops whose outputs, read by linear layers, mark a transformer: the normalisations that
# carry the residual stream's outlier channels into every block.
NORMS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization")
# A graph is lowered as a transformer when it has at least this many linear layers per
# convolution (ViT: 48 to 1).
CONVS = ("Conv", "ConvTranspose")
CONV_SHARE = 4


@dataclass
class Linear:
    node: str
    weight: str          # initializer name
    transposed: bool     # Gemm with transB: the initializer is [O, C]


@dataclass
class Group:
    """Linear layers that read the same activation."""

    input: str
    layers: list[Linear]
    producer: str | None   # op type making the input


@dataclass
class OutlierPlan:
    """What the lowering does to the graph, and what it tells the quantizers."""

    path: Path                                   # the rewritten float graph
    linear_nodes: list[str]                      # every linear layer (nodes to quantize)
    dynamic_nodes: list[str] = field(default_factory=list)   # ... of them with per-inference ranges
    side_nodes: list[str] = field(default_factory=list)      # float side paths: never quantized
    notes: dict = field(default_factory=dict)
    conv_nodes: list[str] = field(default_factory=list)      # a few convolutions (a patch embedding)


def linear_groups(model: "onnx.ModelProto") -> list[Group]:
    """MatMul/Gemm nodes with a constant 2-D float weight, grouped by their input."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    groups: dict[str, Group] = {}
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2:
            continue
        w = inits.get(n.input[1])
        if w is None or len(w.dims) != 2 or w.data_type != TensorProto.FLOAT or n.input[0] in inits:
            continue
        attrs = {a.name: a for a in n.attribute}
        if n.op_type == "Gemm" and (attrs.get("transA") and attrs["transA"].i):
            continue
        transposed = n.op_type == "Gemm" and bool(attrs.get("transB") and attrs["transB"].i)
        g = groups.setdefault(n.input[0], Group(n.input[0], [], producer.get(n.input[0])))
        g.layers.append(Linear(n.name, n.input[1], transposed))
    return list(groups.values())


def is_transformer(model: "onnx.ModelProto", groups: list[Group]) -> bool:
    """Linear layers reading normalisations, and few convolutions beside them (a ViT's
    patch embedding): convnets and conv-heavy hybrids keep the quantizer's own handling,
    which chains int8 through their convolutions."""
    convs = sum(n.op_type in CONVS for n in model.graph.node)
    linears = sum(len(g.layers) for g in groups)
    return any(g.producer in NORMS for g in groups) and convs * CONV_SHARE <= linears


def plan(src: Path, calibration: "Dataset", dynamic_mode: bool, work: Path, alpha: float | None,
         batch_dynamic: bool, skip: set[str] | frozenset = frozenset(), rewrite: bool = True) -> OutlierPlan | None:
    """The outlier-aware rewrite of the float graph `src` (None when it is no transformer):
    statistics from `calibration`, a plan per linear group, the rewritten graph in `work`.
    `rewrite=False`: the linear layers only, as they are (no smoothing, no float channels)."""
    import onnx

    model = onnx.load(str(src))
    groups = [g for g in linear_groups(model) if not all(l.node in skip for l in g.layers)]
    if not is_transformer(model, groups):
        return None
    key = _cache_key(src, calibration, dynamic_mode, alpha, skip)
    plans = _PLANS.get(key) if rewrite else {g.input: GroupPlan() for g in groups}
    if plans is None:
        stats = _statistics(src, model, groups, calibration, batch_dynamic)
        inits = {i.name: i for i in model.graph.initializer}
        plans = {g.input: plan_group(stats[g.input], [_weight(inits[l.weight], l.transposed) for l in g.layers],
                                     dynamic_mode, alpha=alpha) for g in groups}
        _PLANS.clear()  # one model at a time: the fallback's probes ask for the same plan
        _PLANS[key] = plans
    side = _rewrite(model, groups, plans)
    out = Path(work) / "outliers.onnx"
    onnx.save(model, str(out))
    linear = [l.node for g in groups for l in g.layers]
    convs = [n.name for n in model.graph.node if n.op_type in CONVS and n.name not in skip]
    dynamic = [l.node for g in groups for l in g.layers if plans[g.input].dynamic] if not dynamic_mode else []
    return OutlierPlan(out, linear, dynamic, side, _notes(groups, plans, dynamic_mode), convs)


_PLANS: dict[str, dict[str, GroupPlan]] = {}


def _cache_key(src: Path, calibration: "Dataset", dynamic_mode: bool, alpha: float | None, skip) -> str:
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    for name in sorted(calibration.inputs):
        arr = np.ascontiguousarray(calibration.inputs[name])
        h.update(name.encode() + str(arr.shape).encode() + arr.tobytes())
    h.update(repr((dynamic_mode, alpha, sorted(skip))).encode())
    return h.hexdigest()


def _weight(init: "onnx.TensorProto", transposed: bool) -> np.ndarray:
    from onnx import numpy_helper

    w = numpy_helper.to_array(init).astype(np.float32)
    return w.T if transposed else w


def _statistics(src: Path, model: "onnx.ModelProto", groups: list[Group], calibration: "Dataset",
                batch_dynamic: bool) -> dict[str, Activations]:
    """Every group input over the calibration inputs, one forward pass each batch."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    names = [g.input for g in groups]
    for name in names:
        if name not in have:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    per_input: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feeds in calibration.batches(STAT_BATCH if batch_dynamic else 1):
        for name, arr in zip(names, session.run(names, feeds)):
            # A leading batch axis splits into inputs; a 2-D [tokens, C] activation is one input.
            per_input[name].extend(arr if arr.ndim >= 3 else [arr])
    return {n: Activations.collect(per_input.pop(n), ROWS_PER_INPUT) for n in names}


def _rewrite(model: "onnx.ModelProto", groups: list[Group], plans: dict[str, GroupPlan]) -> list[str]:
    """Smooth and split the groups in place; the names of the float side-path nodes."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    before: dict[str, list] = {}   # node name -> nodes to insert before it
    after: dict[str, list] = {}
    side: list[str] = []
    nodes = {n.name: n for n in model.graph.node}
    for k, g in enumerate(groups):
        p = plans[g.input]
        if p.scales is None and not len(p.float_channels):
            continue
        tag = f"outliers.{k}"
        channels = p.float_channels
        first = g.layers[0].node
        main_input = g.input
        c = _weight(inits[g.layers[0].weight], g.layers[0].transposed).shape[0]
        factor = np.ones(c, dtype=np.float32) if p.scales is None else (1.0 / p.scales).astype(np.float32)
        if len(channels):
            factor[channels] = 0.0
        # One Mul on the group's input: 1/s on the int8 channels, 0 on the float ones.
        model.graph.initializer.append(numpy_helper.from_array(factor, f"{tag}.input_factor"))
        main_input = f"{tag}.int8_input"
        before.setdefault(first, []).append(helper.make_node("Mul", [g.input, f"{tag}.input_factor"], [main_input],
                                                             name=f"{tag}.scale"))
        side.append(f"{tag}.scale")
        if len(channels):
            model.graph.initializer.append(numpy_helper.from_array(channels.astype(np.int64), f"{tag}.channels"))
            before[first].append(helper.make_node("Gather", [g.input, f"{tag}.channels"], [f"{tag}.float_input"],
                                                  name=f"{tag}.gather", axis=-1))
            side.append(f"{tag}.gather")
        for j, layer in enumerate(g.layers):
            node = nodes[layer.node]
            w = _weight(inits[layer.weight], layer.transposed)
            scaled = w if p.scales is None else w * p.scales[:, None]
            if len(channels):
                scaled = scaled.copy()
                w_side = w[channels]            # s is 1 on the float channels
                scaled[channels] = 0.0
                side_w = f"{tag}.{j}.float_weight"
                model.graph.initializer.append(numpy_helper.from_array(w_side.astype(np.float32), side_w))
                mm, add = f"{tag}.{j}.float_matmul", f"{tag}.{j}.add"
                before.setdefault(layer.node, []).append(
                    helper.make_node("MatMul", [f"{tag}.float_input", side_w], [f"{mm}.out"], name=mm))
                out = node.output[0]
                node.output[0] = f"{tag}.{j}.int8_out"
                after.setdefault(layer.node, []).append(
                    helper.make_node("Add", [node.output[0], f"{mm}.out"], [out], name=add))
                side += [mm, add]
            new_name = layer.weight if uses.get(layer.weight, 0) <= 1 else f"{tag}.{j}.weight"
            stored = scaled.T if layer.transposed else scaled
            arr = numpy_helper.from_array(np.ascontiguousarray(stored, dtype=np.float32), new_name)
            if new_name == layer.weight:
                inits[layer.weight].CopyFrom(arr)
            else:
                model.graph.initializer.append(arr)
                node.input[1] = new_name
            node.input[0] = main_input
    order = list(model.graph.node)
    del model.graph.node[:]
    for n in order:
        model.graph.node.extend(before.get(n.name, []))
        model.graph.node.append(n)
        model.graph.node.extend(after.get(n.name, []))
    return side


def _notes(groups: list[Group], plans: dict[str, GroupPlan], dynamic_mode: bool) -> dict:
    smoothed = [g for g in groups if plans[g.input].scales is not None]
    split = [g for g in groups if len(plans[g.input].float_channels)]
    dynamic = [g for g in groups if plans[g.input].dynamic] if not dynamic_mode else []
    alphas = sorted({plans[g.input].alpha for g in smoothed})
    if not smoothed and not split and not dynamic:
        return {"outliers": {"linear_groups": len(groups), "rewrite": "none (outliers: linear)"}}
    before = np.mean([plans[g.input].error_before for g in groups])
    after = np.mean([plans[g.input].error_after for g in groups])
    return {"outliers": {
        "linear_groups": len(groups),
        "smoothed_groups": len(smoothed), "alphas": alphas,
        "float_outlier_channels": int(sum(len(plans[g.input].float_channels) for g in split)),
        "per_inference_range_layers": sum(len(g.layers) for g in dynamic),
        "simulated_error": {"plain": float(before), "planned": float(after)},
    }}

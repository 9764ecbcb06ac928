"""Make an ONNX artifact small without changing what it computes.

A QDQ int8 model carries, next to its int8 weights, per-channel scales and zero
points and hundreds of generated tensor names. On a small-kernel network such as
MobileNetV2 that overhead alone is ~1% of the fp32 size; these passes remove what no
runtime needs:

- the exporter's per-node stack traces and doc strings;
- `value_info` (intermediate shapes, which every runtime infers again);
- all-zero int8 zero points of weights that feed a Conv (zero is ONNX's default; ONNX
  Runtime still fuses the Conv to QLinearConv; its Gemm/MatMul fusions want them kept);
- long generated tensor names, renamed to short ids (graph inputs, outputs and the
  names of compute nodes stay as they were, so layers remain identifiable).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def compact_file(path: Path, rename_tensors: bool, keep_scopes: bool = False) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    strip_debug(proto, keep_scopes)
    if rename_tensors:
        drop_zero_weight_zero_points(proto)
        compact_names(proto)
    onnx.save(proto, str(path))


def strip_debug(proto, keep_scopes: bool = False) -> None:
    """`keep_scopes` keeps each node's module path (targets/onnx/scopes.py): the fp32
    graph that int8 lowerings start from needs it to map module names to nodes."""
    from targets.onnx.scopes import SCOPE_KEY

    for node in proto.graph.node:
        kept = [p for p in node.metadata_props if keep_scopes and p.key == SCOPE_KEY]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
        node.doc_string = ""
    del proto.graph.value_info[:]


def drop_zero_weight_zero_points(proto) -> int:
    from onnx import TensorProto, numpy_helper

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    consumers = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n.op_type)
    dropped = 0
    for n in g.node:
        if n.op_type != "DequantizeLinear" or len(n.input) != 3 or n.input[0] not in inits:
            continue
        zp = inits.get(n.input[2])
        if zp is None or zp.data_type != TensorProto.INT8 or zp.data_location == TensorProto.EXTERNAL:
            continue
        if np.any(numpy_helper.to_array(zp)) or set(consumers[n.output[0]]) != {"Conv"}:
            continue
        del n.input[2]
        dropped += 1
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return dropped


def compact_names(proto) -> None:
    g = proto.graph
    fixed = {i.name for i in g.input} | {o.name for o in g.output}
    # External-data initializers keep their names: the .data file's offsets are keyed by them.
    fixed |= {t.name for t in g.initializer if t.data_location == 1}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in fixed:
            return name
        return renamed.setdefault(name, f"t{len(renamed)}")

    for t in g.initializer:
        t.name = short(t.name)
    for n in g.node:
        for k, name in enumerate(n.input):
            n.input[k] = short(name)
        for k, name in enumerate(n.output):
            n.output[k] = short(name)
        if n.op_type in QDQ_OPS:
            n.name = ""


def has_subgraphs(path: Path) -> bool:
    """Control flow (If/Loop/Scan) refers to outer tensors by name: leave such models be."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for n in proto.graph.node for a in n.attribute)

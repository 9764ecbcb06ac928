"""ONNX Runtime's transformer optimizer (onnxruntime.transformers.optimizer) on a dynamo
export: multi-head attention, LayerNorm-after-residual and bias-GELU fused into ORT's
Attention, SkipLayerNormalization and BiasGelu kernels. Applied to the fp32 artifact,
so fp32 and every variant lowered from it run the same fused graph (a fair speedup).

Two shapes of the dynamo exporter's graph hide BERT's attention from the optimizer's
pattern matcher; they are rewritten first into the equivalent form it knows:
- the additive mask's single Unsqueeze(axes=[1, 2]) becomes two Unsqueezes;
- the score scale `scores * c` (c a scalar constant, 1/sqrt(head size)) becomes
  `scores / (1/c)`: with a Mul on both inputs of the mask Add, the matcher takes the
  first Mul for the mask and gives up.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from compressor.errors import ExportError, first_line

MODEL_TYPES = ("bert",)


def fuse_transformer(path: Path, model_type: str, external_data: bool) -> dict:
    """Rewrite the fp32 model at `path` in place; return notes for the report."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    proto = onnx.load(str(path))
    split = split_double_unsqueeze(proto)
    divided = scale_as_div(proto)
    with tempfile.TemporaryDirectory(prefix="ort-fuse-", dir=path.parent) as d:
        prepared = Path(d) / "prepared.onnx"
        onnx.save(proto, str(prepared), save_as_external_data=external_data,
                  location="prepared.onnx.data" if external_data else None)
        try:
            # num_heads/hidden_size 0: read off the graph's Reshape shapes.
            fused = optimize_model(str(prepared), model_type=model_type, num_heads=0, hidden_size=0, opt_level=0)
        except Exception as e:
            raise ExportError(f"ONNX transformer fusions ({model_type}) failed in onnxruntime's optimizer: "
                              f"{first_line(e)}; set 'fusions: none' under targets.onnx") from None
        stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        fused.save_model_to_file(str(path), use_external_data_format=external_data)
    return {"fusions": f"onnxruntime.transformers.optimizer (model_type {model_type})", "fused_ops": stats,
            "fusion_rewrites": {"split_unsqueeze": split, "scale_as_div": divided}}


def split_double_unsqueeze(proto) -> int:
    """Unsqueeze(x, axes=[a, b]) with 0 <= a < b -> Unsqueeze(Unsqueeze(x, [a]), [b]): the same
    tensor (axes count in the output's rank, so inserting a first leaves b in place)."""
    from onnx import TensorProto, helper, numpy_helper

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    nodes, count = [], 0
    for n in g.node:
        axes = numpy_helper.to_array(inits[n.input[1]]).tolist() if (
            n.op_type == "Unsqueeze" and len(n.input) == 2 and n.input[1] in inits) else None
        if axes is None or len(axes) != 2 or not 0 <= axes[0] < axes[1]:
            nodes.append(n)
            continue
        first = helper.make_tensor(f"{n.name}_axis_a", TensorProto.INT64, [1], [axes[0]])
        second = helper.make_tensor(f"{n.name}_axis_b", TensorProto.INT64, [1], [axes[1]])
        g.initializer.extend([first, second])
        mid = f"{n.output[0]}_half"
        nodes.append(helper.make_node("Unsqueeze", [n.input[0], first.name], [mid], name=f"{n.name}_a"))
        nodes.append(helper.make_node("Unsqueeze", [mid, second.name], list(n.output), name=f"{n.name}_b"))
        count += 1
    del g.node[:]
    g.node.extend(nodes)
    return count


def scale_as_div(proto) -> int:
    """Mul(scores, c) -> Div(scores, 1/c) where scores come from a MatMul and the product goes
    only to an Add that feeds a Softmax (scores plus mask), c a scalar float constant."""
    import numpy as np
    from onnx import numpy_helper

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n.op_type for n in g.node for o in n.output}
    count = 0
    for n in g.node:
        # Scores come from the Q.K MatMul; the mask's own Mul (by the float minimum) does not.
        if n.op_type != "Mul" or len(n.input) != 2 or n.input[1] not in inits or producer.get(n.input[0]) != "MatMul":
            continue
        c = numpy_helper.to_array(inits[n.input[1]])
        after = consumers.get(n.output[0], [])
        if c.size != 1 or not np.issubdtype(c.dtype, np.floating) or c.item() == 0 or len(after) != 1 \
                or after[0].op_type != "Add" \
                or not any(x.op_type == "Softmax" for x in consumers.get(after[0].output[0], [])):
            continue
        inverse = numpy_helper.from_array((1.0 / c).astype(c.dtype), f"{n.name}_inverse_scale")
        g.initializer.append(inverse)
        n.op_type, n.input[1] = "Div", inverse.name
        count += 1
    return count

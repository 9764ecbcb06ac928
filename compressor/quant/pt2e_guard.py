"""A guard for PT2E's handling of BatchNorm, run on a captured graph before prepare_pt2e.

prepare_pt2e folds every BatchNorm that reads a convolution's output into that
convolution's weights, also when the output has other readers: they then get the
normalised values too (a residual block whose identity branch is a BatchNorm of the stem
convolution's output lost 0.1 of output cosine in float, before any int8). And a
BatchNorm left in the graph (FastViT's identity branches, RepMixer's norm) makes
convert_pt2e match its QAT conv-BatchNorm patterns, each traced anew: 96 traces, over a
minute for a model of a few layers. Every BatchNorm that is not the one reader of a
convolution's output becomes what it computes in eval mode, x * scale + shift, with the
BatchNorm's module scope (so that keeping it float by name still works).
"""

from __future__ import annotations


def unfold_shared_conv_bn(graph_module) -> int:
    """Rewrite, in place, each BatchNorm that PT2E would fold wrongly or leave in the
    graph into a multiply and an add by constants; returns how many."""
    import operator

    import torch

    aten = torch.ops.aten
    convs = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default,
             aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding}
    graph = graph_module.graph
    count = 0
    for node in list(graph.nodes):
        legit = node.target == aten._native_batch_norm_legit_no_training.default
        if node.op != "call_function" or not (legit or node.target == aten.batch_norm.default):
            continue
        src = node.args[0]
        if getattr(src, "op", None) == "call_function" and src.target in convs and len(src.users) == 1:
            continue  # folded into its convolution, correctly
        if legit:
            outs = list(node.users)
            if not all(u.target is operator.getitem and u.args[1] == 0 for u in outs):
                continue  # the statistics are read too: leave it
            eps = node.args[6]
        else:
            if node.args[5]:  # training mode
                continue
            outs, eps = [node], node.args[7]
        scale, shift = _affine(graph_module, node.args[1:5], eps, src)
        if scale is None:
            continue
        k = count
        graph_module.register_buffer(f"_bn_scale_{k}", scale)
        graph_module.register_buffer(f"_bn_shift_{k}", shift)
        with graph.inserting_before(node):
            s = graph.get_attr(f"_bn_scale_{k}")
            b = graph.get_attr(f"_bn_shift_{k}")
            mul = graph.call_function(aten.mul.Tensor, (src, s))
            add = graph.call_function(aten.add.Tensor, (mul, b))
        for new in (s, b, mul, add):
            new.meta.update({k2: v for k2, v in node.meta.items() if k2 in ("nn_module_stack", "stack_trace")})
        if "val" in src.meta:
            mul.meta["val"] = add.meta["val"] = src.meta["val"]
        s.meta["val"], b.meta["val"] = scale, shift  # quantizers read shapes and dtypes off it
        for out in outs:
            out.replace_all_uses_with(add)
        for out in outs:
            if out is not node:
                graph.erase_node(out)
        graph.erase_node(node)
        count += 1
    if count:
        graph.lint()
        graph_module.recompile()
    return count


def _affine(gm, params, eps: float, src):
    """(scale, shift) of an eval-mode BatchNorm, shaped to broadcast over its input."""
    import torch

    def value(n):
        return None if n is None else _attr(gm, n.target) if getattr(n, "op", None) == "get_attr" else False

    weight, bias, mean, var = (value(n) for n in params)
    if any(v is False for v in (weight, bias, mean, var)) or mean is None or var is None:
        return None, None
    scale = torch.rsqrt(var.float() + eps)
    if weight is not None:
        scale = scale * weight.float()
    shift = -mean.float() * scale + (bias.float() if bias is not None else 0.0)
    ndim = src.meta["val"].dim() if "val" in src.meta else 4
    shape = (1, -1) + (1,) * (ndim - 2)
    return scale.reshape(shape).detach().clone(), shift.reshape(shape).detach().clone()


def _attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj

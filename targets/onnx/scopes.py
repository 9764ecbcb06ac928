"""Which ONNX nodes a PyTorch module name or an operator type stands for.

The dynamo exporter records, on every node, the module path it came from
(`pkg.torch.onnx.name_scopes`: ['', 'se', 'se.reduce', 'conv2d_1'] for a convolution
inside `se.reduce`). The fp32 artifact keeps that record (targets/onnx/compact.py), so
that `exclude: [se.reduce]` (or the whole block, `se`) means the same layers on ONNX as
on the torch-based targets; `se:ops` means the nodes `se`'s own forward made (its
`scale * x`), not its children's. ONNX node names are accepted too.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

from compressor.errors import RecipeError
from compressor.layers import is_ops, owner

SCOPE_KEY = "pkg.torch.onnx.name_scopes"


def node_modules(node) -> list[str]:
    """The module paths a node sits in, outermost first ([] when not recorded)."""
    for prop in node.metadata_props:
        if prop.key == SCOPE_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return []
            # First entry: the root module (''); last: the FX node's own name.
            return [s for s in scopes[1:-1] if isinstance(s, str) and s]
    return []


def nodes_to_exclude(path: Path, exclude: list[str], exclude_ops: list[str]) -> list[str]:
    """ONNX node names for `exclude` (module or node names) and `exclude_ops` (op types)."""
    if not exclude and not exclude_ops:
        return []
    import onnx

    nodes = list(onnx.load(str(path), load_external_data=False).graph.node)
    by_name = {n.name for n in nodes}
    scopes = {n.name: node_modules(n) for n in nodes}
    out: list[str] = []
    for name in exclude:
        if name in by_name:
            out.append(name)
            continue
        if is_ops(name):  # the nodes the module's own forward made, none of its children's
            own = owner(name)
            hits = [n for n, mods in scopes.items() if (mods[-1] if mods else "") == own]
            if not hits and not (own == "" or any(own in mods for mods in scopes.values())):
                raise RecipeError(_unknown(own, scopes))
            out.extend(hits)  # none: the exporter folded them away, nothing to keep float
            continue
        hits = [n for n, mods in scopes.items() if name in mods]
        for alias in ([] if hits else _folded_into(name)):
            hits = [n for n, mods in scopes.items() if alias in mods and mods[-1] == alias]
            if hits:
                break
        if not hits:
            raise RecipeError(_unknown(name, scopes))
        out.extend(hits)
    out = _with_shape_ops(nodes, out)
    for op in exclude_ops:
        if not onnx.defs.has(op):
            close = difflib.get_close_matches(op, sorted({n.op_type for n in nodes}), n=1, cutoff=0.5)
            raise RecipeError(f"exclude_ops names {op!r}, which is not an ONNX operator type"
                              + (f"; did you mean {close[0]!r}?" if close else "")
                              + " (the onnx target takes ONNX op types such as HardSigmoid, Softmax)")
        out.extend(n.name for n in nodes if n.op_type == op)
    return list(dict.fromkeys(out))


# Ops that only move data. ONNX Runtime quantizes them too (a Q/DQ pair on each side),
# which on a float neighbour adds error and saves nothing.
SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose")


def _with_shape_ops(nodes, excluded: list[str]) -> list[str]:
    """Add each shape-only node of no module of its own (a `torch.flatten` in the top
    level's forward) that reads from, or only feeds, a node kept in float: otherwise
    keeping `head` float still quantizes the flatten in front of it."""
    if not excluded:
        return excluded
    keep = set(excluded)
    producer = {o: n.name for n in nodes for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    loose = [n for n in nodes if n.op_type in SHAPE_OPS and not node_modules(n) and n.name not in keep]
    changed = True
    while changed:  # chains of reshapes
        changed = False
        for n in loose:
            if n.name in keep:
                continue
            fed_by_float = bool(n.input) and producer.get(n.input[0]) in keep
            users = [u for o in n.output for u in consumers.get(o, [])]
            feeds_float = bool(users) and all(u in keep for u in users)
            if fed_by_float or feeds_float:
                keep.add(n.name)
                excluded = [*excluded, n.name]
                changed = True
    return excluded


def _folded_into(name: str) -> list[str]:
    """Where a convolution's nodes go when the exporter folds the BatchNorm after it into
    it: the fused Conv carries the BatchNorm's scope. The BatchNorm is the next child of a
    Sequential ('features.0.0' -> 'features.0.1') or a sibling named like it ('conv1' ->
    'bn1', 'conv' -> 'bn')."""
    parent, _, leaf = name.rpartition(".")
    prefix = f"{parent}." if parent else ""
    out = []
    if leaf.isdigit():
        out.append(f"{prefix}{int(leaf) + 1}")
    if "conv" in leaf:
        out += [prefix + leaf.replace("conv", "bn"), prefix + leaf.replace("conv", "norm")]
    return out


def module_names(path: Path) -> list[str]:
    """Every module path recorded in the graph, in node order."""
    import onnx

    seen: dict[str, None] = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        for m in node_modules(n):
            seen.setdefault(m, None)
    return list(seen)


def _unknown(name: str, scopes: dict[str, list[str]]) -> str:
    modules = list(dict.fromkeys(m for mods in scopes.values() for m in mods))
    if not modules:
        return (f"exclude names {name!r}, which is no node of this ONNX graph, and the graph records no "
                "module names (exported by another tool); name ONNX nodes, e.g. "
                f"{list(scopes)[:4]}")
    close = difflib.get_close_matches(name, modules + list(scopes), n=1, cutoff=0.6)
    return (f"exclude names {name!r}, which is neither a module of the model nor an ONNX node"
            + (f"; did you mean {close[0]!r}?" if close else f"; modules: {', '.join(modules[:8])}"))


def follow_preprocess(src: Path, pre: Path, names: list[str]) -> list[str]:
    """The nodes of the pre-processed graph `pre` that stand for nodes `names` of `src`.

    ONNX Runtime's pre-processing rewrites some nodes into unnamed ones (HardSwish becomes
    an unnamed HardSigmoid and Mul), which `nodes_to_exclude` could not name: such a node
    is given a name (the file is rewritten) and belongs to the source node whose output
    it produces, or else to the one its results feed."""
    if not names:
        return []
    import onnx

    base_nodes = onnx.load(str(src), load_external_data=False).graph.node
    base_names = {n.name for n in base_nodes}
    made_by = {o: n.name for n in base_nodes for o in n.output}
    proto = onnx.load(str(pre), load_external_data=False)
    nodes = list(proto.graph.node)
    renamed = False
    for i, n in enumerate(nodes):
        if not n.name:
            n.name, renamed = f"pre_{i}_{n.op_type}", True
    owner: dict[str, str] = {}
    for n in nodes:
        if n.name in base_names:
            owner[n.name] = n.name
        elif src_node := next((made_by[o] for o in n.output if o in made_by), None):
            owner[n.name] = src_node
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    for n in reversed(nodes):  # intermediates of a rewrite: owned by what they feed
        if n.name not in owner:
            owners = {owner.get(u) for o in n.output for u in consumers.get(o, [])}
            if len(owners) == 1 and None not in owners:
                owner[n.name] = owners.pop()
    if renamed:
        onnx.save(proto, str(pre))
    wanted = set(names)
    return [n.name for n in nodes if owner.get(n.name) in wanted]

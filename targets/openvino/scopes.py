"""Which OpenVINO ops a PyTorch module name or an op type stands for.

The fp32 export records, in the IR, the module paths of every op it can place
(`scopes`: op friendly name -> module paths, outermost first): from the ONNX graph's
name scopes when the IR came from our ONNX export (OpenVINO's ONNX reader names an op
after its node, `node_Conv_3` or `node_Conv_3/WithoutBiases` for the parts of one), or
from the `__module.features.0.0/aten::...` prefixes OpenVINO's PyTorch converter gives.
So `exclude: [features.0]` keeps the same layers float here as on the other targets, and
NNCF's IgnoredScope gets exact op names.
"""

from __future__ import annotations

import difflib
import functools

from compressor.errors import RecipeError

# Op types whose nodes hold no arithmetic worth naming in a scope record.
_PLUMBING = ("Constant", "Parameter", "Result", "ShapeOf", "Convert")


def scopes_from_onnx(ov_model, onnx_path) -> dict[str, list[str]]:
    """Op name -> module paths, for an IR read from our ONNX export."""
    import onnx

    from targets.onnx.scopes import node_modules

    by_node = {n.name: node_modules(n) for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    out: dict[str, list[str]] = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() in _PLUMBING:
            continue
        name = op.get_friendly_name()
        mods = by_node.get(name.split("/")[0])
        if mods:
            out[name] = mods
    return out


def scopes_from_torch(ov_model) -> dict[str, list[str]]:
    """Op name -> module paths, for an IR converted from PyTorch (`__module.a.b/...`)."""
    out: dict[str, list[str]] = {}
    for op in ov_model.get_ordered_ops():
        name = op.get_friendly_name()
        if op.get_type_name() in _PLUMBING or not name.startswith("__module."):
            continue
        path = name.split("/")[0].removeprefix("__module.")
        parts = path.split(".")
        out[name] = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return out


def recorded_scopes(path) -> dict[str, list[str]]:
    """The scope record of the IR at `path`, read once per file version (the fallback
    asks about every layer of one fp32 IR)."""
    import os

    st = os.stat(path)
    return _recorded(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _recorded(path: str, _mtime: int, _size: int) -> dict[str, list[str]]:
    from targets.openvino.runtime import read_model, record_of

    return record_of(read_model(path)).get("scopes") or {}


def ops_to_ignore(scopes: dict[str, list[str]], exclude: list[str]) -> list[str]:
    """OpenVINO op names for `exclude` (module names, '<module>:ops', or op names)."""
    from compressor.layers import is_ops, owner  # torch-side helpers: imported when excluding, not on load
    from targets.onnx.scopes import _folded_into

    out: list[str] = []
    for name in exclude:
        if name in scopes:
            out.append(name)
            continue
        if is_ops(name):  # the ops the module's own forward made, none of its children's
            own = owner(name)
            hits = [op for op, mods in scopes.items() if (mods[-1] if mods else "") == own]
            if not hits and own and not any(own in mods for mods in scopes.values()):
                raise RecipeError(_unknown(own, scopes))
            out.extend(hits)
            continue
        hits = [op for op, mods in scopes.items() if name in mods]
        for alias in ([] if hits else _folded_into(name)):  # a BatchNorm folded into its convolution
            hits = [op for op, mods in scopes.items() if alias in mods and mods[-1] == alias]
            if hits:
                break
        if not hits:
            raise RecipeError(_unknown(name, scopes))
        out.extend(hits)
    return list(dict.fromkeys(out))


def known_op_types() -> set[str]:
    """Every OpenVINO op type NNCF knows (its metatypes' op names)."""
    from targets.openvino.quiet import prepare

    prepare()
    from nncf.openvino.graph.metatypes.openvino_metatypes import OV_OPERATOR_METATYPES

    return {n for cls in OV_OPERATOR_METATYPES.registry_dict.values() for n in cls.op_names}


def check_op_types(types: list[str], present: set[str]) -> None:
    """Refuse an exclude_ops entry that is no OpenVINO op type, naming the closest."""
    known = known_op_types() | present
    for op in types:
        if op not in known:
            close = difflib.get_close_matches(op, sorted(present) or sorted(known), n=1, cutoff=0.5)
            raise RecipeError(f"exclude_ops names {op!r}, which is not an OpenVINO op type"
                              + (f"; did you mean {close[0]!r}?" if close else "")
                              + " (the openvino target takes OpenVINO op types such as Sigmoid, HSwish, "
                              "Softmax, MVN)")


def _unknown(name: str, scopes: dict[str, list[str]]) -> str:
    modules = list(dict.fromkeys(m for mods in scopes.values() for m in mods))
    if not modules:
        return (f"exclude names {name!r}, and this IR records no module names (made by another tool); "
                f"name OpenVINO ops, e.g. {list(scopes)[:4]}")
    close = difflib.get_close_matches(name, modules, n=1, cutoff=0.6)
    return (f"exclude names {name!r}, which is neither a module of the model nor an OpenVINO op"
            + (f"; did you mean {close[0]!r}?" if close else f"; modules: {', '.join(modules[:8])}"))

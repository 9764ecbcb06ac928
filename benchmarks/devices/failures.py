"""One line for an artifact a device's runtime cannot load or run, naming the operator
(or opset, or IR version) it lacks when the runtime's own words say which."""

from __future__ import annotations

import re
from pathlib import Path

RUNTIME_OF = {"onnx": ("onnxruntime",), "tflite": ("ai-edge-litert", "tflite-runtime"), "openvino": ("openvino",),
              "executorch": ("executorch",)}

_ORT_OP = re.compile(r"Could not find an implementation for ([\w.]+)\((\d+)\) node with name|"
                     r"(?:([\w.]+):)?(\w+)\((-?\d+)\) is not a registered function/op")
_ORT_OPSET = re.compile(r"ValidateOpsetForDomain|ONNX Runtime only \*guarantees\* support|"
                        r"[Oo]pset \d+ is under development")
_ORT_TILL = re.compile(r"support for domain ([\w.]*) is till opset (\d+)")
_ORT_IR = re.compile(r"Unsupported model IR version: (\d+)(?:, max supported IR version: (\d+))?")
_ORT_NOISE = re.compile(r"(failed:)\s*/onnxruntime_src/\S+:\d+ [^()]*\((?:[^()]|\([^()]*\))*\)\s*")
_LITE_OP = re.compile(r"Didn't find op for builtin opcode '?(\w+)'? version '?(\d+)|unresolved custom op:?\s*'?([\w/.-]+)",
                      re.IGNORECASE)
_ONNX_DOMAIN = ("", "ai.onnx")


def _onnx_ops(path: Path) -> tuple[int | None, int | None, dict[str, int]]:
    """(IR version, ai.onnx opset, {operator: the opset its version there is from}) of
    an ONNX file on this side, read without its external data; Nones where unreadable."""
    try:
        import onnx
        import onnx.defs

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None, None, {}
    opset = next((o.version for o in proto.opset_import if o.domain in _ONNX_DOMAIN), None)
    since: dict[str, int] = {}
    graphs = [proto.graph]
    while graphs:
        for node in graphs.pop().node:
            graphs += [a.g for a in node.attribute if a.HasField("g")]
            graphs += [g for a in node.attribute for g in a.graphs]
            if node.domain in _ONNX_DOMAIN and opset and node.op_type not in since:
                try:
                    since[node.op_type] = onnx.defs.get_schema(node.op_type, opset, "").since_version
                except Exception:  # not an ai.onnx operator at that opset: the checker said so at home
                    pass
    return proto.ir_version or None, opset, since


def _ops_newer(since: dict[str, int], than: int) -> str:
    ops = sorted((v, op) for op, v in since.items() if v > than)
    return ", ".join(f"{op} (opset {v})" for v, op in ops[::-1][:4]) + (" and more" if len(ops) > 4 else "")


def load_failure(device: str, job, error: str, info: dict) -> str:
    """One line for an artifact the device's runtime could not load or run, naming the
    operator it lacks when the runtime or the artifact says which."""
    runtimes = info.get("runtimes", {})
    rt = next((f"{r} {runtimes[r]}" for r in RUNTIME_OF[job.target] if r in runtimes), job.target)
    cannot = f"{device}: {rt} on the device cannot run {job.name}"
    if job.target == "onnx":
        if m := _ORT_OP.search(error):
            op, version = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(5))
            domain = m.group(3) if m.group(3) not in (None, "", "ai.onnx") else None
            named = f"{domain + ':' if domain else ''}{op}" + (f" (opset {version})" if int(version) > 0 else "")
            return (f"{cannot}: it lacks operator {named}; upgrade onnxruntime there or export without it "
                    "(an older opset may write it from older operators)")
        if m := _ORT_IR.search(error):
            upto = f" up to {m.group(2)}" if m.group(2) else ""
            return (f"{cannot}: it reads ONNX IR version{upto} only, the artifact is IR version {m.group(1)}; "
                    "upgrade onnxruntime there")
        if _ORT_OPSET.search(error):
            _, opset, since = _onnx_ops(job.path)
            till = _ORT_TILL.search(error)
            top = int(till.group(2)) if till else (opset - 1 if opset else None)
            stamped = f"ai.onnx opset {opset}" if opset else "the opset"
            stops = f", the device's runtime stops at opset {till.group(2)}" if till else ""
            older = f"opset {till.group(2)}" if till else "an older opset"
            if lacking := (_ops_newer(since, top) if top else ""):
                return (f"{cannot}: it lacks operator {lacking}: the artifact is {stamped}{stops}; upgrade "
                        f"onnxruntime there or export with {older}")
            return (f"{cannot}: it does not support {stamped}, which the artifact is stamped with"
                    f"{stops or ' (no operator in it needs that opset)'}; upgrade onnxruntime there "
                    f"or export with {older}")
        error = _ORT_NOISE.sub(r"\1 ", error)
    if m := _LITE_OP.search(error):
        if m.group(1):  # a builtin newer than the runtime: the converter stamped a later version of it
            return (f"{cannot}: it lacks operator {m.group(1)} version {m.group(2)}; upgrade the TFLite runtime "
                    "there or convert with an older converter")
        return f"{cannot}: it lacks operator {m.group(3)}; upgrade the TFLite runtime there or convert without it"
    return f"{device}: {job.name}: {error}"

"""Where the bytes of a .tflite file go: constant data and quantization parameters by the
role of their tensor (weights and biases of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED,
everything else), zero points, names, metadata; the rest is flatbuffer tables, shapes,
operators and padding. Shared buffers and shared zero-point vectors count once.

    python -m targets.tflite.bytes model.tflite
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

_KERNELS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
VECTOR_PREFIX = 4  # a flatbuffer vector's length field


def breakdown(path: Path) -> dict[str, int]:
    """Bytes per category; the values add up to the file size."""
    from ai_edge_litert import schema_py_generated as schema

    from targets.tflite import flatbuf

    path = Path(path)
    m = flatbuf.read(path)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out: dict[str, int] = {}

    def add(key: str, n: int) -> None:
        out[key] = out.get(key, 0) + n

    buffers_seen: set[int] = set()
    zero_points_seen: set[bytes] = set()
    for sg in m.subgraphs:
        role: dict[int, str] = {}
        for op in sg.operators:
            oc = m.operatorCodes[op.opcodeIndex]
            if op_names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode)) in _KERNELS:
                for k, name in ((1, "weight"), (2, "bias")):
                    if k < len(op.inputs) and op.inputs[k] >= 0:
                        role[op.inputs[k]] = name
        for i, t in enumerate(sg.tensors):
            r = role.get(i, "other")
            data = m.buffers[t.buffer].data if t.buffer else None
            if data is not None and len(data) and t.buffer not in buffers_seen:
                buffers_seen.add(t.buffer)
                add(f"{r} data", len(data) + VECTOR_PREFIX)
            q = t.quantization
            if q is not None and q.scale is not None and len(q.scale):
                add(f"{r} scales", 4 * len(q.scale) + VECTOR_PREFIX)
                zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], dtype=np.int64).tobytes()
                if zp and zp not in zero_points_seen:  # flatbuf.write stores each distinct vector once
                    zero_points_seen.add(zp)
                    add("zero points", len(zp) + VECTOR_PREFIX)
                for field in ("min", "max"):
                    v = getattr(q, field)
                    if v is not None and len(v):
                        add("min/max", 4 * len(v) + VECTOR_PREFIX)
            if t.name:
                add("tensor names", len(t.name) + VECTOR_PREFIX + 1)  # + the terminating NUL
    for md in m.metadata or []:
        data = m.buffers[md.buffer].data
        if data is not None and md.buffer not in buffers_seen:
            buffers_seen.add(md.buffer)
            add("metadata", len(data) + VECTOR_PREFIX)
    total = path.stat().st_size
    out["tables, shapes, operators, padding"] = total - sum(out.values())
    return out


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    for p in paths:
        parts = breakdown(Path(p))
        total = sum(parts.values())
        print(f"{p}: {total} bytes")
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {k:36s} {v:10d}  {100 * v / total:6.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

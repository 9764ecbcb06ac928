"""What ONNX Runtime's CPU provider turns a QDQ graph into when it loads it: the QDQ
pairs around a Conv must fuse into QLinearConv for int8 to be faster than float (uint8
activations are what its x86 kernels fuse), so the report shows the fused op types."""

from __future__ import annotations

import tempfile
from pathlib import Path


def fused_op_types(path: Path) -> dict[str, int]:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ort-fused-") as d:
        opt = ort.SessionOptions()
        opt.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opt.optimized_model_filepath = str(Path(d) / "fused.onnx")
        ort.InferenceSession(str(path), opt, providers=["CPUExecutionProvider"])
        counts: dict[str, int] = {}
        for node in onnx.load(opt.optimized_model_filepath).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))

"""A fixed reference workload, timed next to every artifact.

CI runners differ in speed from each other and from the machine that measured the
baseline. Dividing an artifact's latency by this workload's latency, timed in the same
process with the same thread count, cancels most of that difference (the gate's
`normalize` option). The workload is a small convolutional network with fixed weights,
run by ONNX Runtime: compute-bound like the models we measure, and always installed.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

SHAPE = (1, 48, 28, 28)


@lru_cache(maxsize=1)
def _model_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1234)
    nodes, inits = [], []
    x = "x"
    for i in range(3):
        w = (rng.standard_normal((48, 48, 3, 3)) * 0.04).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x = f"r{i}"
    graph = helper.make_graph(nodes, "reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, SHAPE)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def time_reference(threads: int, runs: int = 30, warmup: int = 5) -> float:
    """Median milliseconds of one run of the reference workload."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(_model_bytes(), so, providers=["CPUExecutionProvider"])
    feed = {"x": np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)}
    for _ in range(warmup):
        sess.run(None, feed)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        samples.append(time.perf_counter() - t)
    return float(np.median(samples) * 1e3)

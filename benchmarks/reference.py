"""A fixed reference workload, timed in blocks between the artifact's own timed runs.

CI runners differ in speed from each other and from the machine that measured the
baseline, and a shared machine slows down and speeds up while it measures. Dividing
each block of an artifact's runs by the reference workload's median in the same block
(same process, moments apart) cancels most of both; the gate's `normalize` option
compares these normalised runs. The workload is a small convolutional network with
fixed weights run by ONNX Runtime: compute-bound like the models we measure, and always
installed. It runs on one thread: measured with two, it was bimodal (0.5 or 0.87 ms on
the same machine, depending on whether the second thread happened to be awake), which
made it a worse yardstick than no yardstick.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

SHAPE = (1, 48, 28, 28)
LAYERS = 3


@lru_cache(maxsize=1)
def _model_bytes() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1234)
    nodes, inits, x = [], [], "x"
    for i in range(LAYERS):
        w = (rng.standard_normal((SHAPE[1], SHAPE[1], 3, 3)) * 0.04).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, SHAPE)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


class ReferenceWorkload:
    def __init__(self, warmup: int = 5) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(_model_bytes(), so, providers=["CPUExecutionProvider"])
        self._feed = {"x": np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)}
        for _ in range(warmup):
            self._sess.run(None, self._feed)

    def block_ms(self, runs: int = 5) -> float:
        """Median milliseconds over `runs`, after one untimed run (the artifact's thread
        pool may still be spinning down)."""
        self._sess.run(None, self._feed)
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            self._sess.run(None, self._feed)
            samples.append(time.perf_counter() - t)
        return float(np.median(samples) * 1e3)


"""Latency on ONNX Runtime, in this process: of one layer (for the pruning search's
lookup table) and of a whole model (to check what the search promised).

A layer is timed as a one-node ONNX graph (Conv + Relu, or Gemm) built directly with
onnx.helper, so a lookup costs tens of milliseconds instead of a model export. Each
shape is timed once per process (cached).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from compressor.model import Model
    from compressor.prune.search import LayerSpec


class OrtLayerTimer:
    def __init__(self, threads: int = 2, min_runs: int = 15, min_time_s: float = 0.03) -> None:
        self.threads = threads
        self.min_runs = min_runs
        self.min_time_s = min_time_s
        self.cache: dict[LayerSpec, float] = {}
        self._overhead: float | None = None

    def __call__(self, spec: "LayerSpec") -> float:
        if spec not in self.cache:
            # Less the cost of a session call that does nothing: in a whole model that cost
            # is paid once, not once per layer.
            self.cache[spec] = max(0.0, self._time(spec) - self.overhead_ms)
        return self.cache[spec]

    @property
    def overhead_ms(self) -> float:
        if self._overhead is None:
            from compressor.prune.search import LayerSpec

            self._overhead = self._time(LayerSpec("linear", 1, 1))
        return self._overhead

    def _time(self, spec: "LayerSpec") -> float:
        import onnxruntime as ort

        proto, feed = _layer_graph(spec)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return time_session(sess, feed, warmup=3, min_runs=self.min_runs, min_time_s=self.min_time_s)


def time_session(sess, feed: dict[str, np.ndarray], warmup: int, min_runs: int, min_time_s: float) -> float:
    """Median milliseconds of `sess.run` after warm-up."""
    for _ in range(warmup):
        sess.run(None, feed)
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        sess.run(None, feed)
        samples.append(time.perf_counter() - t)
    return 1e3 * float(np.median(samples))


def _layer_graph(spec: "LayerSpec"):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if spec.kind == "linear":
        x = rng.standard_normal((1, spec.cin), dtype=np.float32)
        w = rng.standard_normal((spec.cout, spec.cin), dtype=np.float32)
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
        out_shape = [1, spec.cout]
    else:
        x = rng.standard_normal((1, spec.cin, *spec.in_hw), dtype=np.float32)
        w = rng.standard_normal((spec.cout, spec.cin // spec.groups, *spec.kernel), dtype=np.float32)
        # Conv + Relu: the fusion every conv of a CNN gets in the real graph.
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=list(spec.stride),
                                  pads=list(spec.padding) * 2, dilations=list(spec.dilation), group=spec.groups),
                 helper.make_node("Relu", ["c"], ["y"])]
        out_shape = [1, spec.cout, *spec.out_hw]
    b = np.zeros(spec.cout, dtype=np.float32)
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto, {"x": x}


def model_latency_ms(model: "Model", threads: int = 2, runs: int = 30) -> float:
    """Export `model` to fp32 ONNX (the ONNX target's exporter) in a temporary folder
    and time it at batch 1 with onnxruntime in this process."""
    import targets
    from targets.base import Device

    with tempfile.TemporaryDirectory(prefix="compressor-latency-") as d:
        art = targets.get("onnx").export(model, None, Path(d) / "probe", {}, None)
        sess = targets.get("onnx").open_session(art.path, Device(), threads)
        feed = {s.name: np.random.default_rng(0).random(s.concrete(1, {}), dtype=np.float32).astype(s.dtype)
                for s in sess.inputs}
        return time_session(_Raw(sess), feed, warmup=5, min_runs=runs, min_time_s=0.2)


class _Raw:
    """OrtSession.run takes feeds only; time_session calls run(None, feeds)."""

    def __init__(self, sess) -> None:
        self.sess = sess

    def run(self, _outputs, feeds):
        return self.sess.run(feeds)

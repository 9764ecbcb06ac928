"""A tiny ONNX model whose inputs are not tensors of noise (for bench --inputs/--value)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

VOCAB = 10


def audio_model(path: Path, with_rate: bool = True) -> Path:
    """y = sum(audio) * sample_rate + sum(table[ids]) + sum(state): audio [N, time] with a
    dynamic time axis, ids [N, 4] int64 into a 10-row table (ORT refuses ids past it),
    sample_rate an int64 scalar, state a [2, 3] tensor without a batch axis."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(VOCAB, dtype=np.float32).reshape(VOCAB, 1), "table")
    nodes = [helper.make_node("ReduceSum", ["audio", "ax1"], ["a"], keepdims=0),
             helper.make_node("Gather", ["table", "ids"], ["g"]),
             helper.make_node("ReduceSum", ["g", "ax12"], ["gs"], keepdims=0),
             helper.make_node("ReduceSum", ["state"], ["ss"], keepdims=0),
             helper.make_node("Add", ["gs", "ss"], ["t"])]
    inputs = [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", "time"]),
              helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4]),
              helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 3])]
    if with_rate:
        nodes += [helper.make_node("Cast", ["sample_rate"], ["sr"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["a", "sr"], ["am"]), helper.make_node("Add", ["am", "t"], ["y"])]
        inputs.append(helper.make_tensor_value_info("sample_rate", TensorProto.INT64, []))
    else:
        nodes.append(helper.make_node("Add", ["a", "t"], ["y"]))
    consts = [numpy_helper.from_array(np.array([1], np.int64), "ax1"),
              numpy_helper.from_array(np.array([1, 2], np.int64), "ax12")]
    graph = helper.make_graph(nodes, "audio", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
                              initializer=[table, *consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path

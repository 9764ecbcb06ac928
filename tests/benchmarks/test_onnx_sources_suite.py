"""The onnx_sources suite's own code on a legacy-exported digits CNN: ours against ONNX
Runtime's quantize_static by hand on the same file, scored and profiled (the full suite,
ResNet-18 and MobileNetV2 from two exporters, is benchmarks/suite/onnx_sources.py)."""

import warnings

import numpy as np

from benchmarks.suite import onnx_sources as suite
from compressor.data import digits_arrays


def test_ours_and_by_hand_int8_of_a_third_party_file(tmp_path):
    import torch

    from compressor.zoo.digits import WEIGHTS_PATH, digits_cnn
    from safetensors.torch import load_file

    module = digits_cnn()
    module.load_state_dict(load_file(str(WEIGHTS_PATH)))
    src = tmp_path / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(1, 1, 8, 8),), str(src), dynamo=False, input_names=["pixels"],
                          output_names=["logits"], opset_version=17)
    x, _ = digits_arrays("test")
    calib, val = x[:32], x[32:64]
    model, fp32, int8, seconds = suite.ours_int8(src, tmp_path, calib, "pixels")
    assert model.dynamic_batch is False and seconds > 0 and int8.meta["op_types"].get("QuantizeLinear")
    ref = model.run({"pixels": val})[0]
    hand = tmp_path / "hand.onnx"
    assert suite.by_hand_int8(src, hand, calib, "pixels") > 0
    ours_cos = suite._cosine_of(int8.path, ref, val, "pixels", 1)
    hand_cos = suite._cosine_of(hand, ref, val, "pixels", 1)
    assert ours_cos[0] > 0.99 and hand_cos[0] > 0.99 and ours_cos[1] <= ours_cos[0]
    prof = suite.kernel_ms(int8.path, {"pixels": val[:1]}, 1, tmp_path, runs=5)
    assert prof["total_ms"] > 0 and prof["nodes"] > 0 and prof["top"]
    assert not list(tmp_path.glob("prof-*.json"))  # the trace is removed
    assert np.isfinite(suite.cosine(ref, ref)[0])

import numpy as np
import onnx
import pytest

from targets.validate import compare

MAX_ACCURACY_LOSS = 0.005  # half a percentage point


@pytest.mark.parametrize("label", ["static-minmax", "static-percentile", "static-entropy"])
def test_static_int8_loses_at_most_half_a_point_of_accuracy(
        onnx_artifacts, ort_session, digits_test, torch_test_logits, top1, label):
    x, y = digits_test
    got = ort_session(onnx_artifacts[label].path).run({"pixels": x})[0]
    assert top1(got, y) >= top1(torch_test_logits, y) - MAX_ACCURACY_LOSS


@pytest.mark.parametrize("label", ["static-minmax", "static-percentile", "static-entropy"])
def test_static_int8_is_at_most_035x_the_fp32_size(onnx_artifacts, label):
    assert onnx_artifacts[label].size_bytes <= 0.35 * onnx_artifacts["fp32"].size_bytes


def test_static_int8_is_a_qdq_graph_recording_its_calibration(onnx_artifacts):
    art = onnx_artifacts["static-entropy"]
    assert art.precision == "int8" and art.meta["format"] == "QDQ"
    assert art.meta["calibration"] == "entropy" and art.meta["calibration_samples"] == 128
    assert art.meta["op_types"]["QuantizeLinear"] > 0 and art.meta["op_types"]["DequantizeLinear"] > 0
    assert art.meta["dynamic_batch"] is True


def test_calibration_methods_give_different_activation_scales(onnx_artifacts):
    def activation_scales(label):
        proto = onnx.load(str(onnx_artifacts[label].path))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
        return [float(inits[n.input[1]]) for n in proto.graph.node if n.op_type == "QuantizeLinear"]

    minmax, entropy = activation_scales("static-minmax"), activation_scales("static-entropy")
    assert len(minmax) == len(entropy) > 0
    assert not np.allclose(minmax, entropy)


@pytest.mark.parametrize("label", ["int8-dynamic", "fp16"])
def test_dynamic_int8_and_fp16_keep_cosine_at_least_0999(
        onnx_artifacts, ort_session, digits_test, torch_test_logits, label):
    x, _ = digits_test
    got = ort_session(onnx_artifacts[label].path).run({"pixels": x})
    fid = compare([torch_test_logits], got, ["logits"])
    assert fid.cosine >= 0.999 and fid.cosine_min >= 0.99


def test_fp16_keeps_float32_inputs_and_halves_the_weights(onnx_artifacts, ort_session):
    art = onnx_artifacts["fp16"]
    assert ort_session(art.path).inputs[0].dtype == "float32"
    assert 0.45 < art.size_bytes / onnx_artifacts["fp32"].size_bytes < 0.6
    proto = onnx.load(str(art.path))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)


@pytest.mark.parametrize("batch", [1, 32])
def test_quantized_artifacts_keep_the_dynamic_batch(onnx_artifacts, ort_session, digits_test, batch):
    x = digits_test[0][:batch]
    for label in ("static-minmax", "int8-dynamic", "fp16"):
        assert ort_session(onnx_artifacts[label].path).run({"pixels": x})[0].shape == (batch, 10)


def test_static_int8_without_calibration_data_is_a_data_error(tmp_path, digits_model, onnx_artifacts):
    import targets
    from compressor.errors import DataError
    from compressor.config.quantize import QuantVariant

    with pytest.raises(DataError, match="needs calibration data"):
        targets.get("onnx").export(digits_model, QuantVariant(mode="static"), tmp_path / "q", {}, None,
                                   base=onnx_artifacts["fp32"])
    assert list(tmp_path.iterdir()) == []

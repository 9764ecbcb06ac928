import numpy as np
import onnx
import pytest

import targets
from targets.onnx.runtime import check_onnx_file


def test_fp32_export_matches_pytorch(onnx_artifacts, ort_session, digits_test, torch_test_logits):
    x, _ = digits_test
    got = ort_session(onnx_artifacts["fp32"].path).run({"pixels": x})[0]
    assert np.abs(got - torch_test_logits).max() < 1e-4


@pytest.mark.parametrize("batch", [1, 32])
def test_fp32_export_has_a_dynamic_batch_axis(onnx_artifacts, ort_session, digits_test, digits_model, batch):
    art = onnx_artifacts["fp32"]
    assert art.meta["dynamic_batch"] is True
    session = ort_session(art.path)
    assert session.inputs[0].batch_dynamic
    x = digits_test[0][:batch]
    got = session.run({"pixels": x})[0]
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, digits_model.run({"pixels": x})[0], atol=1e-4)


def test_export_names_inputs_and_outputs_from_the_recipe(onnx_artifacts, ort_session):
    session = ort_session(onnx_artifacts["fp32"].path)
    assert [s.name for s in session.inputs] == ["pixels"]
    assert session.output_names == ["logits"]


def test_exported_file_passes_the_checker_and_records_its_ops(onnx_artifacts):
    art = onnx_artifacts["fp32"]
    check_onnx_file(art.path)
    assert art.meta["op_types"].get("Conv") == 4
    assert art.meta["opset"] >= 18
    assert art.extra_files == []


def test_export_leaves_only_the_artifacts_in_the_output_dir(onnx_artifacts):
    out = onnx_artifacts["fp32"].path.parent
    expected = {a.path.name for a in onnx_artifacts.values()}
    assert {p.name for p in out.iterdir()} == expected


def test_external_data_export_writes_a_data_file_counted_in_the_size(tmp_path, digits_model):
    target = targets.get("onnx")
    art = target.export(digits_model, None, tmp_path / "ext", {"external_data": True}, None)
    data = tmp_path / "ext.onnx.data"
    assert art.extra_files == [data] and data.stat().st_size > 200_000
    assert art.size_bytes == art.path.stat().st_size + data.stat().st_size
    assert art.path.stat().st_size < 50_000  # the weights left the protobuf
    check_onnx_file(art.path)
    assert target.companion_files(art.path) == [data]
    proto = onnx.load(str(art.path), load_external_data=False)
    assert any(i.data_location == onnx.TensorProto.EXTERNAL for i in proto.graph.initializer)


def test_an_output_named_like_an_inner_value_exports(tmp_path):
    """torch.onnx names inner values after their aten op ('embedding', 'linear') and then
    gives the outputs the user's names: an output called 'embedding' had two producers."""
    import torch

    from compressor.config.recipe import InputSpec
    from compressor.model import Model

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Embedding(50, 8)
            self.linear = torch.nn.Linear(8, 4)

        def forward(self, ids):
            return torch.nn.functional.normalize(self.linear(self.table(ids)).mean(1), dim=-1)

    torch.manual_seed(0)
    model = Model(Embed().eval(), [InputSpec(name="ids", shape=[1, 6], dtype="int64")],
                  output_names=["embedding"])
    art = targets.get("onnx").export(model, None, tmp_path / "m", {}, None)
    check_onnx_file(art.path)
    import onnxruntime as ort

    ids = np.arange(12, dtype=np.int64).reshape(2, 6)
    session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    np.testing.assert_allclose(session.run(None, {"ids": ids})[0], model.run({"ids": ids})[0], atol=1e-5)

import numpy as np
import pytest
import torch

from compressor.errors import ModelLoadError
from compressor.model import load_model
from compressor.config.recipe import InputSpec, ModelSpec

ZOO = "compressor.zoo.digits:digits_cnn"
PIXELS = [InputSpec(name="pixels", shape=[1, 1, 8, 8])]


def test_shipped_digits_cnn_reaches_98_percent_on_the_test_split(torch_test_logits, digits_test, top1):
    _, y = digits_test
    assert top1(torch_test_logits, y) >= 0.98


def test_untrained_factory_model_is_near_chance(digits_test, top1):
    # Guards the test above: accuracy comes from the shipped weights, not the data.
    x, y = digits_test
    model = load_model(ModelSpec(factory=ZOO, inputs=PIXELS))
    assert top1(model.run({"pixels": x})[0], y) < 0.5


def test_trusted_pt2_program_loads_and_matches_the_module(tmp_path, digits_model, digits_test):
    x, _ = digits_test
    ep = torch.export.export(digits_model.module, (torch.from_numpy(x[:4]),),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(tmp_path / "digits.pt2"))
    loaded = load_model(ModelSpec(program=tmp_path / "digits.pt2", trusted=True, inputs=[
        InputSpec(name="pixels", shape=[4, 1, 8, 8])]))
    got = loaded.run({"pixels": x[:4]})[0]
    np.testing.assert_allclose(got, digits_model.run({"pixels": x[:4]})[0], atol=1e-5)


def test_pt2_program_with_a_fixed_batch_is_refused_naming_the_fix(tmp_path, digits_model):
    # Validation and calibration run many samples at once; a fixed batch used to fail there
    # with torch's "Guard failed: x.size()[0] == 1" and a traceback.
    ep = torch.export.export(digits_model.module, (torch.rand(1, 1, 8, 8),))
    torch.export.save(ep, str(tmp_path / "fixed.pt2"))
    with pytest.raises(ModelLoadError) as e:
        load_model(ModelSpec(program=tmp_path / "fixed.pt2", trusted=True, inputs=PIXELS))
    msg = str(e.value)
    assert "\n" not in msg and "fixed batch ('x' takes batch 1 only)" in msg
    assert "dynamic_shapes={'x': {0: torch.export.Dim('batch')}}" in msg and "batch of 2 or more" in msg


def test_pt2_program_without_trusted_is_refused_before_reading_it(tmp_path):
    (tmp_path / "evil.pt2").write_bytes(b"anything")
    with pytest.raises(ModelLoadError, match="trusted: true"):
        load_model(ModelSpec(program=tmp_path / "evil.pt2", inputs=PIXELS))


def test_torch_save_state_dict_is_read_weights_only_and_checked_against_the_model(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="do not match the model: missing .*unexpected w"):
        load_model(ModelSpec(factory=ZOO, weights=tmp_path / "w.pt", inputs=PIXELS))


def test_weights_with_other_keys_name_missing_and_unexpected(tmp_path):
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelLoadError, match=r"do not match the model: missing .*unexpected encoder\.weight"):
        load_model(ModelSpec(factory=ZOO, weights=tmp_path / "other.safetensors", inputs=PIXELS))


def test_weights_with_wrong_shapes_are_a_model_load_error(tmp_path):
    from compressor.zoo.digits import digits_cnn
    from safetensors.torch import save_file

    save_file(digits_cnn(width=16).state_dict(), str(tmp_path / "w16.safetensors"))
    with pytest.raises(ModelLoadError, match="do not match the model"):
        load_model(ModelSpec(factory=ZOO, weights=tmp_path / "w16.safetensors", inputs=PIXELS))


def test_declared_input_shape_the_model_cannot_run_is_refused():
    with pytest.raises(ModelLoadError, match=r"does not run on its declared inputs \(pixels \[1, 3, 8, 8\]"):
        load_model(ModelSpec(factory=ZOO, inputs=[InputSpec(name="pixels", shape=[1, 3, 8, 8])]))


def test_factory_that_rejects_kwargs_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match="rejected kwargs"):
        load_model(ModelSpec(factory=ZOO, kwargs={"depth": 3}, inputs=PIXELS))

"""Weights given as torch.save state dicts (.pt/.pth/.bin), read with weights_only: the
containers training scripts write, the prefixes DataParallel and torch.compile add, and
the files that are refused (a pickled module, TorchScript, corrupt or empty files)."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from compressor.config.recipe import InputSpec, ModelSpec
from compressor.errors import ModelLoadError
from compressor.model import load_model
from compressor.zoo.digits import WEIGHTS_PATH, digits_cnn

ZOO = "compressor.zoo.digits:digits_cnn"
PIXELS = [InputSpec(name="pixels", shape=[1, 1, 8, 8])]


class Whole(torch.nn.Module):
    """A model pickled whole (torch.save(model)) rather than its state dict."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)


@pytest.fixture(scope="module")
def trained() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(WEIGHTS_PATH))


def load(path):
    return load_model(ModelSpec(factory=ZOO, weights=path, inputs=PIXELS))


def logits(model, digits_test):
    return model.run({"pixels": digits_test[0][:16]})[0]


@pytest.mark.parametrize("suffix,wrap", [
    (".pt", lambda sd: sd),
    (".pth", lambda sd: {"state_dict": sd, "epoch": 7, "optimizer": {"lr": 0.1}}),
    (".bin", lambda sd: {"model": sd}),
    (".pt", lambda sd: {"model_state_dict": sd, "best_acc": 0.97}),
    (".pt", lambda sd: {f"module.{k}": v for k, v in sd.items()}),                 # DataParallel / DDP
    (".pt", lambda sd: {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}}),   # torch.compile
    (".pth", lambda sd: {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}}),
])
def test_state_dict_containers_load_the_trained_weights(tmp_path, trained, digits_model, digits_test, suffix, wrap):
    path = tmp_path / f"ckpt{suffix}"
    torch.save(wrap(dict(trained)), path)
    np.testing.assert_array_equal(logits(load(path), digits_test), logits(digits_model, digits_test))


def test_a_pickled_module_is_refused_with_the_command_that_converts_it(tmp_path):
    torch.save(Whole(), tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError) as e:
        load(tmp_path / "whole.pt")
    msg = str(e.value)
    assert "pickled" in msg and "Whole" in msg and "weights_only=True" in msg
    assert "st.save_file(torch.load('whole.pt', weights_only=False).state_dict(), 'whole.safetensors')" in msg
    assert "\n" not in msg


def test_the_wrong_keys_name_the_first_few(tmp_path, trained):
    sd = {f"backbone.{k}": v for k, v in trained.items()}
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match=r"do not match the model: missing .*\(\+\d+ more\); unexpected backbone\."):
        load(tmp_path / "w.pt")
    torch.save(digits_cnn(width=16).state_dict(), tmp_path / "w16.pt")
    with pytest.raises(ModelLoadError, match="shape mismatch"):
        load(tmp_path / "w16.pt")


@pytest.mark.parametrize("content,says", [
    (b"", "is empty (0 bytes)"),
    (bytes(range(256)) * 8, "not a torch.save checkpoint"),
    (pickle.dumps({"weights": [1.0, 2.0]}), "not a readable torch.save state dict"),
])
def test_unreadable_files_are_one_line_each(tmp_path, content, says):
    (tmp_path / "w.pt").write_bytes(content)
    with pytest.raises(ModelLoadError, match=re.escape(says)):
        load(tmp_path / "w.pt")


def test_truncated_checkpoint_and_non_state_dicts_are_refused(tmp_path, trained):
    torch.save(dict(trained), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load(tmp_path / "cut.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ModelLoadError, match="holds a list, not a state dict"):
        load(tmp_path / "list.pt")
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, tmp_path / "meta.pt")
    with pytest.raises(ModelLoadError, match=r"keys 'epoch', 'config' but no state dict"):
        load(tmp_path / "meta.pt")


def test_torchscript_and_renamed_safetensors_are_named_for_what_they_are(tmp_path):
    torch.jit.save(torch.jit.trace(digits_cnn().eval(), torch.zeros(1, 1, 8, 8)), tmp_path / "ts.pt")
    with pytest.raises(ModelLoadError, match="is a TorchScript program, not a state dict"):
        load(tmp_path / "ts.pt")
    (tmp_path / "w.bin").write_bytes(WEIGHTS_PATH.read_bytes())
    with pytest.raises(ModelLoadError, match="is a safetensors file named .bin; rename it to w.safetensors"):
        load(tmp_path / "w.bin")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown weights format '.ckpt'"):
        load(tmp_path / "w.ckpt")

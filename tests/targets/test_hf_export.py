"""A Hugging Face BertModel as a user wraps it (the 0/1 attention mask passed as it is,
transformers' own mask code doing the rest) exported to TorchScript and TFLite, checked
on padded and unpadded inputs; and models that read the mask's values in Python, where
a trace would freeze a branch, refused in one line naming the line and a target that works."""

import numpy as np
import pytest

import targets
from compressor.errors import ExportError, UnsupportedOpError
from targets.base import Device, run_batched
from tiny_bert import UserEncoder, feeds, tiny


class SkipsFullMasks(UserEncoder):
    """Drops the mask when nothing is padded: a branch on the mask's values. Traced
    padded, the trace keeps the masked side, which is right for unpadded inputs too."""

    def forward(self, input_ids, attention_mask, token_type_ids):
        if attention_mask.all():
            attention_mask = None
        return super().forward(input_ids, attention_mask, token_type_ids)


class TrimsToLongest(UserEncoder):
    """Cuts the batch to its longest real sentence: a length read off the mask, which a
    trace freezes at the example's (wrong for every other length)."""

    def forward(self, input_ids, attention_mask, token_type_ids):
        n = int(attention_mask.sum(1).max())
        return super().forward(input_ids[:, :n], attention_mask[:, :n], token_type_ids[:, :n]).mean(1)


def assert_matches_torch(target: str, model, artifact) -> None:
    session = targets.get(target).open_session(artifact.path, Device("cpu"), 2)
    for padded in (True, False):
        got = run_batched(session, feeds(padded), 3)[0]
        assert np.abs(got - model.run(feeds(padded))[0]).max() < 1e-4, f"padded={padded}"


@pytest.mark.parametrize("wrapper", [UserEncoder, SkipsFullMasks])
def test_torchscript_traces_a_plain_bert_with_its_01_mask(tmp_path, wrapper):
    model = tiny(wrapper)
    art = targets.get("torchscript").export(model, None, tmp_path / "bert", {}, None)
    assert art.meta["capture"] == "trace" and art.meta["dynamic_batch"]
    # The tracer warned (transformers reads shapes as tensors; the wrapper may branch on
    # the mask): the trace was checked on unpadded and otherwise padded inputs instead.
    assert "data-dependent control flow at" in art.meta["trace_checked"]
    assert "agrees with the model on unpadded, otherwise padded" in art.meta["trace_checked"]
    assert_matches_torch("torchscript", model, art)


def test_tflite_converts_a_plain_bert_with_its_01_mask(tmp_path):
    model = tiny()
    art = targets.get("tflite").export(model, None, tmp_path / "bert", {}, None)
    assert_matches_torch("tflite", model, art)


def test_a_branch_the_trace_would_freeze_is_caught_and_refused_in_one_line(tmp_path):
    model = tiny(TrimsToLongest)
    with pytest.raises(ExportError) as e:
        targets.get("torchscript").export(model, None, tmp_path / "trim", {}, None)
    msg = str(e.value)
    assert "\n" not in msg and "data-dependent control flow at test_hf_export.py:" in msg
    assert "the trace differs from the model on unpadded inputs (max difference" in msg
    assert "torch.jit.script cannot compile it" in msg and "no other target (onnx, tflite) exports it" in msg
    with pytest.raises(UnsupportedOpError) as e:
        targets.get("tflite").export(model, None, tmp_path / "trim", {}, None)
    msg = str(e.value)
    assert "\n" not in msg and "reads a tensor's value at test_hf_export.py:" in msg
    assert "n = int(attention_mask.sum(1).max())" in msg
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_tflite_names_the_target_that_exports_a_mask_branch(tmp_path):
    with pytest.raises(UnsupportedOpError, match=r"reads a tensor's value at test_hf_export\.py:\d+ \(if "
                                                 r"attention_mask\.all\(\):\).*the torchscript target exports "
                                                 r"this model"):
        targets.get("tflite").export(tiny(SkipsFullMasks), None, tmp_path / "skip", {}, None)

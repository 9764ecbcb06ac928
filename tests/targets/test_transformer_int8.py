"""Outlier-aware int8 of a transformer on the torch-based targets: a tiny Hugging Face
BertModel (its 0/1 mask as a user passes it) given one outlier hidden dimension, as
trained encoders have (its LayerNorm weights 30x the rest, so the residual stream and
every linear layer reading a LayerNorm carry it), lowered to TorchScript and TFLite int8
and run on their runtimes, on padded and unpadded inputs."""

import numpy as np
import pytest
import torch

import targets
from compressor.config.quantize import QuantVariant
from compressor.data import Dataset
from compressor.zoo.text import sentence_tokens
from targets.validate import validate_artifact
from tiny_bert import SEQ, feeds, tiny

OUTLIER = 5


@pytest.fixture(scope="module")
def model():
    m = tiny()
    with torch.no_grad():
        for mod in m.module.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight[OUTLIER] *= 30.0
    return m


@pytest.fixture(scope="module")
def calibration():
    return Dataset(sentence_tokens(32, SEQ, vocab_size=100, seed=1))


@pytest.fixture(scope="module")
def validation(model):
    data = sentence_tokens(48, SEQ, vocab_size=100, seed=2)
    for padded in (True, False):  # the tokenizer's padding, and none
        data = {k: np.concatenate([v, feeds(padded)[k]]) for k, v in data.items()}
    return data, model.run(data)


def _fidelity(target: str, model, variant, calibration, validation, tmp_path, base=None):
    t = targets.get(target)
    art = t.export(model, variant, tmp_path / variant.label, {}, calibration, base=base)
    fid, _ = validate_artifact(t, art, *validation)
    return art, fid


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_torchscript_int8_of_the_linear_layers_holds_the_outlier(model, calibration, validation, tmp_path, mode):
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    art, fid = _fidelity("torchscript", model, QuantVariant(mode=mode), calibration, validation, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())  # the user's model untouched
    plan = art.meta["outliers"]
    assert plan["linear_groups"] == 8 and plan["layer_norm_fed_groups"] == 4 and art.meta["int8_layers"] == 12
    assert plan["float_outlier_channels"] + plan["smoothed_groups"] > 0
    assert art.meta["capture"] == "trace" and art.meta["quantized_engine"] == "x86"
    graph = str(torch.jit.load(str(art.path)).graph)
    kernel = "linear_dynamic" if mode == "dynamic" else "linear_with_input_q_dq_qweight_dq_output_fp32"
    assert graph.count(f"quantized::{kernel}") == 12 - (mode == "static") * art.meta["dynamic_range_layers"]
    assert fid.cosine_min > 0.999, fid


def test_torchscript_dynamic_int8_with_outliers_off_is_plain_and_worse(model, calibration, validation, tmp_path):
    _, planned = _fidelity("torchscript", model, QuantVariant(mode="dynamic"), calibration, validation, tmp_path)
    art, plain = _fidelity("torchscript", model, QuantVariant(mode="dynamic", outliers="off"), calibration,
                           validation, tmp_path)
    assert "outliers" not in art.meta and art.meta["engine"] == "torch.ao quantize_dynamic"
    assert 1 - planned.cosine_min < (1 - plain.cosine_min) / 3, (planned, plain)


def test_torchscript_keeps_an_excluded_linear_float(model, calibration, validation, tmp_path):
    name = "bert.encoder.layer.0.output.dense"
    art, fid = _fidelity("torchscript", model, QuantVariant(mode="static", exclude=[name]), calibration,
                         validation, tmp_path)
    assert art.meta["int8_layers"] == 11 and art.meta["excluded"] == [name] and fid.cosine_min > 0.999
    # Everything kept float: the float model's outputs.
    art, fid = _fidelity("torchscript", model, QuantVariant(name="all-float", mode="static", exclude=["bert"]),
                         calibration, validation, tmp_path)
    assert art.meta["int8_layers"] == 0 and fid.cosine_min > 0.99999


@pytest.mark.slow  # more than 15 s on 2 cores
def test_tflite_static_int8_of_the_linear_layers_beats_the_whole_graph_default(model, calibration, validation,
                                                                                tmp_path):
    base = targets.get("tflite").export(model, None, tmp_path / "fp32", {}, None)
    art, planned = _fidelity("tflite", model, QuantVariant(mode="static"), calibration, validation, tmp_path, base)
    ops = art.meta["op_types"]
    assert art.meta["int8_layers"] == 12 and ops["FULLY_CONNECTED"] >= 12 and ops["QUANTIZE"] >= 4
    # Layers with wide outputs or per-inference ranges run TFLite's dynamic-range kernel.
    assert art.meta.get("dynamic_range_kernels", 0) == art.meta["dynamic_range_layers"]
    _, whole = _fidelity("tflite", model, QuantVariant(mode="static", outliers="off"), calibration, validation,
                         tmp_path, base)
    assert planned.cosine_min > 0.995 and 1 - planned.cosine_min < (1 - whole.cosine_min) / 2, (planned, whole)

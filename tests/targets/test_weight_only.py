"""Weight-only int4/int8: a tiny BERT-style encoder (random weights, sentence-like token
data) through ONNX Runtime's MatMulNBits (rtn, hqq, our gptq), ai-edge-quantizer's
TFLite layouts and torchao's int8 for pt2, on the real runtimes; the recipe's one-line
refusals; and a recipe run in which TorchScript skips the mode."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import targets
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import InputSpec, parse_recipe
from compressor.data import sentences
from compressor.errors import DataError, RecipeError, UnsupportedOpError
from compressor.model import Model
from targets.validate import validate_artifact

TINY = dict(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
            max_position_embeddings=64)
SEQ = 32
TEXT = ("input_ids", "attention_mask", "token_type_ids")
# Bytes per weight of int4 blocks over fp32's 4: half a byte, a float scale and (asymmetric)
# half a byte of zero point per block.
INT4_RATIO = {(32, False): (0.5 + 4 / 32 + 0.5 / 32) / 4, (32, True): (0.5 + 4 / 32) / 4,
              (128, False): (0.5 + 4 / 128 + 0.5 / 128) / 4}


@pytest.fixture(scope="module")
def encoder():
    from compressor.zoo.text import bert_encoder

    inputs = [InputSpec(name=n, shape=[1, SEQ], dtype="int64") for n in TEXT]
    return Model(module=bert_encoder(**TINY), inputs=inputs, output_names=["last_hidden_state", "pooler_output"])


@pytest.fixture(scope="module")
def text(encoder):
    """(calibration, validation inputs, the float model's outputs on them): apart."""
    cal = sentences("train", encoder.inputs, vocab_size=TINY["vocab_size"]).take(32)
    val = sentences("test", encoder.inputs, vocab_size=TINY["vocab_size"]).take(32)
    return cal, val.inputs, encoder.run(val.inputs)


@pytest.fixture(scope="module")
def onnx_wo(tmp_path_factory, encoder, text):
    """The fp32 ONNX artifact and weight-only variants of it, by name."""
    out = tmp_path_factory.mktemp("wo")
    onnx_t = targets.get("onnx")
    base = onnx_t.export(encoder, None, out / "fp32", {}, None)
    variants = {"int4": {}, "int4-sym": {"symmetric": True}, "int4-g128": {"group_size": 128},
                "int8": {"bits": 8}, "int4-int8-compute": {"compute": "int8"},
                "gptq": {"algorithm": "gptq", "symmetric": True}, "rtn-sym": {"symmetric": True},
                "hqq": {"algorithm": "hqq"}, "int4-tables": {"embeddings": "int4"},
                "float-tables": {"embeddings": "float"}}
    arts = {"fp32": base}
    for name, kw in variants.items():
        arts[name] = onnx_t.export(encoder, QuantVariant(mode="weight_only", name=name, **kw), out / name, {},
                                   text[0], base=base)
    return arts


def _fidelity(artifact, text):
    _, inputs, reference = text
    fid, _ = validate_artifact(targets.get(artifact.target), artifact, inputs, reference)
    return fid


def _nodes(artifact, op):
    return [n for n in onnx.load(str(artifact.path)).graph.node if n.op_type == op]


def test_int4_replaces_every_linear_layer_with_matmulnbits_and_holds_the_outputs(onnx_wo, text):
    base, art = onnx_wo["fp32"], onnx_wo["int4"]
    linear = base.meta["op_types"]["MatMul"] - 2 * TINY["num_hidden_layers"] + base.meta["op_types"].get("Gemm", 0)
    assert art.meta["op_types"]["MatMulNBits"] == linear == 6 * TINY["num_hidden_layers"] + 1
    assert art.meta["op_types"].get("MatMul", 0) == 2 * TINY["num_hidden_layers"]  # attention products: no weights
    assert "Gemm" not in art.meta["op_types"] and art.meta["gemms_as_matmuls"] == 1  # the pooler
    assert art.label == "int4" and art.precision == "int4"
    for node in _nodes(art, "MatMulNBits"):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["bits"] == 4 and attrs["block_size"] == 32 and len(node.input) == 4  # zero points: asymmetric
    assert art.meta["linear_weight_ratio"] == pytest.approx(INT4_RATIO[(32, False)], abs=1e-3)
    # The word and segment tables as int8 blocks (the export folds the position lookup into
    # a constant; the Gather left picks the [CLS] row of an activation).
    assert art.meta["op_types"]["GatherBlockQuantized"] == 2 and art.meta["op_types"]["Gather"] == 1
    assert art.meta["embedding_bytes"] == pytest.approx((1 + 4 / 32 + 1 / 32) / 4 * art.meta["embedding_fp32_bytes"],
                                                        rel=1e-3)
    assert art.size_bytes < 0.25 * base.size_bytes
    fid = _fidelity(art, text)
    assert fid.cosine_min > 0.95, fid.cosine_min


def test_group_size_and_symmetry_change_the_file(onnx_wo):
    asym, sym, coarse = onnx_wo["int4"], onnx_wo["int4-sym"], onnx_wo["int4-g128"]
    assert sym.meta["linear_weight_ratio"] == pytest.approx(INT4_RATIO[(32, True)], abs=1e-3)
    assert coarse.meta["linear_weight_ratio"] == pytest.approx(INT4_RATIO[(128, False)], abs=1e-3)
    assert all(len(n.input) == 3 for n in _nodes(sym, "MatMulNBits"))  # no zero points
    assert {onnx.helper.get_attribute_value(a) for n in _nodes(coarse, "MatMulNBits") for a in n.attribute
            if a.name == "block_size"} == {128}
    assert coarse.size_bytes < sym.size_bytes < asym.size_bytes


def test_embedding_tables_in_int4_int8_or_float(onnx_wo, text):
    def table_bits(art):
        return {next((a.i for a in n.attribute if a.name == "bits"), 4) for n in _nodes(art, "GatherBlockQuantized")}

    int8, int4, float_ = onnx_wo["int4"], onnx_wo["int4-tables"], onnx_wo["float-tables"]
    assert table_bits(int8) == {8} and table_bits(int4) == {4}
    assert int4.meta["embedding_bytes"] < 0.17 * int4.meta["embedding_fp32_bytes"]
    assert int4.meta["quantized_matmuls"] == int8.meta["quantized_matmuls"] == 6 * TINY["num_hidden_layers"] + 1
    assert float_.meta["op_types"]["Gather"] == 3 and "GatherBlockQuantized" not in float_.meta["op_types"]
    assert float_.size_bytes > int8.size_bytes > int4.size_bytes
    fid = {k: _fidelity(onnx_wo[k], text).cosine for k in ("int4", "int4-tables", "float-tables")}
    assert fid["float-tables"] >= fid["int4"] > fid["int4-tables"], fid


def test_int8_weights_are_nearly_exact(onnx_wo, text):
    art = onnx_wo["int8"]
    assert art.label == "int8" and art.precision == "int8"
    assert art.meta["linear_weight_ratio"] == pytest.approx((1 + 4 / 32) / 4, abs=1e-3)  # symmetric by default
    assert _fidelity(art, text).cosine_min > 0.999


def test_int8_compute_sets_the_accuracy_level(onnx_wo, text):
    art = onnx_wo["int4-int8-compute"]
    levels = {onnx.helper.get_attribute_value(a) for n in _nodes(art, "MatMulNBits") for a in n.attribute
              if a.name == "accuracy_level"}
    assert levels == {4} and "int8" in art.meta["compute"]
    assert not any(a.name == "accuracy_level" for n in _nodes(onnx_wo["int4"], "MatMulNBits") for a in n.attribute)
    assert _fidelity(art, text).cosine_min > 0.95


def test_gptq_is_closer_to_the_float_model_than_round_to_nearest(onnx_wo, text):
    gptq, rtn = onnx_wo["gptq"], onnx_wo["rtn-sym"]
    assert gptq.meta["calibration_samples"] == 32 and gptq.meta["calibration_tokens"] < 32 * SEQ  # padding left out
    assert gptq.meta["linear_weight_ratio"] == rtn.meta["linear_weight_ratio"]  # the same layout, other codes
    g, r = _fidelity(gptq, text), _fidelity(rtn, text)
    assert 1 - g.cosine < 0.8 * (1 - r.cosine), (g.cosine, r.cosine)


def test_hqq_stores_float_zero_points(onnx_wo, text):
    art = onnx_wo["hqq"]
    model = onnx.load(str(art.path))
    inits = {t.name: t for t in model.graph.initializer}
    zero_points = [inits[n.input[3]] for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert zero_points and all(z.data_type == onnx.TensorProto.FLOAT for z in zero_points)
    assert _fidelity(art, text).cosine_min > 0.95


def test_gptq_without_calibration_data_and_a_conv_only_model_are_refused_without_files(tmp_path, encoder,
                                                                                     onnx_wo):
    import torch

    onnx_t = targets.get("onnx")
    with pytest.raises(DataError, match="calibrates on data"):
        onnx_t.export(encoder, QuantVariant(mode="weight_only", algorithm="gptq"), tmp_path / "g", {}, None,
                      base=onnx_wo["fp32"])
    conv = Model(module=torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval(),
                 inputs=[InputSpec(name="x", shape=[1, 3, 16, 16])], output_names=["y"])
    base = onnx_t.export(conv, None, tmp_path / "conv", {}, None)
    with pytest.raises(UnsupportedOpError, match="no MatMul or Gemm with a constant weight"):
        onnx_t.export(conv, QuantVariant(mode="weight_only"), tmp_path / "conv-wo", {}, None, base=base)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.onnx"]


RECIPE = """\
version: 1
name: wo
model:
  factory: compressor.zoo.digits:digits_cnn
  inputs: [{{name: pixels, shape: [1, 1, 8, 8]}}]
{data}steps:
  - quantize:
      variants:
        - {variant}
targets: [onnx]
"""


@pytest.mark.parametrize("variant, data, message", [
    ("{mode: weight_only, group_size: 48}", "", r"r\.yaml:9: .*group_size.*32, 64, 128, 256 or 'channel'"),
    ("{mode: dynamic, bits: 4}", "", r"r\.yaml:9: .*bits belongs to mode: weight_only, not dynamic"),
    ("{mode: weight_only, per_channel: false}", "", r"r\.yaml:9: .*per_channel does not apply"),
    ("{mode: weight_only, algorithm: hqq, bits: 8}", "", r"r\.yaml:9: .*hqq fits 4-bit weights"),
    ("{mode: weight_only, fallback: {min_cosine: 0.99}}", "", r"r\.yaml:9: .*fallback is not offered"),
    ("{mode: weight_only, algorithm: gptq}", "", r"algorithm: gptq \(int4-weight-only\) calibrates on data"),
    ("{mode: weight_only, calibration_samples: 8}", "data:\n  calibration: {source: digits}\n",
     r"calibration_samples applies to algorithm: gptq"),
])
def test_recipe_mistakes_are_one_line(variant, data, message):
    with pytest.raises(RecipeError, match=message) as e:
        parse_recipe(RECIPE.format(variant=variant, data=data), "r.yaml", target_options=targets.option_models())
    assert "\n" not in str(e.value)


def test_a_weight_only_variant_gets_its_defaults_in_the_report_intent():
    v = QuantVariant(mode="weight_only")
    assert (v.bits, v.group_size, v.symmetric, v.algorithm, v.compute, v.embeddings) == (4, 32, False, "rtn",
                                                                                         "float", "int8")
    assert (v.label, v.precision) == ("int4-weight-only", "int4")
    assert QuantVariant(mode="weight_only", bits=8).symmetric is True
    assert QuantVariant(mode="dynamic").model_dump()["bits"] is None


def test_tflite_layouts_and_the_one_it_lacks(tmp_path, encoder, text):
    lite = targets.get("tflite")
    base = lite.export(encoder, None, tmp_path / "fp32", {}, None)
    with pytest.raises(UnsupportedOpError, match="per output channel only: use group_size: channel"):
        lite.export(encoder, QuantVariant(mode="weight_only"), tmp_path / "default", {}, None, base=base)
    per_channel = lite.export(encoder, QuantVariant(mode="weight_only", group_size="channel"), tmp_path / "c",
                              {}, None, base=base)
    assert per_channel.meta["op_types"]["DEQUANTIZE"] >= 6 * TINY["num_hidden_layers"]
    assert per_channel.size_bytes < 0.25 * base.size_bytes and "embeddings int8, per row" in per_channel.meta["engine"]
    blocks = lite.export(encoder, QuantVariant(mode="weight_only", compute="int8", symmetric=True), tmp_path / "b",
                         {}, None, base=base)
    assert "DEQUANTIZE" not in blocks.meta["op_types"] and blocks.size_bytes < 0.25 * base.size_bytes
    for art in (per_channel, blocks):
        assert _fidelity(art, text).cosine_min > 0.95
    assert sorted(p.name for p in tmp_path.glob("*.tflite")) == ["b.tflite", "c.tflite", "fp32.tflite"]


def test_pt2_int8_weights_and_a_one_line_refusal_of_int4(tmp_path, encoder, text):
    import torch

    program = targets.get("pt2")
    before = {k: v.clone() for k, v in encoder.module.state_dict().items()}
    base = program.export(encoder, None, tmp_path / "fp32", {}, None)
    art = program.export(encoder, QuantVariant(mode="weight_only", bits=8), tmp_path / "int8", {}, None, base=base)
    assert art.meta["quantized_linear"] == 6 * TINY["num_hidden_layers"] + 1
    assert art.meta["quantized_embeddings"] == 3
    assert _stored_weights(art.path) < 0.35 * _stored_weights(base.path)  # the graph's JSON aside
    assert _fidelity(art, text).cosine_min > 0.999
    assert all(torch.equal(before[k], v) for k, v in encoder.module.state_dict().items())  # the user's module
    with pytest.raises(UnsupportedOpError, match="no x86 CPU int4 layout.*use bits: 8"):
        program.export(encoder, QuantVariant(mode="weight_only"), tmp_path / "int4", {}, None, base=base)
    assert not (tmp_path / "int4.pt2").exists()


def _stored_weights(path) -> int:
    import zipfile

    return sum(i.file_size for i in zipfile.ZipFile(path).infolist() if "/data/weights/" in i.filename)


def test_a_recipe_run_validates_int4_at_its_tolerance_and_torchscript_skips_the_mode(tmp_path):
    from compressor.flows.run import run

    text = RECIPE.format(variant="{mode: weight_only, bits: 4}", data="data:\n  evaluation: {source: digits, "
                         "split: test, limit: 64}\n").replace("targets: [onnx]", "targets: [onnx, torchscript]")
    text += "benchmark: {runs: 5, warmup: 1, warmup_s: 0, memory: false}\n"
    recipe = parse_recipe(text, "r.yaml", base_dir=tmp_path, target_options=targets.option_models())
    report = run(recipe, tmp_path / "run", show_progress=False)
    rows = {r["name"]: r for r in report["artifacts"]}
    onnx_row, ts_row = rows["onnx/int4-weight-only"], rows["torchscript/int4-weight-only"]
    assert onnx_row["status"] == "ok" and onnx_row["precision"] == "int4"
    assert onnx_row["export"]["quantized_matmuls"] == 1 and onnx_row["fidelity"]["cosine_min"] > 0.99
    assert ts_row["status"] == "skipped" and "does not offer weight_only" in ts_row["error"]
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {r["name"] for r in saved["artifacts"]} >= {"onnx/int4-weight-only", "torchscript/fp32"}

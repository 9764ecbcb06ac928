"""A tiny BERT-style encoder through a recipe: sentence-like data, ONNX fp32 and dynamic
int8 on onnxruntime, per-sample cosine of the hidden states, the pooler and the
mean-pooled sentence embedding; a mistaken text input through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

import targets
from compressor.flows.cli import main
from compressor.data import load_dataset
from compressor.flows.run import run
from compressor.config.recipe import load_recipe

TINY = ("{vocab_size: 2000, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, "
        "intermediate_size: 256, max_position_embeddings: 64}")
SEQ = 32


def recipe(seq: int = SEQ, dtype: str = "int64") -> str:
    return f"""\
version: 1
name: tinybert
model:
  factory: compressor.zoo.text:bert_encoder
  kwargs: {TINY}
  inputs:
    - {{name: input_ids, shape: [1, {seq}], dtype: {dtype}}}
    - {{name: attention_mask, shape: [1, {seq}], dtype: int64}}
    - {{name: token_type_ids, shape: [1, {seq}], dtype: int64}}
  outputs: [last_hidden_state, pooler_output]
data:
  calibration: {{source: sentences, split: train, limit: 16, vocab_size: 2000}}
  evaluation: {{source: sentences, split: test, limit: 48, vocab_size: 2000}}
steps:
  - quantize: {{variants: [{{mode: dynamic}}]}}
targets: {{onnx: {{fusions: bert}}}}
validation: {{int8: {{min_cosine: 0.99}}}}
benchmark: {{runs: 5, warmup: 1, warmup_s: 0, memory: false}}
"""


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("bert")
    (d / "tinybert.yaml").write_text(recipe())
    rec = load_recipe(d / "tinybert.yaml", targets.option_models())
    report = run(rec, d / "run", show_progress=False)
    return d / "run", report, rec


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_encoder_recipe_exports_fp32_and_dynamic_int8_within_per_sample_bounds(bert_run):
    run_dir, report, _ = bert_run
    rows = {r["label"]: r for r in report["artifacts"]}
    assert set(rows) == {"fp32", "int8-dynamic"} and all(r["status"] == "ok" for r in rows.values())
    assert report["reference"]["validation_on_real_data"] and report["reference"]["validation_samples"] == 48
    fp32, int8 = rows["fp32"]["fidelity"]["outputs"], rows["int8-dynamic"]["fidelity"]["outputs"]
    assert [o["name"] for o in int8] == ["last_hidden_state", "pooler_output"]
    assert all(o["max_abs"] < 1e-4 for o in fp32)
    # Every sentence, not just the mean, keeps its direction through int8.
    assert all(0.99 <= o["cosine_min"] <= o["cosine_mean"] < 1.0 for o in int8)
    # fusions: bert -> fp32 runs ORT's fused attention; int8 lowers from the unfused export
    # (six weight MatMuls a layer, and the pooler's Gemm), which ORT fuses its own way.
    assert rows["fp32"]["export"]["fused_ops"]["Attention"] == 2
    assert rows["fp32"]["export"]["op_types"]["Attention"] == 2
    ops = rows["int8-dynamic"]["export"]["op_types"]
    assert "QAttention" not in ops and "Attention" not in ops and ops.get("MatMulInteger", 0) == 2 * 6 + 1
    assert rows["int8-dynamic"]["metrics"]["size_bytes"] < 0.7 * rows["fp32"]["metrics"]["size_bytes"]


def test_mean_pooled_sentence_embeddings_agree_per_sentence(bert_run):
    run_dir, report, rec = bert_run
    from compressor.model import load_model

    model = load_model(rec.model, rec.base_dir)
    data = load_dataset(rec.data.evaluation, model.inputs, rec.base_dir)
    onnx_t = targets.get("onnx")
    mask = data.inputs["attention_mask"][..., None]
    ref_hidden = model.run(data.inputs)[0]
    pooled = {}
    for label in ("fp32", "int8-dynamic"):
        session = onnx_t.open_session(run_dir / "artifacts" / f"tinybert.{label}.onnx", targets.Device(), 1)
        hidden = targets.base.run_batched(session, data.inputs, 16)[0]
        pooled[label] = (hidden * mask).sum(1) / mask.sum(1)
    ref = (ref_hidden * mask).sum(1) / mask.sum(1)
    assert _cos(ref, pooled["fp32"]).min() > 0.99999
    cos = _cos(ref, pooled["int8-dynamic"])
    assert len(cos) == 48 and cos.min() >= 0.99 and cos.mean() < 1.0


@pytest.mark.parametrize("seq, dtype, needle", [
    (80, "int64", "sequence length 80 exceeds the model's max_position_embeddings 64"),
    (SEQ, "float32", "input_ids must be integer token ids (int64)"),
])
def test_bad_text_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, seq, dtype, needle):
    (tmp_path / "bad.yaml").write_text(recipe(seq, dtype))
    code = main(["run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("compressor: error: ") and needle in err[0]
    assert not list((tmp_path / "run").rglob("*.onnx"))


def test_report_names_the_int8_engine(bert_run):
    _, report, _ = bert_run
    row = next(r for r in report["artifacts"] if r["label"] == "int8-dynamic")
    assert row["export"]["engine"] == "onnxruntime.quantization.quantize_dynamic"
    assert json.dumps(row["export"]["weights"]).startswith('"int8 per-channel')


def test_single_layer_attention_fuses_and_matches_torch(tmp_path):
    """One layer: the mask's own Mul then feeds the only mask Add; it must stay a Mul."""
    from compressor.model import Model
    from compressor.config.recipe import InputSpec
    from compressor.zoo.text import bert_encoder, sentence_tokens

    module = bert_encoder(vocab_size=500, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=32)
    model = Model(module, [InputSpec(name=n, shape=[1, 16], dtype="int64")
                           for n in ("input_ids", "attention_mask", "token_type_ids")])
    art = targets.get("onnx").export(model, None, tmp_path / "one", {"fusions": "bert"}, None)
    assert art.meta["fused_ops"].get("Attention") == 1 and art.meta["fusion_rewrites"]["scale_as_div"] == 1
    feeds = sentence_tokens(8, 16, vocab_size=500)
    session = targets.get("onnx").open_session(art.path, targets.Device(), 1)
    got = targets.base.run_batched(session, feeds, 4)
    for r, g in zip(model.run(feeds), got):
        np.testing.assert_allclose(g, r, atol=1e-4)

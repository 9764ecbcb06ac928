import json

import pytest

import targets
from compressor.errors import RecipeError
from compressor.config.recipe import json_schema, parse_recipe

MINIMAL = """\
version: 1
name: tiny
model:
  factory: compressor.zoo.digits:digits_cnn
  inputs: [{name: pixels, shape: [1, 1, 8, 8]}]
"""


def parse(text: str):
    return parse_recipe(text, "r.yaml", target_options=targets.option_models())


def test_target_list_shorthand_means_default_options():
    recipe = parse(MINIMAL + "targets: [onnx]\n")
    assert list(recipe.targets) == ["onnx"]
    assert recipe.targets["onnx"].dynamic_batch is True
    assert recipe.targets["onnx"].external_data is None


def test_target_options_are_validated_and_kept():
    recipe = parse(MINIMAL + "targets: {onnx: {external_data: true, opset: 18}}\n")
    assert recipe.targets["onnx"].external_data is True
    assert recipe.targets["onnx"].opset == 18


def test_misspelt_key_names_key_line_and_closest_valid_key():
    text = MINIMAL + "data:\n  calibraton: {source: digits}\ntargets: [onnx]\n"
    with pytest.raises(RecipeError) as e:
        parse(text)
    msg = str(e.value)
    assert msg.startswith("r.yaml:7:")
    assert "'calibraton'" in msg and "did you mean 'calibration'?" in msg


def test_misspelt_key_inside_a_quantize_variant_suggests_the_variant_field():
    text = MINIMAL + ("steps:\n  - quantize:\n      variants:\n"
                      "        - {mode: static, calibraton: entropy}\ntargets: [onnx]\n")
    with pytest.raises(RecipeError, match=r"^r\.yaml:9: .*'calibraton'.*did you mean 'calibration'"):
        parse(text)


def test_misspelt_target_option_suggests_the_option():
    with pytest.raises(RecipeError, match=r"r\.yaml:7: .*'external_dta'.*did you mean 'external_data'"):
        parse(MINIMAL + "targets:\n  onnx: {external_dta: true}\n")


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(RecipeError, match=r"r\.yaml:8: unknown target 'tensorrt'; known targets: .*onnx"):
        parse(MINIMAL + "targets:\n  onnx: {}\n  tensorrt: {}\n")


def test_bad_literal_value_suggests_the_closest_choice():
    text = MINIMAL + "steps:\n  - quantize:\n      variants: [{mode: statc}]\ntargets: [onnx]\n"
    with pytest.raises(RecipeError, match=r"^r\.yaml:8: .*mode.*did you mean 'static'"):
        parse(text)


def test_model_needs_exactly_one_source():
    text = MINIMAL.replace("  factory: compressor.zoo.digits:digits_cnn\n", "") + "targets: [onnx]\n"
    with pytest.raises(RecipeError, match="exactly one model source: 'factory'"):
        parse(text)


def test_duplicate_variant_labels_are_refused():
    text = MINIMAL + "steps:\n  - quantize:\n      variants: [{mode: dynamic}, {mode: dynamic}]\ntargets: [onnx]\n"
    with pytest.raises(RecipeError, match="int8-dynamic"):
        parse(text)


def test_top1_outputs_must_name_outputs_the_model_gives():
    named = MINIMAL + "  outputs: [logits, features]\ntargets: [onnx]\n"
    assert parse(named + "validation: {top1_outputs: [logits]}\n").validation.top1_outputs == ["logits"]
    assert parse(named + "validation: {top1_outputs: []}\n").validation.top1_outputs == []
    with pytest.raises(RecipeError, match=r"top1_outputs names \['logit'\], which the model does not give: "
                                          r"model.outputs names \['logits', 'features'\]") as e:
        parse(named + "validation: {top1_outputs: [logit]}\n")
    assert "\n" not in str(e.value)
    unnamed = MINIMAL + "targets: [onnx]\n"
    assert parse(unnamed + "validation: {top1_outputs: [output_1]}\n").validation.top1_outputs == ["output_1"]
    with pytest.raises(RecipeError, match=r"names \['logits'\], .*the outputs are output, or output_0"):
        parse(unnamed + "validation: {top1_outputs: [logits]}\n")


def test_invalid_yaml_reports_the_line():
    with pytest.raises(RecipeError, match=r"^r\.yaml:4: not valid YAML"):
        parse("version: 1\nname: x\nmodel:\n\tfactory: x\n")


def test_json_schema_is_valid_json_with_properties():
    schema = json.loads(json_schema())
    assert {"version", "model", "targets", "steps", "benchmark"} <= set(schema["properties"])
    assert {"version", "name", "model", "targets"} <= set(schema["required"])
    assert schema["$schema"].startswith("https://json-schema.org/")


def test_committed_schema_is_the_current_one():
    from pathlib import Path

    from compressor.config.recipe import json_schema

    committed = Path(__file__).resolve().parents[2] / "docs" / "recipe.schema.json"
    assert committed.read_text() == json_schema() + "\n", "run: compressor schema --out docs/recipe.schema.json"

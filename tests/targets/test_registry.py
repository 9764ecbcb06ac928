from pathlib import Path

import pytest

import targets
from compressor.errors import ArtifactError, RecipeError
from targets.onnx import OnnxTarget


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(RecipeError, match=r"unknown target 'tflit'; known targets: (\w+, )*onnx\b"):
        targets.get("tflit")


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="'onnx' is already registered"):
        targets.register(OnnxTarget())
    assert targets.names().count("onnx") == 1  # still registered once; other built-in targets may follow


def test_for_file_picks_the_target_by_suffix_and_refuses_unknown_ones():
    assert targets.for_file(Path("m.onnx")).name == "onnx"
    with pytest.raises(ArtifactError, match=r"unknown artifact type; the benchmark loads .*\.onnx\b"):
        targets.for_file(Path("m.tflite.bin"))


def test_device_parse_accepts_cpu_and_cuda_index_and_refuses_others():
    assert str(targets.Device.parse("cuda:1")) == "cuda:1"
    assert targets.Device.parse("cpu").kind == "cpu"
    with pytest.raises(RecipeError, match="use 'cpu', 'cuda' or 'cuda:N'"):
        targets.Device.parse("tpu")

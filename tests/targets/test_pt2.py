"""The torch.export targets: ExportedProgram (.pt2) fp32 and PT2E int8, the AOTInductor
package (.aoti.pt2), foreign archives under --trust, and bad input."""

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import targets
from compressor.flows.cli import main
from compressor.data import Dataset
from compressor.errors import ExportError
from compressor.model import Model
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import InputSpec
from targets.base import Device
from fixed_batch import FixedBatch

FAST = ["--runs", "5", "--warmup", "1", "--warmup-s", "0", "--no-isolate"]


@pytest.fixture(scope="module")
def pt2_artifacts(tmp_path_factory, digits_model, calibration_data) -> dict:
    target = targets.get("pt2")
    out = tmp_path_factory.mktemp("pt2")
    return {"fp32": target.export(digits_model, None, out / "digits.fp32", {}, None),
            "int8": target.export(digits_model, QuantVariant(mode="static"), out / "digits.int8", {},
                                  calibration_data)}


def test_exported_program_fp32_matches_pytorch(pt2_artifacts, digits_test, torch_test_logits):
    session = targets.get("pt2").open_session(pt2_artifacts["fp32"].path, Device("cpu"), 2)
    assert session.inputs[0].batch_dynamic and session.output_names == ["logits"]
    got = session.run({"pixels": digits_test[0]})[0]
    assert np.abs(got - torch_test_logits).max() < 1e-4


def test_pt2e_int8_program_keeps_accuracy_and_stores_int8_weights(pt2_artifacts, digits_test, torch_test_logits,
                                                                   top1):
    x, y = digits_test
    got = targets.get("pt2").open_session(pt2_artifacts["int8"].path, Device("cpu"), 2).run({"pixels": x})[0]
    assert top1(got, y) >= top1(torch_test_logits, y) - 0.005
    program = torch.export.load(str(pt2_artifacts["int8"].path))
    assert any(t.dtype == torch.int8 for t in program.state_dict.values())
    assert not any(t.dtype == torch.float32 and t.dim() == 4 for t in program.state_dict.values())
    assert pt2_artifacts["int8"].size_bytes < 0.6 * pt2_artifacts["fp32"].size_bytes


def test_for_file_tells_programs_from_aoti_packages():
    assert targets.for_file("m.pt2").name == "pt2"
    assert targets.for_file("m.aoti.pt2").name == "aoti"
    assert targets.for_file("m.pt").name == "torchscript"


class Scale(nn.Module):
    def forward(self, a, b):
        return a * 2 + b


@pytest.fixture(scope="module")
def foreign_pt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("foreign") / "scale.pt2"
    args = (torch.rand(2, 3), torch.rand(2, 3))
    dims = ({0: torch.export.Dim("n")}, {0: torch.export.Dim("n")})
    torch.export.save(torch.export.export(Scale(), args, dynamic_shapes=dims), str(path))
    return path


def test_foreign_pt2_is_benchmarked_with_trust_and_refused_without(foreign_pt2, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["bench", str(foreign_pt2), "--trust", "--batch", "1,4", "--json", str(out), *FAST]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert [i["name"] for i in result["inputs"]] == ["a", "b"] and result["target"] == "pt2"
    capsys.readouterr()
    assert main(["bench", str(foreign_pt2), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "can run code" in err and "--trust" in err


@pytest.mark.parametrize("content", ["empty", "truncated", "flipped"])
def test_corrupt_pt2_archives_are_refused_in_one_line(pt2_artifacts, tmp_path, capsys, content):
    good = pt2_artifacts["fp32"].path.read_bytes()
    bad = tmp_path / "bad.pt2"
    if content == "empty":
        bad.write_bytes(b"")
    elif content == "truncated":
        bad.write_bytes(good[: len(good) // 3])
    else:  # one byte changed in the middle of a stored record: its checksum fails
        mid = len(good) // 2
        bad.write_bytes(good[:mid] + bytes([good[mid] ^ 0xFF]) + good[mid + 1:])
    assert main(["bench", str(bad), "--trust", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err


class GraphBreak(nn.Module):
    def forward(self, x):
        if x.max() > 0.5:  # data-dependent: no single graph holds both branches
            return x + 1
        return x - 1


def test_data_dependent_control_flow_is_named_and_nothing_is_written(tmp_path):
    model = Model(module=GraphBreak(), inputs=[InputSpec(name="x", shape=[1, 4])])
    with pytest.raises(ExportError, match="data-dependent control flow") as info:
        targets.get("pt2").export(model, None, tmp_path / "gb", {}, None)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_int8_of_a_fixed_batch_model_calibrates_one_batch_at_a_time(tmp_path):
    torch.manual_seed(0)
    model = Model(module=FixedBatch().eval(), inputs=[InputSpec(name="x", shape=[1, 3, 8, 8])])
    data = Dataset({"x": np.random.default_rng(0).random((20, 3, 8, 8), dtype=np.float32)})
    art = targets.get("pt2").export(model, QuantVariant(mode="static"), tmp_path / "fixed", {}, data)
    assert art.meta["dynamic_batch"] is False and art.meta["calibration_samples"] == 20
    x = data.inputs["x"][:1]
    got = targets.get("pt2").open_session(art.path, Device("cpu"), 1).run({"x": x})[0]
    assert np.abs(got - model.run({"x": x})[0]).max() < 0.05


def generated_calls(package) -> set[str]:
    """The ATen/oneDNN kernels the package's generated C++ calls."""
    import re
    import zipfile

    with zipfile.ZipFile(package) as z:
        code = "".join(z.read(n).decode() for n in z.namelist() if n.endswith("wrapper.cpp"))
    return set(re.findall(r"aoti_torch_cpu_\w+", code))


@pytest.mark.slow  # over 30 s: `make test-slow` and CI run it
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="AOTInductor compiles C++: no g++ or clang++ on PATH")
def test_aoti_int8_package_compiles_runs_and_keeps_accuracy(digits_model, calibration_data, digits_test,
                                                            torch_test_logits, top1, tmp_path):
    """The one AOTInductor compile in the suite (digits CNN, ~10 s): the package loads
    through aoti_load_package, keeps accuracy, and `compressor bench` times it."""
    target = targets.get("aoti")
    art = target.export(digits_model, QuantVariant(mode="static"), tmp_path / "digits.int8", {}, calibration_data)
    assert art.path.name == "digits.int8.aoti.pt2" and art.meta["compile_s"] > 0
    calls = generated_calls(art.path)  # int8 oneDNN kernels, not float ones on dequantized weights
    assert any("qconv" in c for c in calls) and not any(c.endswith("_convolution") for c in calls), calls
    x, y = digits_test
    session = target.open_session(art.path, Device("cpu"), 2)
    assert session.runtime.startswith("AOTInductor") and session.output_names == ["logits"]
    assert top1(session.run({"pixels": x})[0], y) >= top1(torch_test_logits, y) - 0.005
    out = tmp_path / "m.json"
    assert main(["bench", str(art.path), "--trust", "--batch", "1,8", "--json", str(out), *FAST]) == 0
    assert json.loads(out.read_text())["results"][0]["target"] == "aoti"

"""User mistakes through the command line: exit code 2, one line on stderr that says
what is wrong and where, no traceback, and no half-written files left behind."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compressor.flows.cli import main
from compressor.zoo.digits import WEIGHTS_PATH
from recipes import DIGITS_MODEL

ZOO = WEIGHTS_PATH
FAST_BENCH = "benchmark: {runs: 5, warmup: 1, warmup_s: 0, memory: false}\n"


def recipe_text(model_lines: str, extra: str = "targets: [onnx]\n") -> str:
    return f"version: 1\nname: t\nmodel:\n{model_lines}{extra}{FAST_BENCH}"


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def assert_one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compressor: error: "), err
    return lines[0]


def leftovers(run_dir: Path) -> list[str]:
    """Anything a failed run must not leave: temp files, staging dirs, artifacts."""
    if not run_dir.exists():
        return []
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() or
                  p.name.endswith((".staging", ".part")))


def test_recipe_typo_names_key_line_and_closest_key(tmp_path, capsys, write_recipe):
    path = write_recipe(recipe_text(DIGITS_MODEL, "data:\n  calibraton: {source: digits}\ntargets: [onnx]\n"))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "run"), "--no-progress")
    line = assert_one_line(err)
    assert code == 2
    assert f"{path}:8: unknown key 'calibraton' in data; did you mean 'calibration'?" in line


def test_recipe_typo_prints_no_traceback_in_a_real_process(tmp_path, write_recipe):
    path = write_recipe(recipe_text(DIGITS_MODEL, "targets: [onnx]\nbenchmrk: {}\n"))
    proc = subprocess.run([sys.executable, "-m", "compressor", "run", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "did you mean 'benchmark'?" in assert_one_line(proc.stderr)


def test_unknown_target_lists_known_targets(tmp_path, capsys, write_recipe):
    import targets

    path = write_recipe(recipe_text(DIGITS_MODEL, "targets: [onnx, onxx]\n"))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "run"))
    line = assert_one_line(err)
    assert code == 2 and "unknown target 'onxx'; did you mean 'onnx'?; known targets: " in line
    assert line.endswith(", ".join(targets.names()))


def test_missing_recipe_file(tmp_path, capsys):
    code, err = run_cli(capsys, "run", str(tmp_path / "nope.yaml"))
    assert code == 2 and f"recipe {tmp_path / 'nope.yaml'}: no such file" in assert_one_line(err)


def test_missing_weights_file(tmp_path, capsys, write_recipe):
    path = write_recipe(recipe_text(DIGITS_MODEL.replace(str(ZOO), "gone.safetensors")))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "run"))
    assert code == 2 and f"weights {tmp_path / 'gone.safetensors'}: no such file" in assert_one_line(err)
    assert leftovers(tmp_path / "run") == []


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_corrupt_safetensors_is_one_line(tmp_path, capsys, write_recipe, damage):
    data = {"truncated": ZOO.read_bytes()[:3000], "random": np.random.default_rng(0).bytes(5000),
            "empty": b""}[damage]
    (tmp_path / "w.safetensors").write_bytes(data)
    path = write_recipe(recipe_text(DIGITS_MODEL.replace(str(ZOO), "w.safetensors")))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "run"))
    says = "is empty (0 bytes)" if damage == "empty" else "not a readable safetensors file"
    assert code == 2 and says in assert_one_line(err)


def test_weights_for_another_model_width_are_one_line(tmp_path, capsys, write_recipe):
    model = DIGITS_MODEL.replace("  weights:", "  kwargs: {width: 16}\n  weights:")
    path = write_recipe(recipe_text(model))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "run"))
    assert code == 2 and "do not match the model" in assert_one_line(err)


def test_wrong_input_shape_in_recipe_says_model_does_not_run_on_it(tmp_path, capsys, write_recipe):
    path = write_recipe(recipe_text(DIGITS_MODEL.replace("[1, 1, 8, 8]", "[1, 3, 8, 8]")))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "run"))
    line = assert_one_line(err)
    assert code == 2 and "does not run on its declared inputs (pixels [1, 3, 8, 8] float32)" in line
    assert "fix 'inputs'" in line


def test_pt2_program_without_trusted_is_refused(tmp_path, capsys, write_recipe):
    (tmp_path / "m.pt2").write_bytes(b"PK\x03\x04 not really")
    path = write_recipe(recipe_text("  program: m.pt2\n  inputs: [{name: x, shape: [1, 4]}]\n"))
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "run"))
    line = assert_one_line(err)
    assert code == 2 and "m.pt2" in line and "trusted: true" in line


WEIRD_MODULE = '''
import torch
from torch import nn


@torch.library.custom_op("testlib::weird", mutates_args=())
def weird(x: torch.Tensor) -> torch.Tensor:
    return x * 2 + 1


@weird.register_fake
def _(x):
    return torch.empty_like(x)


class Weird(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(weird(x))


def make():
    return Weird().eval()
'''


def test_export_of_an_unsupported_custom_op_names_it_and_leaves_nothing(tmp_path, capsys, write_recipe):
    (tmp_path / "weirdmod_cli.py").write_text(WEIRD_MODULE)
    path = write_recipe(recipe_text("  factory: weirdmod_cli:make\n  inputs: [{name: x, shape: [1, 4]}]\n"))
    run_dir = tmp_path / "run"
    code, err = run_cli(capsys, "run", str(path), "--out", str(run_dir), "--no-progress")
    line = assert_one_line(err)
    assert code == 2 and "testlib" in line and "weird" in line and "no ONNX lowering" in line
    assert leftovers(run_dir) == []


def test_run_into_a_foreign_non_empty_dir_is_refused_even_with_overwrite(tmp_path, capsys, write_recipe):
    path = write_recipe(recipe_text(DIGITS_MODEL))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code, err = run_cli(capsys, "run", str(path), "--out", str(tmp_path / "mine"), "--overwrite")
    assert code == 2 and "not a compressor run" in assert_one_line(err)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_bad_shape_option_syntax_is_one_line(tmp_path, capsys):
    code, err = run_cli(capsys, "bench", str(tmp_path / "m.onnx"), "--shape", "x=2by3")
    assert code == 2 and "--shape 'x=2by3': use [FILE:]NAME=1x3x224x224" in assert_one_line(err)


def test_missing_onnx_file_for_bench(tmp_path, capsys):
    code, err = run_cli(capsys, "bench", str(tmp_path / "absent.onnx"))
    assert code == 2 and "absent.onnx: no such file" in assert_one_line(err)


def test_schema_command_prints_json_with_properties(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "model" in schema["properties"] and "targets" in schema["properties"]


def test_schema_command_writes_a_file(tmp_path):
    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert "properties" in json.loads((tmp_path / "s.json").read_text())


def test_successful_run_prints_the_run_directory(tmp_path, capsys, write_recipe):
    path = write_recipe(recipe_text(DIGITS_MODEL))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert f"run directory: {tmp_path / 'run'}" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "report.json").read_text())["artifacts"][0]["status"] == "ok"

"""TorchScript through the `compressor` command: a recipe run, foreign files under
--trust, and every bad input ending in one line and exit code 2."""

import json
import textwrap

import pytest
import torch
from torch import nn

from compressor.flows.cli import main
from recipes import digits_head

FAST = ["--runs", "5", "--warmup", "1", "--warmup-s", "0", "--no-isolate"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


class Affine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.lin(x))


@pytest.fixture(scope="module")
def foreign_pt(tmp_path_factory):
    """A TorchScript file saved by plain torch.jit.save: no signature of ours inside."""
    path = tmp_path_factory.mktemp("foreign") / "affine.pt"
    torch.jit.save(torch.jit.script(Affine().eval()), str(path))
    return path


def test_foreign_torchscript_is_benchmarked_with_trust_and_shape(foreign_pt, tmp_path):
    out = tmp_path / "m.json"
    assert main(["bench", str(foreign_pt), "--trust", "--shape", "x=2x4", "--json", str(out), *FAST]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["target"] == "torchscript" and result["runtime"].startswith("torch.jit")
    assert result["latency"][0]["runs"] == 5


def test_foreign_torchscript_without_trust_is_refused_with_the_reason(foreign_pt, capsys):
    assert main(["bench", str(foreign_pt), *FAST]) == 2
    err = one_line_error(capsys)
    assert "can run code" in err and "--trust" in err


def test_foreign_torchscript_without_shape_asks_for_it(foreign_pt, capsys):
    assert main(["bench", str(foreign_pt), "--trust", *FAST]) == 2
    err = one_line_error(capsys)
    assert "'x'" in err and "--shape x=" in err


@pytest.mark.parametrize("content", ["empty", "truncated", "garbage", "checkpoint"])
def test_bad_pt_files_are_refused_in_one_line(foreign_pt, tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    if content == "empty":
        bad.write_bytes(b"")
    elif content == "truncated":
        bad.write_bytes(foreign_pt.read_bytes()[: foreign_pt.stat().st_size // 2])
    elif content == "garbage":
        bad.write_bytes(b"not a zip archive at all" * 10)
    else:
        torch.save(Affine().state_dict(), bad)
    assert main(["bench", str(bad), "--trust", *FAST]) == 2
    err = one_line_error(capsys)
    assert str(bad) in err
    if content == "checkpoint":
        assert "torch.save checkpoint" in err


UNTRACEABLE = '''
import torch
from torch import nn


class Untraceable(nn.Module):
    def forward(self, x):
        if x.mean() > 0.5:          # a branch on a value: tracing would keep one side
            return (lambda t: t * 2)(x)  # and lambdas are beyond torch.jit.script
        return x


def build():
    return Untraceable()
'''


def test_a_model_that_neither_traces_nor_scripts_fails_in_one_line_with_nothing_written(write_recipe, tmp_path,
                                                                                         capsys):
    (tmp_path / "untraceable.py").write_text(textwrap.dedent(UNTRACEABLE))
    recipe = write_recipe("""
        version: 1
        name: untraceable
        model:
          factory: untraceable:build
          inputs: [{name: x, shape: [1, 4]}]
        targets: [torchscript]
    """)
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "data-dependent control flow at untraceable.py:" in err and "torch.jit.script cannot compile" in err
    leftovers = [p for p in (out / "artifacts").rglob("*")] if (out / "artifacts").exists() else []
    assert leftovers == []


def test_recipe_run_exports_validates_and_benchmarks_torchscript(write_recipe, tmp_path):
    recipe = write_recipe(digits_head("digits-ts", outputs=False, calibration=128, evaluation=True) + """\
steps:
  - quantize:
      variants: [{mode: static}, {mode: fp16}]
targets: {torchscript: {}}
benchmark: {runs: 5, warmup: 1, warmup_s: 0, memory: false}
""")
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--no-progress"]) == 0
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["artifacts"]}
    assert rows["torchscript/fp32"]["status"] == "ok" and rows["torchscript/int8-static"]["status"] == "ok"
    assert rows["torchscript/fp16"]["status"] == "skipped"  # not offered: said so, not silently dropped
    int8 = rows["torchscript/int8-static"]
    assert int8["metrics"]["accuracy"] >= rows["torchscript/fp32"]["metrics"]["accuracy"] - 0.005
    assert sorted(p.name for p in (out / "artifacts").iterdir()) == ["digits-ts.fp32.pt", "digits-ts.int8-static.pt"]

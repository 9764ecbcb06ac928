"""The run directory: --overwrite removes only what a run of ours wrote, one run at a
time holds a directory, a failed run leaves nothing, a finished one is complete (manifest
last, listing everything), and nothing is written outside the run and temp folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compressor.flows.rundir import INCOMPLETE, LOCK, MARKER
from compressor.fsutil import sha256
from hostile_cli import cli, cli_process, debris, one_line, refused
from recipes import digits_head

FAST = "benchmark: {runs: 5, warmup: 0, warmup_s: 0, memory: false}\n"


def recipe(tmp_path: Path, body: str = "targets: [onnx]\n", name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(digits_head("rd") + body + FAST, encoding="utf-8")
    return path


def finished(run: Path) -> None:
    """A complete run: manifest listing every artifact and report with its digest, the
    marker says complete, no INCOMPLETE and no debris."""
    m = json.loads((run / "manifest.json").read_text())
    assert m["artifacts"] and {r["file"] for r in m["reports"]} >= {"report.json", "report.md", "report.html"}
    for entry in [*m["artifacts"], *m["reports"]]:
        assert sha256(run / entry["file"]) == entry["sha256"], entry
    assert json.loads((run / MARKER).read_text())["state"] == "complete"
    assert not (run / INCOMPLETE).exists() and debris(run) == []


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory) -> Path:
    """A finished run (fp32 and dynamic int8 ONNX), copied by the tests that change it."""
    base = tmp_path_factory.mktemp("prev")
    path = recipe(base, "steps: [{quantize: {variants: [{mode: dynamic}]}}]\ntargets: [onnx]\n")
    run = base / "run"
    from compressor.flows.cli import main

    assert main(["run", str(path), "--out", str(run), "--no-progress"]) == 0
    finished(run)
    return run


def copy_of(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


# --- --overwrite never deletes what the user put there --------------------------------------

def test_overwrite_refuses_a_folder_with_an_artifacts_dir_the_user_made(tmp_path, capsys):
    (tmp_path / "out" / "artifacts").mkdir(parents=True)
    (tmp_path / "out" / "artifacts" / "paper.pdf").write_bytes(b"%PDF precious")
    refused(capsys, "run", recipe(tmp_path), "--out", tmp_path / "out", "--overwrite", "--no-progress",
            says="not a compressor run")
    assert (tmp_path / "out" / "artifacts" / "paper.pdf").read_bytes() == b"%PDF precious"
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["artifacts", "paper.pdf"]


def test_overwrite_refuses_a_run_dir_where_the_user_added_a_file(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    (run / "artifacts" / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    line = refused(capsys, "run", recipe(tmp_path), "--out", run, "--overwrite", "--no-progress",
                   says=("artifacts/notes.txt", "which no compressor run wrote", "move it out"))
    assert "--overwrite" not in line.split("refusing")[0]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_overwrite_refuses_a_file_of_the_user_beside_the_reports(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    (run / "README.txt").write_text("what this run was for")
    refused(capsys, "run", recipe(tmp_path), "--out", run, "--overwrite", "--no-progress", says="README.txt")
    assert (run / "README.txt").exists() and (run / "manifest.json").exists()


def test_overwrite_refuses_a_symlink_and_leaves_its_target(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"keep")
    (run / "artifacts" / "link.onnx").symlink_to(target)
    refused(capsys, "run", recipe(tmp_path), "--out", run, "--overwrite", "--no-progress", says="link.onnx")
    assert target.read_bytes() == b"keep" and (run / "artifacts" / "link.onnx").is_symlink()


def test_a_finished_run_is_not_replaced_without_overwrite(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    refused(capsys, "run", recipe(tmp_path), "--out", run, "--no-progress",
            says=("holds a finished run", "pass --overwrite"))
    finished(run)


def test_overwrite_replaces_every_file_of_the_previous_run_and_only_those(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    (run / "artifacts" / "empty-folder-of-the-user").mkdir()
    code, _, err = cli(capsys, "run", recipe(tmp_path), "--out", run, "--overwrite", "--no-progress")
    assert code == 0, err
    finished(run)
    names = sorted(p.name for p in (run / "artifacts").iterdir())
    # The previous run's dynamic int8 is gone (this recipe has fp32 only); the folder stays.
    assert names == ["empty-folder-of-the-user", "rd.fp32.onnx"]


def test_a_run_dir_from_before_the_marker_is_recognised_by_its_manifest(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    (run / MARKER).unlink()
    (run / LOCK).unlink()
    code, _, err = cli(capsys, "run", recipe(tmp_path), "--out", run, "--overwrite", "--no-progress")
    assert code == 0, err
    finished(run)


# --- where the run directory would go ---------------------------------------------------------

def test_out_is_a_regular_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    refused(capsys, "run", recipe(tmp_path), "--out", tmp_path / "taken", "--no-progress", says="is a file")
    assert (tmp_path / "taken").read_text() == "x"


def test_out_below_a_regular_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    refused(capsys, "run", recipe(tmp_path), "--out", tmp_path / "taken" / "run", "--no-progress",
            says=("cannot make run directory", "is a file"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    refused(capsys, "run", recipe(tmp_path), "--out", tmp_path / "ro" / "run", "--no-progress",
            says="not writable")


# --- one run at a time --------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from compressor.flows.rundir import open_run_dir
    with open_run_dir(sys.argv[1], "rd"):
        print("held", flush=True)
        sys.stdin.read()
""")


def test_a_second_run_into_a_held_directory_names_the_holder(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused(capsys, "run", recipe(tmp_path), "--out", run, "--overwrite", "--no-progress",
                says=(f"in use by another compressor run (pid {holder.pid})", "choose another --out"))
        assert (run / MARKER).exists()  # the holder's run was not touched
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    assert not run.exists()  # the holder wrote nothing: its directory went with it
    code, _, err = cli(capsys, "run", recipe(tmp_path), "--out", run, "--no-progress")
    assert code == 0, err


@pytest.mark.slow  # more than 15 s on 2 cores
def test_two_overwrite_runs_at_once_one_wins_the_other_gets_one_line(tmp_path):
    path = tmp_path / "slow.yaml"
    path.write_text(digits_head("rd") + "targets: [onnx]\nbenchmark: {runs: 20, warmup: 0, warmup_s: 0, "
                    "min_time_s: 8, memory: false}\n", encoding="utf-8")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "compressor", "run", str(path), "--out", str(run), "--overwrite", "--no-progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time

    deadline = time.monotonic() + 120
    while not (run / MARKER).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"in use by another compressor run (pid {first.pid})" in one_line(second.stderr)
    finished(run)


# --- a failed run leaves nothing ---------------------------------------------------------------

WEIRD = textwrap.dedent("""
    import torch

    torch.library.define("hostile::odd", "(Tensor x) -> Tensor")

    @torch.library.impl("hostile::odd", "cpu")
    def _odd(x):
        return x * 2

    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.ops.hostile.odd(x)

    def make():
        return Odd().eval()
""")


def test_a_run_that_fails_in_export_leaves_no_directory(tmp_path, capsys):
    (tmp_path / "oddmod.py").write_text(WEIRD)
    path = tmp_path / "odd.yaml"
    path.write_text("version: 1\nname: odd\nmodel:\n  factory: oddmod:make\n  inputs: [{name: x, shape: [1, 4]}]\n"
                    "targets: [onnx]\n" + FAST, encoding="utf-8")
    code, _, err = cli(capsys, "run", path, "--out", tmp_path / "run", "--no-progress")
    assert code == 2 and "hostile" in one_line(err)
    assert not (tmp_path / "run").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "run", path, "--out", tmp_path / "empty", "--no-progress")
    assert code == 2 and list((tmp_path / "empty").iterdir()) == []  # found empty, left empty


def test_a_failed_overwrite_of_a_previous_run_leaves_no_stale_half(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    (tmp_path / "oddmod.py").write_text(WEIRD)
    path = tmp_path / "odd.yaml"
    path.write_text("version: 1\nname: odd\nmodel:\n  factory: oddmod:make\n  inputs: [{name: x, shape: [1, 4]}]\n"
                    "targets: [onnx]\n" + FAST, encoding="utf-8")
    code, _, err = cli(capsys, "run", path, "--out", run, "--overwrite", "--no-progress")
    assert code == 2
    # Neither the old run (replaced) nor a half of the new one: the directory is empty.
    assert [p for p in run.rglob("*") if p.is_file()] == []


# --- nothing outside the run directory ---------------------------------------------------------

def test_onnx_preprocessing_writes_nothing_into_the_working_directory(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference saves its partial model into the working
    directory when it stops short (an op it does not know); the lowering runs it from
    its scratch folder instead."""
    import onnx
    from onnx import TensorProto, helper

    from targets.onnx.quantize import preprocess

    node = helper.make_node("Mystery", ["x"], ["y"], domain="com.example.hostile")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example.hostile", 1)])
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    work.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    try:
        preprocess(src, work)
    except Exception:
        pass  # the op is unknown to ONNX Runtime too; what matters is where files went
    assert os.getcwd() == str(cwd)
    assert list(cwd.iterdir()) == []


def test_the_gate_refuses_the_report_of_a_run_that_did_not_finish(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    (run / INCOMPLETE).write_text("killed after the reports, before the manifest\n")
    (tmp_path / "b.yaml").write_text("limits:\n  '*': {max_size: 10MB}\n")
    refused(capsys, "gate", run / "report.json", "--budgets", tmp_path / "b.yaml",
            says=("belongs to a run that did not finish", "INCOMPLETE"))


# --- what an interrupted run left -----------------------------------------------------------

def _interrupted(run: Path) -> None:
    """What a run killed mid-way leaves: marker 'running', INCOMPLETE, files in flight."""
    marker = json.loads((run / MARKER).read_text())
    (run / MARKER).write_text(json.dumps({**marker, "state": "running", "pid": 999999}))
    (run / INCOMPLETE).write_text("This run has not finished\n")
    (run / "manifest.json").unlink()
    (run / ".report.md.k3j2.part").write_text("half a rep")
    staging = run / "artifacts" / ".rd.int8-static.x81.staging"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"\x08\x07half")


def test_the_next_run_cleans_what_an_interrupted_one_left_without_overwrite(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    _interrupted(run)
    code, _, err = cli(capsys, "run", recipe(tmp_path), "--out", run, "--no-progress")
    assert code == 0, err
    finished(run)
    assert sorted(p.name for p in (run / "artifacts").iterdir()) == ["rd.fp32.onnx"]


@pytest.mark.parametrize("left", [[".INCOMPLETE.q1w2.part"], [INCOMPLETE, f".{MARKER}.e3r4.part"]])
def test_a_run_killed_while_writing_its_marker_files_is_cleaned_by_the_next(tmp_path, capsys, left):
    """The kill window inside the first atomic writes (found by the random kill test):
    only the temporary file of INCOMPLETE, or INCOMPLETE and the marker's."""
    run = tmp_path / "run"
    run.mkdir()
    for name in left:
        (run / name).write_text("half")
    code, _, err = cli(capsys, "run", recipe(tmp_path), "--out", run, "--no-progress")
    assert code == 0, err
    finished(run)
    assert not any(p.name.endswith(".part") for p in run.iterdir())


def test_an_interrupted_run_with_qat_checkpoints_asks_for_resume_or_overwrite(tmp_path, capsys, previous_run):
    run = copy_of(previous_run, tmp_path / "run")
    _interrupted(run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "qat-x86.pt").write_bytes(b"hours of training")
    refused(capsys, "run", recipe(tmp_path), "--out", run, "--no-progress",
            says=("unfinished run with QAT checkpoints", "--resume", "--overwrite"))
    assert (run / "checkpoints" / "qat-x86.pt").read_bytes() == b"hours of training"
    assert (run / ".report.md.k3j2.part").exists()  # refused: nothing was touched


def test_a_whole_run_writes_nothing_into_the_working_directory(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = tmp_path / "static.yaml"
    path.write_text(digits_head("rd", calibration=64) + "steps: [{quantize: {variants: [{mode: static}]}}]\n"
                    "targets: [onnx]\n" + FAST, encoding="utf-8")
    proc = cli_process("run", path, "--out", tmp_path / "run", "--no-progress", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert list(cwd.iterdir()) == []
    finished(tmp_path / "run")

"""Fault injection on the run directory: a run killed (SIGKILL) at chosen and at random
moments leaves a directory that is either complete or marked INCOMPLETE, holding only
files of ours, and the next run into it cleans up and finishes; a full filesystem (a
small tmpfs) gets one line naming the disk, and nothing half-written stays."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compressor.flows.rundir import INCOMPLETE, LOCK, _inspect
from compressor.fsutil import sha256
from hostile_cli import debris, one_line
from recipes import digits_head

RECIPE = (digits_head("kill", calibration=64, evaluation=64)
          + "steps: [{quantize: {variants: [{mode: static}, {mode: dynamic}]}}]\ntargets: [onnx]\n"
          + "benchmark: {runs: 20, warmup: 0, warmup_s: 0, memory: false}\n")


def _command(recipe: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "compressor", "run", str(recipe), "--out", str(run), "--no-progress", *extra]


def _state(run: Path) -> str:
    """'complete', 'incomplete' or 'absent', after checking what each promises."""
    if not run.exists() or not any(run.iterdir()):
        return "absent"
    marker = _inspect(run)  # raises on a file that no run of ours wrote
    if (run / INCOMPLETE).exists():
        return "incomplete"
    assert marker["state"] == "complete" and debris(run) == []
    m = json.loads((run / "manifest.json").read_text())
    for entry in [*m["artifacts"], *m["reports"]]:
        assert sha256(run / entry["file"]) == entry["sha256"], entry
    return "complete"


def _listed(folder: Path, pattern: str) -> list[Path]:
    """The folder's entries matching `pattern`, or none: the run under test may remove the
    folder between any two calls (an --overwrite clearing the last run)."""
    try:
        return list(folder.glob(pattern))
    except OSError:
        return []


def _staging(run: Path) -> bool:
    return any(p.name.endswith(".staging") for p in _listed(run / "artifacts", ".*"))


# Moments named by what the directory shows, then moments drawn at random.
def _taken_by(run: Path, pid: int) -> bool:
    """The run has locked the directory (its pid is in the lock file)."""
    try:
        return (run / LOCK).read_text().strip() == str(pid)
    except OSError:
        return False


MOMENTS = {
    "taken": _taken_by,
    "exporting": lambda run, pid: _staging(run),
    "first artifact": lambda run, pid: _taken_by(run, pid) and bool(_listed(run / "artifacts", "*.onnx")),
    "reports": lambda run, pid: (run / "report.json").exists() and _taken_by(run, pid),
}


@pytest.mark.slow  # more than 15 s on 2 cores
def test_kill_at_any_moment_leaves_a_complete_or_marked_directory_that_the_next_run_cleans(tmp_path):
    recipe = tmp_path / "kill.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    run = tmp_path / "run"
    seed = int(os.environ.get("COMPRESSOR_FAULT_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    start = time.monotonic()
    assert subprocess.run(_command(recipe, tmp_path / "timing"), capture_output=True).returncode == 0
    whole = time.monotonic() - start
    plans = [*MOMENTS.items(), *((f"after {d:.2f} s", d) for d in sorted(rng.uniform(0.3, whole) for _ in range(3)))]
    seen = []
    for name, when in plans:
        extra = ("--overwrite",) if _state(run) == "complete" else ()  # an INCOMPLETE one needs no flag
        proc = subprocess.Popen(_command(recipe, run, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while proc.poll() is None:
            if (when(run, proc.pid) if callable(when) else time.monotonic() - t0 >= when):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        rc = proc.wait()
        seen.append((name, rc, _state(run)))
        assert rc in (0, -signal.SIGKILL), (seed, name, rc, proc.stderr.read())
    killed = [s for s in seen if s[1] == -signal.SIGKILL]
    assert len(killed) >= 4, (seed, seen)  # most moments were caught mid-run
    assert any(state == "incomplete" for _, _, state in killed), (seed, seen)
    extra = ("--overwrite",) if _state(run) == "complete" else ()
    final = subprocess.run(_command(recipe, run, *extra), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert _state(run) == "complete", seen
    names = sorted(p.name for p in (run / "artifacts").iterdir())
    assert names == ["kill.fp32.onnx", "kill.int8-dynamic.onnx", "kill.int8-static.onnx"]


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'mount failed'}): "
                    "the full-disk cases need root and mount rights")


@pytest.fixture
def small_disk(tmp_path):
    mounted = []

    def make(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("the full-disk cases mount a small tmpfs, which needs root")
        path = tmp_path / f"disk-{size}"
        _mount_tmpfs(path, size)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("size", ["4k", "300k", "600k"])
def test_a_full_disk_is_one_line_naming_it_and_leaves_nothing(tmp_path, small_disk, size):
    disk = small_disk(size)
    recipe = tmp_path / "kill.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    proc = subprocess.run(_command(recipe, disk / "run"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert "no space left on the device" in line or "are free on the device holding" in line, line
    assert "free some space or choose another --out" in line
    # A run that failed on a full disk either removed everything it wrote or, where the
    # failure came from one artifact only, finished with that row failed.
    state = _state(disk / "run")
    assert state in ("absent", "complete"), state
    assert debris(disk) == []


def test_a_disk_filled_before_the_run_starts(tmp_path, small_disk):
    disk = small_disk("64k")
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # the user's own file takes the whole disk
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    before = filler.stat().st_size
    recipe = tmp_path / "kill.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    proc = subprocess.run(_command(recipe, disk / "run"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no space left on the device" in one_line(proc.stderr)
    assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"] and filler.stat().st_size == before

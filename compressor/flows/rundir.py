"""The run directory: where a run writes, what it may remove, its lock and its manifest
(the sha256 of every file it wrote, library versions, the machine and the recipe).

A run directory is ours when it carries the marker `.compressor-run.json` (or, from runs
before the marker, a compressor manifest). The marker records which names the run
writes, so that `--overwrite` removes only those and refuses a directory holding anything
else. While a run works in it, the directory is locked (`.compressor.lock`, an advisory
lock: a second run gets one line naming the holder's pid) and carries `INCOMPLETE`; the
manifest is written last, after every other file, and then `INCOMPLETE` goes. A run that
fails removes what it wrote except QAT checkpoints (which `--resume` continues from); a
run that is killed leaves `INCOMPLETE`, and the next run into the directory cleans up.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from compressor import sysinfo
from compressor.config.recipe import Recipe
from compressor.data import Dataset
from compressor.errors import RecipeError, first_line
from compressor.fsutil import nearest_existing, sha256, write_json, write_text

MANIFEST_SCHEMA_VERSION = 1
MARKER = ".compressor-run.json"
LOCK = ".compressor.lock"
INCOMPLETE = "INCOMPLETE"
# What a run writes at the top of its directory (the gate files only with budgets).
REPORT_FILES = ("report.json", "report.md", "report.html", "gate.xml", "gate.json", "gate.md", "run.log")
_META = (MARKER, LOCK, INCOMPLETE, "manifest.json")
_DEBRIS = (".staging", ".part")   # atomic writes in flight (compressor.fsutil)


def run_dir_for(recipe: Recipe, out: Path | None) -> Path:
    if out is not None:
        return Path(out)
    return recipe.resolve(recipe.output.dir) if recipe.output.dir else Path("runs") / recipe.name


@dataclass
class RunDir:
    """A locked run directory this process is writing."""

    path: Path
    marker: dict
    created: list[Path]             # the folders this run made (out and missing parents), deepest first
    _lock: int = field(repr=False, default=-1)

    def finish(self) -> None:
        """Everything is written (the manifest last): the run is complete."""
        self.marker["state"] = "complete"
        self.marker["finished"] = _now()
        write_json(self.path / MARKER, self.marker)
        (self.path / INCOMPLETE).unlink(missing_ok=True)

    def _failed(self, reason: str) -> None:
        """Remove what this run wrote, except QAT checkpoints; when nothing is left,
        leave the directory as it was found (gone, if this run made it)."""
        _remove_ours(self.path, self.marker, keep_checkpoints=True)
        if _files_under(self.path / "checkpoints"):
            self.marker.update(state="failed", reason=reason, finished=_now())
            with contextlib.suppress(OSError):  # a full disk: the marker still says 'running', as good
                write_json(self.path / MARKER, self.marker)
                write_text(self.path / INCOMPLETE, f"This run failed: {reason}\nIts QAT checkpoints are kept: "
                           "rerun with --resume to continue from them, or with --overwrite to start over.\n")
            return
        (self.path / MARKER).unlink(missing_ok=True)
        (self.path / INCOMPLETE).unlink(missing_ok=True)  # last: a kill before it leaves a marked directory
        _release(self)
        (self.path / LOCK).unlink(missing_ok=True)
        _remove_made(self.created)


def _remove_made(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; each only when empty
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def open_run_dir(out: Path, recipe_name: str, overwrite: bool = False, resume: bool = False) -> Iterator[RunDir]:
    """Take `out` for a run: check that it is free or ours, lock it, remove what a
    previous run left (keeping QAT checkpoints when resuming), mark it incomplete. On an
    exception the run's files are removed again (see `RunDir._failed`)."""
    out = Path(out)
    _check_place(out)
    previous = _inspect(out)            # read-only: a foreign directory is refused untouched
    created = [p for p in (out, *out.parents) if not p.exists()]
    had_lock = (out / LOCK).exists()
    rd = RunDir(out, marker={}, created=created)
    marking = False
    try:
        out.mkdir(parents=True, exist_ok=True)
        rd._lock = _acquire(out)
        _stamp(rd._lock, out)
        previous = _inspect(out)        # again, now that no other run can change it
        if previous is not None:
            _may_replace(out, previous, overwrite, resume)
        # INCOMPLETE first: from here until the manifest is written, a kill at any moment
        # leaves a directory that says it is unfinished. Written in place, not through a
        # temporary file: its name is the message, so a kill while it is written must
        # already leave it (a kill found a directory holding only the temporary file).
        started = _now()
        marking = not (out / INCOMPLETE).exists()  # a failed write (a full disk) takes back only its own
        (out / INCOMPLETE).write_text(f"This run has not finished (pid {os.getpid()}, started {started}). If that "
                                      "process is gone it was interrupted: its files are partial, and the next "
                                      "run into this directory removes them.\n", encoding="utf-8")
        marking = False
        if previous is not None:
            _remove_ours(out, previous, keep_checkpoints=resume)
        rd.marker = {"tool": "compressor", "kind": "run", "state": "running", "pid": os.getpid(),
                     "started": started, "owns": [f"artifacts/{recipe_name}."]}
        write_json(out / MARKER, rd.marker)
    except BaseException:
        ours = rd._lock >= 0  # never unlink a lock file another run holds
        if ours and marking:  # INCOMPLETE could not be written: nothing was touched yet
            with contextlib.suppress(OSError):
                (out / INCOMPLETE).unlink()
        _release(rd)
        if ours and not had_lock:
            with contextlib.suppress(OSError):
                (out / LOCK).unlink()
        _remove_made(created)
        raise
    try:
        yield rd
    except BaseException as e:
        if rd.marker.get("state") != "complete":
            rd._failed(first_line(e))
        raise
    else:
        if rd.marker.get("state") != "complete":
            rd._failed("the run stopped before it finished")
    finally:
        _release(rd)


def _check_place(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RecipeError(f"run directory {out} is a file; choose another --out")
    parent = nearest_existing(out.absolute().parent)
    if not parent.is_dir():
        raise RecipeError(f"cannot make run directory {out}: {parent} is a file; choose another --out")
    if not out.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise RecipeError(f"cannot make run directory {out}: {parent} is not writable; choose another --out")


def _inspect(out: Path) -> dict | None:
    """The marker of the run in `out` (None when `out` is missing or empty). Refuses,
    touching nothing, a directory holding a file no run of ours wrote."""
    if not out.is_dir() or all(p.name == LOCK for p in out.iterdir()):
        return None
    marker = _read_marker(out)
    if marker is None:
        raise RecipeError(f"run directory {out} holds files that are not a compressor run; refusing to use or "
                          "overwrite it: choose another --out")
    foreign = [p for p in sorted(out.rglob("*"))
               if (p.is_symlink() or not p.is_dir()) and not _is_ours(out, p, marker)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise RecipeError(f"run directory {out} holds {foreign[0].relative_to(out)}{more}, which no compressor run "
                          "wrote; refusing to overwrite it: move it out or choose another --out")
    return marker


def _read_marker(out: Path) -> dict | None:
    for name in (MARKER, "manifest.json"):
        try:
            data = json.loads((out / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if name == MARKER and isinstance(data, dict) and data.get("tool") == "compressor":
            return data
        if name == "manifest.json" and isinstance(data, dict) and data.get("schema") == "compressor.manifest":
            # A run from before the marker: it owns exactly the files its manifest lists.
            owns = [a["file"] for a in data.get("artifacts", []) if isinstance(a, dict) and isinstance(a.get("file"), str)]
            return {"tool": "compressor", "kind": "run", "state": "complete", "owns": owns, "exact": True}
    # A run killed before its marker was written or after it was removed holds only
    # INCOMPLETE; one from before the marker, killed in training, only its checkpoints.
    interrupted = {"tool": "compressor", "kind": "run", "state": "interrupted", "owns": [], "exact": True}
    files = [p for p in out.rglob("*") if (p.is_symlink() or not p.is_dir()) and p != out / LOCK]
    if files and all(p == out / INCOMPLETE or _meta_in_flight(out, p) or p.relative_to(out).parts[0] == "checkpoints"
                     and _is_ours(out, p, interrupted) for p in files):
        return interrupted
    return None


def _meta_in_flight(out: Path, path: Path) -> bool:
    """The temporary file of INCOMPLETE or the marker, left by a kill while it was written
    (fsutil.atomic_path: '.NAME.XXXX.part' beside it)."""
    return path.parent == out and path.name.endswith(".part") and any(
        path.name.startswith(f".{name}.") for name in _META)


def _is_ours(out: Path, path: Path, marker: dict) -> bool:
    rel = path.relative_to(out).as_posix()
    top, _, rest = rel.partition("/")
    if any(part.endswith(_DEBRIS) for part in rel.split("/")):
        return True
    if not rest:
        return rel in REPORT_FILES or rel in _META
    if top == "checkpoints":
        return "/" not in rest and rest.startswith("qat-") and rest.endswith(".pt")
    owns = [str(o) for o in marker.get("owns", [])]
    return rel in owns if marker.get("exact") else any(rel.startswith(o) for o in owns)


def _may_replace(out: Path, marker: dict, overwrite: bool, resume: bool) -> None:
    if overwrite or resume:
        return
    if marker.get("state") == "complete" and not (out / INCOMPLETE).exists():
        raise RecipeError(f"run directory {out} holds a finished run; pass --overwrite to replace it or choose "
                          "another --out")
    if _files_under(out / "checkpoints"):
        raise RecipeError(f"run directory {out} holds an unfinished run with QAT checkpoints; pass --resume to "
                          "continue it or --overwrite to start over")
    # An interrupted run without checkpoints: nothing of it is worth keeping.


def _remove_ours(out: Path, marker: dict, keep_checkpoints: bool) -> None:
    for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(out)
        if rel.parts[0] == "checkpoints" and keep_checkpoints and not rel.name.endswith(_DEBRIS):
            continue
        if path.is_dir() and not path.is_symlink():
            if path.name.endswith(".staging"):
                shutil.rmtree(path, ignore_errors=True)
            elif str(rel) in ("artifacts", "checkpoints"):
                with contextlib.suppress(OSError):
                    path.rmdir()  # only when emptied: a folder of the user's inside stays
        elif str(rel) not in (MARKER, LOCK, INCOMPLETE) and _is_ours(out, path, marker):
            path.unlink(missing_ok=True)


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(_DEBRIS)] if folder.is_dir() else []


def _acquire(out: Path) -> int:
    import fcntl

    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RecipeError(f"run directory {out} is in use by another compressor run (pid {holder}); wait for it "
                          "to finish or choose another --out") from None
    return fd


def _stamp(fd: int, out: Path) -> None:
    """The holder's pid in the lock file, for the refusal a second run gets."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(out / LOCK)) from None


def _release(rd: RunDir) -> None:
    if rd._lock >= 0:
        os.close(rd._lock)  # closing the descriptor drops the flock
        rd._lock = -1


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def manifest(recipe: Recipe, out: Path, rows: list[dict]) -> dict:
    """Written last: every artifact file and every report file, with its digest."""
    files = []
    for r in rows:
        if r.get("file"):
            main = out / r["file"]
            for f in [main, *sorted(main.parent.glob(main.name + ".data"))]:
                files.append({"file": str(f.relative_to(out)), "artifact": r["name"], "bytes": f.stat().st_size,
                              "sha256": sha256(f)})
    reports = [{"file": n, "bytes": (out / n).stat().st_size, "sha256": sha256(out / n)}
               for n in REPORT_FILES if (out / n).is_file()]
    weights = recipe.model.source_path
    model_file = recipe.resolve(weights) if weights else None
    return {
        "schema": "compressor.manifest", "schema_version": MANIFEST_SCHEMA_VERSION,
        "recipe": {"name": recipe.name, "text": recipe.source_text,
                   "resolved": recipe.model_dump(mode="json")},
        "model": {"source": recipe.model.source_name,
                  "file": str(model_file) if model_file else None,
                  "sha256": sha256(model_file) if model_file and model_file.is_file() else None},
        "artifacts": files, "reports": reports, "libraries": sysinfo.library_versions(),
        "machine": sysinfo.machine(),
    }


@contextlib.contextmanager
def eval_file(evaluation: Dataset | None) -> Iterator[Path | None]:
    """Evaluation data as an .npz for the benchmark workers, outside the run directory."""
    if evaluation is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="compressor-eval-") as d:
        path = Path(d) / "eval.npz"
        evaluation.save_npz(path)
        yield path

"""The run directory: where a run writes, what it may overwrite, and its manifest (the
sha256 of every artifact file, library versions, the machine and the recipe)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from compressor import sysinfo
from compressor.config.recipe import Recipe
from compressor.data import Dataset
from compressor.errors import RecipeError
from compressor.fsutil import sha256

MANIFEST_SCHEMA_VERSION = 1


def run_dir_for(recipe: Recipe, out: Path | None) -> Path:
    if out is not None:
        return Path(out)
    return recipe.resolve(recipe.output.dir) if recipe.output.dir else Path("runs") / recipe.name


def prepare_run_dir(out: Path, overwrite: bool) -> None:
    """An empty directory, or a previous run's when overwriting is allowed. A directory
    that is not a run of ours is never emptied."""
    if out.exists() and not out.is_dir():
        raise RecipeError(f"run directory {out} is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RecipeError(f"run directory {out} is not empty; pass --overwrite or choose another --out")
        if not any((out / n).exists() for n in ("manifest.json", "artifacts", "checkpoints")):
            raise RecipeError(f"run directory {out} holds files that are not a compressor run; "
                              "refusing to overwrite it, choose another --out")
        shutil.rmtree(out / "artifacts", ignore_errors=True)
        for name in ("report.json", "report.md", "manifest.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def manifest(recipe: Recipe, out: Path, rows: list[dict]) -> dict:
    files = []
    for r in rows:
        if r.get("file"):
            main = out / r["file"]
            for f in [main, *sorted(main.parent.glob(main.name + ".data"))]:
                files.append({"file": str(f.relative_to(out)), "artifact": r["name"], "bytes": f.stat().st_size,
                              "sha256": sha256(f)})
    weights = recipe.model.weights or recipe.model.program or recipe.model.keras
    model_file = recipe.resolve(weights) if weights else None
    return {
        "schema": "compressor.manifest", "schema_version": MANIFEST_SCHEMA_VERSION,
        "recipe": {"name": recipe.name, "text": recipe.source_text,
                   "resolved": recipe.model_dump(mode="json")},
        "model": {"source": recipe.model.factory or str(recipe.model.program or recipe.model.keras),
                  "file": str(model_file) if model_file else None,
                  "sha256": sha256(model_file) if model_file and model_file.is_file() else None},
        "artifacts": files, "libraries": sysinfo.library_versions(), "machine": sysinfo.machine(),
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

"""The pipeline: recipe -> model -> steps -> one artifact per target and precision ->
validation -> benchmark -> report. The only core module that joins compressor/,
targets/ and benchmarks/."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from compressor import sysinfo
from compressor.data import Dataset, load_dataset
from compressor.errors import CompressorError, FidelityError, RecipeError
from compressor.fsutil import sha256, write_json, write_text
from compressor.model import load_model
from compressor.reference import VALIDATION_BATCH, reference_for
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import Recipe

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


def run(recipe: Recipe, out: Path | None = None, overwrite: bool = False, show_progress: bool = True,
        console=None, baseline: Path | None = None, resume: bool = False) -> dict | None:
    """Run a whole recipe; returns the report (also written to the run directory).
    With budgets in the recipe, the gate runs last and raises BudgetExceeded (exit 1).
    Under torchrun, every process trains and only rank 0 goes on to export and report
    (the others return None). `resume` continues QAT from the run directory's checkpoints."""
    from compressor.distributed import init_from_env
    import targets
    from benchmarks import report as reports
    from benchmarks.harness import BenchConfig, measure
    from targets.layout import layout_of
    from targets.validate import check, validate_artifact

    out = run_dir_for(recipe, out)
    target_objs = {name: targets.get(name) for name in recipe.targets}
    world = init_from_env()
    model = _load_source(recipe)
    if world.is_main:
        prepare_run_dir(out, overwrite or recipe.output.overwrite or resume)
    data = recipe.data
    calibration = load_dataset(data.calibration, model.inputs, recipe.base_dir) if data.calibration else None
    evaluation = load_dataset(data.evaluation, model.inputs, recipe.base_dir) if data.evaluation else None
    dense, pruned = model, []
    if recipe.prune_steps:  # before export: every target's artifacts come from the pruned model
        from compressor.flows.prune import apply_prune_steps

        train = load_dataset(data.train, model.inputs, recipe.base_dir) if data.train else None
        model, pruned = apply_prune_steps(recipe, model, train, evaluation, show_progress)
    qat = None
    if recipe.qat_steps:
        from compressor.flows.qat import apply_qat_steps

        train = load_dataset(data.train, model.inputs, recipe.base_dir) if data.train else None
        qat = apply_qat_steps(recipe, model, train, evaluation, out, resume, world, show_progress)
    if not world.is_main:
        return None
    # Validation compares artifacts with the model they were exported from (the pruned one).
    ref = reference_for(model, evaluation, recipe.validation.samples)
    variants: list[QuantVariant | None] = [None, *recipe.quant_variants]
    bench = BenchConfig.from_spec(recipe.benchmark, trust=True)  # the run made these artifacts itself
    art_dir = out / "artifacts"
    rows: list[dict] = []
    failures: list[tuple[type[CompressorError], str]] = []

    with _progress(show_progress, console) as progress, _eval_file(evaluation) as eval_npz:
        from compressor.flows.qat import qat_variants

        task = progress.add_task("export", total=sum(len(variants) + len(qat_variants(qat, t)) for t in target_objs) * 2)
        qat_refs: dict = {}
        fallback_layers: dict = {}  # sensitivity bars of variants with a fallback budget
        done: list[tuple[dict, object]] = []
        for tname, target in target_objs.items():
            base = None
            for variant in [*variants, *qat_variants(qat, tname)]:
                label = variant.label if variant else "fp32"
                # A QAT variant exports the quantized model the qat step made for this target's family.
                src, src_ref = model, ref
                if variant is not None and variant.mode == "qat":
                    src = qat.sources[(tname, label)]
                    src_ref = qat_refs.setdefault(id(src), reference_for(src, evaluation, recipe.validation.samples))
                progress.update(task, description=f"export {tname}/{label}")
                row = {"name": f"{tname}/{label}", "target": tname, "label": label,
                       "precision": variant.precision if variant else "fp32",
                       "intent": variant.model_dump() if variant else None, "status": "ok", "notes": []}
                rows.append(row)
                if variant is not None and base is None:
                    row.update(status="skipped", error="the fp32 export failed")
                    progress.advance(task, 2)
                    continue
                if variant is not None and variant.mode not in target.modes:
                    row.update(status="skipped", error=f"the {tname} target does not offer {variant.mode} "
                               f"quantization (it offers: {', '.join(target.modes) or 'fp32 only'})")
                    progress.advance(task, 2)
                    continue
                try:
                    if variant is not None and variant.fallback is not None:
                        from compressor.flows.fallback import export_for_row

                        artifact = export_for_row(target, src, variant, recipe.targets[tname], calibration, base,
                                                  src_ref, art_dir / f"{recipe.name}.{label}", evaluation, row,
                                                  fallback_layers, threads=bench.threads,
                                                  progress=lambda msg: progress.update(task, description=msg))
                    else:
                        artifact = target.export(src, variant, art_dir / f"{recipe.name}.{label}",
                                                 recipe.targets[tname], calibration, base=base)
                except CompressorError as e:
                    if variant is None:
                        raise  # nothing else of this target can be built
                    row.update(status="failed", error=str(e))
                    failures.append((type(e), str(e)))
                    progress.advance(task, 2)
                    continue
                row.update(file=str(artifact.path.relative_to(out)), export=artifact.meta)
                try:
                    fid, _ = validate_artifact(target, artifact, ref.inputs, src_ref.outputs, bench.threads,
                                               targets.Device.parse(bench.device))
                    row["fidelity"] = {**fid.to_json(), "on_real_data": ref.on_real_data}
                    check(fid, getattr(recipe.validation, row["precision"]), f"{tname}/{label}")
                except FidelityError as e:
                    for f in artifact.files:  # never leave an artifact with broken outputs
                        f.unlink(missing_ok=True)
                    row.update(status="failed", error=str(e))
                    row.pop("file", None)
                    failures.append((type(e), str(e)))
                    progress.advance(task, 2)
                    continue
                if variant is None:
                    base = artifact
                progress.advance(task)
                done.append((row, artifact))
        for row, artifact in done:
            progress.update(task, description=f"benchmark {row['name']}")
            row["metrics"] = measure(artifact.path, bench, eval_npz, layout_of(artifact.meta)).to_json()
            progress.advance(task)
        if pruned:
            from compressor.flows.prune import measure_dense

            progress.update(task, description="benchmark the dense model")
            dense_metrics = measure_dense(recipe, dense, bench, eval_npz)
    for row in rows if pruned else []:
        row["notes"].extend(n for r in pruned for n in r.notes if n not in row["notes"])

    report = reports.build(
        name=recipe.name,
        model={"source": model.source, "parameters": model.parameter_count(),
               "inputs": [i.model_dump() for i in model.inputs]},
        reference={"framework": model.framework, "eval_samples": ref.eval_samples,
                   # With pruning, the reference accuracy is the dense model's (deltas = what pruning cost).
                   "accuracy": pruned[0].accuracy_before if pruned else ref.accuracy,
                   **({"pruned_accuracy": ref.accuracy} if pruned else {}),
                   "validation_samples": len(ref.outputs[0]), "validation_on_real_data": ref.on_real_data},
        bench={**recipe.benchmark.model_dump()},
        machine=sysinfo.machine(), artifacts=rows)
    if recipe.budgets is not None:
        report["budgets"] = recipe.budgets.model_dump(mode="json")
    if pruned:
        from compressor.flows.prune import pruning_section

        report["pruning"], report["per_layer"] = pruning_section(pruned, dense_metrics, rows,
                                                                 recipe.benchmark.batch_sizes[0])
    if qat is not None:
        from compressor.flows.qat import qat_section

        report["qat"], qat_layers = qat_section(qat, rows)
        report["per_layer"] = {**report.get("per_layer", {}), **qat_layers}
    if fallback_layers:
        report["per_layer"] = {**report.get("per_layer", {}), **fallback_layers}
    write_json(out / "report.json", report)
    write_text(out / "report.md", reports.to_markdown(report))
    write_json(out / "manifest.json", manifest(recipe, out, rows))
    from benchmarks.html import write_html

    write_html(out / "report.html", report)
    if failures:
        more = f" ({len(failures) - 1} more in report.json)" if len(failures) > 1 else ""
        err = failures[0][0](failures[0][1] + more)
        err.report = report  # the CLI still shows what did work
        raise err
    if recipe.budgets is not None:
        _gate(recipe, report, out, baseline)
    return report


def _load_source(recipe: Recipe):
    """The recipe's model: a PyTorch `Model`, or for a Keras source the TFLite target's
    handle (TensorFlow's converter; the recipe allows only the tflite target for it)."""
    if recipe.model.keras is not None:
        from targets.tflite.keras import load_keras_model

        return load_keras_model(recipe.model, recipe.base_dir, recipe.targets["tflite"], recipe.quant_variants)
    return load_model(recipe.model, recipe.base_dir)


def _gate(recipe: Recipe, report: dict, out: Path, baseline: Path | None) -> None:
    from benchmarks.gate_cli import run_gate

    spec = recipe.budgets
    if baseline is None and spec.baseline is not None:
        baseline = recipe.resolve(spec.baseline)
    try:
        run_gate(report, spec, baseline, junit=out / "gate.xml", json_out=out / "gate.json",
                 markdown=out / "gate.md")
    except CompressorError as e:
        e.report = report
        raise


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
def _eval_file(evaluation: Dataset | None) -> Iterator[Path | None]:
    """Evaluation data as an .npz for the benchmark workers, outside the run directory."""
    if evaluation is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="compressor-eval-") as d:
        path = Path(d) / "eval.npz"
        evaluation.save_npz(path)
        yield path


@contextlib.contextmanager
def _progress(enabled: bool, console=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not enabled, transient=False) as p:
        yield p

"""The pipeline for a Keras / SavedModel source (`model: {keras: path}`): TensorFlow's
TFLiteConverter makes fp32 and the recipe's quantized variants, each is validated against
the Keras model's own outputs and benchmarked like any other artifact.

TensorFlow is imported only here (through targets.tflite.keras), only for such a recipe.
The recipe already refuses other targets and prune/qat steps for a Keras source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor import sysinfo
from compressor.data import Dataset, load_dataset
from compressor.errors import CompressorError, FidelityError, ModelLoadError, RecipeError
from compressor.fsutil import sha256, write_json, write_text
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import Recipe
from compressor.reference import VALIDATION_BATCH, top1

KERAS_MODES = ("static", "dynamic", "fp16")


def run_keras(recipe: Recipe, out: Path, overwrite: bool = False, show_progress: bool = True, console=None,
              baseline: Path | None = None) -> dict:
    """Convert, validate, benchmark and report a Keras model into the run directory `out`."""
    import targets
    from benchmarks import report as reports
    from benchmarks.harness import BenchConfig, measure
    from compressor.flows import run as pipeline
    from targets.base import run_batched
    from targets.tflite import TFLiteOptions
    from targets.tflite.keras import convert_keras, keras_outputs, load_keras, name_io, parameter_count
    from targets.validate import check, compare

    opts = TFLiteOptions.model_validate(recipe.targets["tflite"])
    if opts.channels_last:
        raise RecipeError("targets.tflite.channels_last: a Keras model is converted in its own layout (Keras is "
                          "channels-last already); drop 'channels_last'")
    for variant in recipe.quant_variants:
        _check_variant(variant)
    source = recipe.resolve(recipe.model.keras)
    if not source.exists():  # before TensorFlow's import, which takes seconds
        raise ModelLoadError(f"keras model {source}: no such file or directory; fix 'model.keras' in the recipe")
    model = load_keras(source)
    pipeline.prepare_run_dir(out, overwrite)
    data, specs = recipe.data, recipe.model.inputs
    calibration = load_dataset(data.calibration, specs, recipe.base_dir) if data.calibration else None
    evaluation = load_dataset(data.evaluation, specs, recipe.base_dir) if data.evaluation else None
    ref_inputs, on_real = _validation_inputs(recipe, evaluation)
    ref_outputs = keras_outputs(model, ref_inputs)
    accuracy = None
    if evaluation is not None and evaluation.labels is not None:
        full = keras_outputs(model, evaluation.inputs)[0]
        accuracy = top1(full, evaluation.labels)

    bench = BenchConfig(device=recipe.benchmark.device, threads=recipe.benchmark.threads,
                        batch_sizes=tuple(recipe.benchmark.batch_sizes), warmup=recipe.benchmark.warmup,
                        warmup_s=recipe.benchmark.warmup_s, runs=recipe.benchmark.runs,
                        min_time_s=recipe.benchmark.min_time_s, isolate=recipe.benchmark.memory)
    target = targets.get("tflite")
    variants: list[QuantVariant | None] = [None, *recipe.quant_variants]
    rows: list[dict] = []
    failures: list[tuple[type[CompressorError], str]] = []
    done = []
    with pipeline._progress(show_progress, console) as progress, pipeline._eval_file(evaluation) as eval_npz:
        task = progress.add_task("export", total=len(variants) * 2)
        for variant in variants:
            label = variant.label if variant else "fp32"
            progress.update(task, description=f"export tflite/{label}")
            row = {"name": f"tflite/{label}", "target": "tflite", "label": label,
                   "precision": variant.precision if variant else "fp32",
                   "intent": variant.model_dump() if variant else None, "status": "ok", "notes": []}
            rows.append(row)
            try:
                artifact = convert_keras(source, variant, out / "artifacts" / f"{recipe.name}.{label}",
                                         None if calibration is None else calibration.inputs, io=opts.io)
                artifact.meta.update(name_io(artifact.path, [s.name for s in specs], recipe.model.outputs))
                if opts.compact:
                    from targets.tflite.convert import compact_file

                    artifact.meta["compacted"] = compact_file(artifact.path)
                session = target.open_session(artifact.path, targets.Device.parse(bench.device), bench.threads,
                                              signature=opts.signature)
                fid = compare(ref_outputs, run_batched(session, ref_inputs, VALIDATION_BATCH),
                              session.output_names)
                del session
                row.update(file=str(artifact.path.relative_to(out)), export=artifact.meta,
                           fidelity={**fid.to_json(), "on_real_data": on_real})
                check(fid, getattr(recipe.validation, row["precision"]), f"tflite/{label}")
            except CompressorError as e:
                if variant is None and not isinstance(e, FidelityError):
                    raise  # nothing else can be built
                if isinstance(e, FidelityError):  # never leave an artifact with broken outputs
                    artifact.path.unlink(missing_ok=True)
                row.update(status="failed", error=str(e))
                row.pop("file", None)
                failures.append((type(e), str(e)))
                progress.advance(task, 2)
                continue
            progress.advance(task)
            done.append((row, artifact))
        for row, artifact in done:
            progress.update(task, description=f"benchmark {row['name']}")
            row["metrics"] = measure(artifact.path, bench, eval_npz).to_json()
            progress.advance(task)

    report = reports.build(
        name=recipe.name,
        model={"source": str(recipe.model.keras), "parameters": parameter_count(model),
               "inputs": [i.model_dump() for i in specs]},
        reference={"framework": "keras", "eval_samples": None if evaluation is None else len(evaluation),
                   "accuracy": accuracy, "validation_samples": len(ref_outputs[0]),
                   "validation_on_real_data": on_real},
        bench={**recipe.benchmark.model_dump()}, machine=sysinfo.machine(), artifacts=rows)
    if recipe.budgets is not None:
        report["budgets"] = recipe.budgets.model_dump(mode="json")
    write_json(out / "report.json", report)
    write_text(out / "report.md", reports.to_markdown(report))
    manifest = pipeline.manifest(recipe, out, rows)
    manifest["model"] = {"source": str(recipe.model.keras), "file": str(source),
                         "sha256": sha256(source) if source.is_file() else None}
    write_json(out / "manifest.json", manifest)
    from benchmarks.html import write_html

    write_html(out / "report.html", report)
    if failures:
        more = f" ({len(failures) - 1} more in report.json)" if len(failures) > 1 else ""
        err = failures[0][0](failures[0][1] + more)
        err.report = report
        raise err
    if recipe.budgets is not None:
        pipeline._gate(recipe, report, out, baseline)
    return report


def _validation_inputs(recipe: Recipe, evaluation: Dataset | None) -> tuple[dict[str, np.ndarray], bool]:
    if evaluation is not None and len(evaluation):
        return evaluation.take(recipe.validation.samples).inputs, True
    rng = np.random.default_rng(0)  # no evaluation data: deterministic synthetic inputs of the declared shapes
    n = min(recipe.validation.samples, 16)
    return {s.name: rng.random((n, *s.shape[1:])).astype(s.dtype) for s in recipe.model.inputs}, False


def _check_variant(variant: QuantVariant) -> None:
    if variant.mode not in KERAS_MODES:
        raise RecipeError(f"variant {variant.label!r}: a Keras model has no {variant.mode} variant (TFLiteConverter "
                          f"offers {', '.join(KERAS_MODES)}); drop it")
    given = [k for k in ("exclude", "exclude_ops") if getattr(variant, k, None)]
    given += ["calibration"] if variant.calibration != "minmax" else []
    given += ["per_channel"] if not variant.per_channel else []
    if given:
        raise RecipeError(f"variant {variant.label!r}: TFLiteConverter quantizes a Keras model with its own settings "
                          f"(min/max calibration, per-channel weights, every layer); drop {', '.join(given)}")

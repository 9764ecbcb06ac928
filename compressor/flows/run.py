"""The run: recipe -> model -> steps -> one artifact per target and precision, each
exported and validated, then measured, then reported (each a step of its own below).

Like every module of compressor/flows/, it joins compressor/, targets/ and benchmarks/.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmarks.rows import ArtifactRow
from compressor import sysinfo
from compressor.config.quantize import QuantVariant
from compressor.config.recipe import Recipe
from compressor.data import Dataset, load_dataset
from compressor.errors import CompressorError, FidelityError, RecipeError
from compressor.flows.rundir import RunDir, eval_file, manifest, open_run_dir, run_dir_for
from compressor.fsutil import LOW_SPACE, free_bytes, write_json, write_text
from compressor.model import load_model
from compressor.reference import Reference, reference_for



@dataclass
class _Run:
    """What every export of one run shares."""

    recipe: Recipe
    out: Path
    model: Any
    ref: Reference
    calibration: Dataset | None
    evaluation: Dataset | None
    bench: Any                      # benchmarks.harness.BenchConfig
    qat: Any                        # compressor.flows.qat.QatOutcome | None
    say: Callable[[str], None]
    qat_refs: dict = field(default_factory=dict)
    per_layer: dict = field(default_factory=dict)      # sensitivity bars of variants with a fallback budget
    devices: list = field(default_factory=list)        # benchmarks.devices.inventory.Device, local first if asked
    row_refs: dict = field(default_factory=dict)       # row name -> the reference outputs it was validated against
    devices_info: dict | None = None                   # the report's devices section (with remote devices)


def run(recipe: Recipe, out: Path | None = None, overwrite: bool = False, show_progress: bool = True,
        console=None, baseline: Path | None = None, resume: bool = False,
        devices_file: Path | None = None) -> dict | None:
    """Run a whole recipe; returns the report (also written to the run directory).
    With budgets in the recipe, the gate runs last and raises BudgetExceeded (exit 1).
    Under torchrun, every process trains and only rank 0 goes on to export and report
    (the others return None). `resume` continues QAT from the run directory's checkpoints."""
    from compressor.distributed import init_from_env
    import targets
    from benchmarks.harness import BenchConfig

    out = run_dir_for(recipe, out)
    _check_baseline(recipe, baseline)
    from compressor.flows.devices import resolve_devices

    devices = resolve_devices(recipe, devices_file)
    target_objs = {name: targets.get(name) for name in recipe.targets}
    world = init_from_env()
    # Everything a user can get wrong in the model and data is read before the run
    # directory is touched.
    model = _load_source(recipe)
    data = recipe.data
    tokenizer = getattr(model, "tokenizer", None)  # an hf source's own, for text data
    calibration = load_dataset(data.calibration, model.inputs, recipe.base_dir, tokenizer) if data.calibration else None
    evaluation = load_dataset(data.evaluation, model.inputs, recipe.base_dir, tokenizer) if data.evaluation else None
    train = None
    if (recipe.prune_steps or recipe.qat_steps) and data.train:
        train = load_dataset(data.train, model.inputs, recipe.base_dir, tokenizer)
    taken = (open_run_dir(out, recipe.name, overwrite or recipe.output.overwrite, resume) if world.is_main
             else contextlib.nullcontext())
    with taken as rundir:
        dense, pruned = model, []
        if recipe.prune_steps:  # before export: every target's artifacts come from the pruned model
            from compressor.flows.prune import apply_prune_steps

            model, pruned = apply_prune_steps(recipe, model, train, evaluation, show_progress)
        qat = None
        if recipe.qat_steps:
            from compressor.flows.qat import apply_qat_steps

            qat = apply_qat_steps(recipe, model, train, evaluation, out, resume, world, show_progress)
        if not world.is_main:
            return None
        ctx = _Run(recipe, out, model, reference_for(model, evaluation, recipe.validation.samples), calibration,
                   evaluation, BenchConfig.from_spec(recipe.benchmark, trust=True),  # the run made these itself
                   qat, say=lambda msg: None, devices=devices)
        return _export_measure_report(ctx, rundir, target_objs, dense, pruned, show_progress, console, baseline)


def _export_measure_report(ctx: _Run, rundir: RunDir, target_objs: dict, dense, pruned: list, show_progress: bool,
                           console, baseline: Path | None) -> dict:
    from benchmarks.harness import measure
    from compressor.flows.qat import qat_variants
    from targets.layout import layout_of

    recipe = ctx.recipe
    variants: list[QuantVariant | None] = [None, *recipe.quant_variants]
    rows: list[ArtifactRow] = []
    failures: list[CompressorError] = []
    with _progress(show_progress, console) as progress, eval_file(ctx.evaluation) as eval_npz:
        task = progress.add_task("export", total=sum(len(variants) + len(qat_variants(ctx.qat, t))
                                                     for t in target_objs) * 2)
        ctx.say = lambda msg: progress.update(task, description=msg)
        done: list[tuple[ArtifactRow, object]] = []
        for tname, target in target_objs.items():
            base = None
            for variant in [*variants, *qat_variants(ctx.qat, tname)]:
                row, artifact, error = _export_and_validate(ctx, tname, target, variant, base)
                rows.append(row)
                if error is not None:
                    failures.append(error)
                if artifact is None:
                    progress.advance(task, 2)
                    continue
                if variant is None:
                    base = artifact
                progress.advance(task)
                done.append((row, artifact))
        here = any(d.is_local for d in ctx.devices)

        def measure_here() -> None:
            for row, artifact in done:
                if not here:
                    row.notes.append("not measured on this machine: benchmark.devices does not list local")
                    progress.advance(task)
                    continue
                progress.update(task, description=f"benchmark {row.name}")
                try:
                    row.metrics = measure(artifact.path, ctx.bench, eval_npz, layout_of(artifact.meta)).to_json()
                except CompressorError as e:  # this artifact cannot be measured; the others still are
                    row.fail("failed", f"measuring failed: {e}")
                    failures.append(e)
                progress.advance(task)

        remote = [d for d in ctx.devices if not d.is_local]
        if remote:
            from compressor.flows.devices import measure_remote

            device_rows, ctx.devices_info, errors = measure_remote(ctx, done, remote, measure_here, progress)
            rows += device_rows
            failures += errors
        else:
            measure_here()
        for row, artifact in done:
            if row.status == "failed":  # measuring failed here: the file is not kept
                for f in artifact.files:
                    f.unlink(missing_ok=True)
        if pruned:
            from compressor.flows.prune import measure_dense

            progress.update(task, description="benchmark the dense model")
            dense_metrics = measure_dense(recipe, dense, ctx.bench, eval_npz)
    for row in rows if pruned else []:
        row.notes.extend(n for r in pruned for n in r.notes if n not in row.notes)

    report = _report(ctx, rows, pruned, dense_metrics if pruned else None)
    over_budget = _write(ctx, rundir, report, rows, baseline)
    if failures:
        more = f" ({len(failures) - 1} more in report.json)" if len(failures) > 1 else ""
        err = type(failures[0])(str(failures[0]) + more)
        err.report = report  # the CLI still shows what did work
        raise err
    if over_budget is not None:
        raise over_budget
    return report


def _export_and_validate(ctx: _Run, tname: str, target, variant: QuantVariant | None,
                         base) -> tuple[ArtifactRow, object | None, CompressorError | None]:
    """Export one variant for one target and hold it to the reference: the row, the artifact
    (None when skipped or failed) and the error that made it fail (None otherwise)."""
    import targets
    from targets.validate import check, validate_artifact

    label = variant.label if variant else "fp32"
    # A QAT variant exports the quantized model the qat step made for this target's family.
    src, src_ref = ctx.model, ctx.ref
    if variant is not None and variant.mode == "qat":
        src = ctx.qat.sources[(tname, label)]
        src_ref = ctx.qat_refs.setdefault(id(src), reference_for(src, ctx.evaluation, ctx.recipe.validation.samples))
    ctx.say(f"export {tname}/{label}")
    row = ArtifactRow(target=tname, label=label, precision=variant.precision if variant else "fp32",
                      intent=variant.model_dump() if variant else None)
    if variant is not None and base is None:
        row.fail("skipped", "the fp32 export failed")
        return row, None, None
    if variant is not None and variant.mode not in target.modes:
        row.fail("skipped", f"the {tname} target does not offer {variant.mode} quantization (it offers: "
                 f"{', '.join(target.modes) or 'fp32 only'})")
        return row, None, None
    dest = ctx.out / "artifacts" / f"{ctx.recipe.name}.{label}"
    options = ctx.recipe.targets[tname]
    try:
        if variant is not None and variant.fallback is not None:
            from compressor.flows.fallback import export_with_fallback

            result = export_with_fallback(target, src, variant, options, ctx.calibration, base, src_ref, dest,
                                          ctx.evaluation, threads=ctx.bench.threads, progress=ctx.say)
            row.fallback = result.section
            ctx.per_layer.update(result.per_layer)
            row.notes.extend(result.notes)
            if result.error is not None:
                raise result.error
            artifact = result.artifact
        else:
            artifact = target.export(src, variant, dest, options, ctx.calibration, base=base)
    except CompressorError as e:
        e = _disk_full_noted(e, ctx.out)
        if variant is None:
            raise e from None  # nothing else of this target can be built
        row.fail("failed", str(e))
        return row, None, e
    row.file, row.export = str(artifact.path.relative_to(ctx.out)), artifact.meta
    ctx.row_refs[row.name] = src_ref.outputs
    try:
        top1 = ctx.recipe.validation.top1_outputs
        fid, _ = validate_artifact(target, artifact, ctx.ref.inputs, src_ref.outputs, ctx.bench.threads,
                                   targets.Device.parse(ctx.bench.device),
                                   classes=getattr(ctx.model, "top1_outputs", None) if top1 is None else top1)
        row.fidelity = {**fid.to_json(), "on_real_data": ctx.ref.on_real_data}
        check(fid, getattr(ctx.recipe.validation, row.precision), row.name)
    except FidelityError as e:
        for f in artifact.files:  # never leave an artifact with broken outputs
            f.unlink(missing_ok=True)
        row.fail("failed", str(e))
        return row, None, e
    return row, artifact, None


def _check_baseline(recipe: Recipe, baseline: Path | None) -> None:
    """Before minutes of export: a baseline needs budgets to be compared under, and a file."""
    if baseline is not None and recipe.budgets is None:
        raise RecipeError(f"--baseline {baseline}: the recipe has no 'budgets' section to hold the run to; add "
                          "one, or compare afterwards with `compressor gate REPORT --baseline ...`")
    path = baseline or (recipe.resolve(recipe.budgets.baseline) if recipe.budgets and recipe.budgets.baseline
                        else None)
    if path is not None:
        from benchmarks.report_read import load_report

        load_report(Path(path), "baseline")  # read again by the gate at the end; checked now


def _disk_full_noted(e: CompressorError, out: Path) -> CompressorError:
    """Some writers (onnxruntime's quantizer among them) do not check their writes: on a
    full disk they leave a truncated file and fail later on reading it back, with a
    message that does not say why. When the disk is nearly full, the error says so."""
    free = free_bytes(out)
    if free is None or free >= LOW_SPACE:
        return e
    noted = type(e)(f"{e} (only {free // 1024} KB are free on the device holding {out}: a full disk makes "
                    "writers fail like this; free some space or choose another --out)")
    noted.__dict__.update(e.__dict__)
    return noted


def _report(ctx: _Run, rows: list[ArtifactRow], pruned: list, dense_metrics: dict | None) -> dict:
    from benchmarks import report as reports

    recipe, model, ref = ctx.recipe, ctx.model, ctx.ref
    artifacts = [r.to_json() for r in rows]
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
        machine=sysinfo.machine(), artifacts=artifacts,
        **({"devices": ctx.devices_info} if ctx.devices_info else {}))
    if recipe.budgets is not None:
        report["budgets"] = recipe.budgets.model_dump(mode="json")
    if pruned:
        from compressor.flows.prune import pruning_section

        report["pruning"], report["per_layer"] = pruning_section(pruned, dense_metrics, artifacts,
                                                                 recipe.benchmark.batch_sizes[0])
    if ctx.qat is not None:
        from compressor.flows.qat import qat_section

        report["qat"], qat_layers = qat_section(ctx.qat, artifacts)
        report["per_layer"] = {**report.get("per_layer", {}), **qat_layers}
    if ctx.per_layer:
        report["per_layer"] = {**report.get("per_layer", {}), **ctx.per_layer}
    return report


def _write(ctx: _Run, rundir: RunDir, report: dict, rows: list[ArtifactRow],
           baseline: Path | None) -> CompressorError | None:
    """The reports, the gate's files (with budgets), then the manifest listing all of them,
    each written atomically; then the run is complete. Returns the gate's verdict when a
    budget does not hold (raised by the caller, after the directory is complete)."""
    from benchmarks import report as reports
    from benchmarks.html import write_html

    report["recommended"] = _recommendation(ctx.recipe, report, baseline)
    from benchmarks.op_profile import profile_report

    ctx.say("profile operators")  # after the timed runs, in sessions of their own
    ops = profile_report(report, ctx.out, ctx.bench.threads)
    if ops:
        report["op_profile"] = ops
    write_json(ctx.out / "report.json", report)
    write_text(ctx.out / "report.md", reports.to_markdown(report))
    write_html(ctx.out / "report.html", report)
    from compressor.logs import LOG_NAME, run_log_text

    log = run_log_text(f"compressor run {ctx.recipe.name}")
    if log is not None:  # only the CLI keeps one: a Python caller has its own logging
        write_text(ctx.out / LOG_NAME, log)
    verdict = None
    if ctx.recipe.budgets is not None:
        try:
            _gate(ctx.recipe, report, ctx.out, baseline)
        except CompressorError as e:
            verdict = e
    write_json(ctx.out / "manifest.json", manifest(ctx.recipe, ctx.out, [r.to_json() for r in rows
                                                                           if r.device == "local"]))
    rundir.finish()
    return verdict


def _recommendation(recipe: Recipe, report: dict, baseline: Path | None) -> dict:
    """Per device, the fastest artifact that passed validation and, with budgets, every
    limit that selects it. Budgets that cannot be evaluated (a bad baseline, a name the
    report lacks) leave the rows as they are: the gate says what is wrong right after."""
    from benchmarks.recommend import recommend

    failed: set[str] = set()
    spec = recipe.budgets
    if spec is not None and spec.limits:
        from benchmarks.gate import evaluate
        from benchmarks.report_read import load_report

        try:
            path = baseline or (recipe.resolve(spec.baseline) if spec.baseline is not None else None)
            rows_only = spec.model_copy(update={"recommended": None})
            checks = evaluate(report, rows_only, load_report(path, "baseline") if path else None)
            failed = {c.artifact for c in checks if not c.passed}
        except CompressorError:
            pass
    return recommend(report, failed)


def _load_source(recipe: Recipe):
    """The recipe's model: a PyTorch `Model` (a factory, a .pt2 program, a Hugging Face
    folder, a timm name), or for a file source the handle of the target that compresses it
    (the recipe allows only that target): Keras and .tflite files the TFLite target's,
    .onnx files the ONNX target's."""
    spec = recipe.model
    if spec.keras is not None:
        from targets.tflite.keras import load_keras_model

        return load_keras_model(spec, recipe.base_dir, recipe.targets["tflite"], recipe.quant_variants)
    if spec.onnx is not None:
        from targets.onnx.source import load_onnx_model

        return load_onnx_model(spec, recipe.base_dir, recipe.targets["onnx"], recipe.quant_variants)
    if spec.tflite is not None:
        from targets.tflite.source import load_tflite_model

        return load_tflite_model(spec, recipe.base_dir, recipe.targets["tflite"], recipe.quant_variants)
    return load_model(spec, recipe.base_dir)


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


@contextlib.contextmanager
def _progress(enabled: bool, console=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not enabled, transient=False) as p:
        yield p

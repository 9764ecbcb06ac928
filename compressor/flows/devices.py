"""A run's artifacts measured on the recipe's devices (`benchmark.devices`): one row per
artifact and device, each device's accuracy and fidelity through its own runtime; the
devices are measured at the same time as the local harness."""

from __future__ import annotations

from pathlib import Path

from benchmarks.rows import ArtifactRow
from compressor.errors import CompressorError, DeviceError


def resolve_devices(recipe, devices_file: Path | None) -> list:
    """The recipe's devices from the inventory, checked before anything runs (the files are
    read only when the recipe names a device besides local)."""
    from benchmarks.devices.inventory import LOCAL_DEVICE, Inventory

    names = recipe.benchmark.devices
    if names == ["local"]:
        return [LOCAL_DEVICE]
    inventory = devices_file or (recipe.resolve(recipe.benchmark.inventory) if recipe.benchmark.inventory else None)
    return Inventory(inventory).resolve(names)


def measure_remote(ctx, done: list[tuple[ArtifactRow, object]], devices: list, local,
                   progress) -> tuple[list[ArtifactRow], dict, list[CompressorError]]:
    """Rows for every remote device (`local()`, the local harness, runs beside them), the
    devices section of the report, and the errors of the rows that failed."""
    import numpy as np

    import targets
    from benchmarks.devices.bench import devices_section
    from benchmarks.devices.fleet import measure_devices
    from benchmarks.devices.remote import REMOTE_TARGETS, Job
    from targets.base import Device as ExecDevice
    from targets.layout import layout_of
    from targets.validate import compare

    sets = {"validation": ctx.ref.inputs}
    labels = None
    if ctx.evaluation is not None:
        sets["eval"] = ctx.evaluation.inputs
        labels = None if ctx.evaluation.labels is None else np.asarray(ctx.evaluation.labels)
    jobs: list[Job] = []
    for row, artifact in done:
        if row.target not in REMOTE_TARGETS:
            continue
        session = targets.get(row.target).open_artifact(artifact, ExecDevice(), ctx.bench.threads)
        jobs.append(Job(row.name, artifact.path, row.target, artifact.files, layout_of(artifact.meta),
                        session.inputs, sets=sets, real="eval" if "eval" in sets else None))
    tasks = {d.name: progress.add_task(f"{d.name}: starting", total=None) for d in devices}

    def say(d, text: str) -> None:
        progress.update(tasks[d.name], description=f"{d.name}: {text}"[:36])

    runs, _ = measure_devices(devices, lambda d: jobs, ctx.bench, ctx.recipe.benchmark.rounds, labels, say,
                              local=local)
    for d in devices:
        progress.update(tasks[d.name], description=f"{d.name}: done", total=1, completed=1)
    rows: list[ArtifactRow] = []
    failures: list[CompressorError] = []
    for d in devices:
        run = runs[d.name]
        outcomes = {o.name: o for o in run.outcomes}
        for local_row, artifact in done:
            row = ArtifactRow(target=local_row.target, label=local_row.label, precision=local_row.precision,
                              intent=local_row.intent, file=local_row.file, export=local_row.export, device=d.name)
            o = outcomes.get(local_row.name)
            if local_row.target not in REMOTE_TARGETS:
                row.fail("skipped", f"{d.name}: {local_row.target} artifacts are not run on remote devices (only "
                         f"{', '.join(REMOTE_TARGETS)})")
            elif o is None or o.metrics is None:
                why = (o.error if o else None) or "no result"
                row.fail("failed", why if why.startswith(d.name) else f"{d.name}: {why}")
                failures.append(DeviceError(row.error))
            else:
                row.metrics = o.metrics.to_json()
                row.notes.extend(o.notes)
                if "validation" in o.outputs:
                    fid = compare(ctx.row_refs[local_row.name], o.outputs["validation"],
                                  [f"out{i}" for i in range(len(o.outputs["validation"]))])
                    row.fidelity = {**fid.to_json(), "on_real_data": ctx.ref.on_real_data}
            rows.append(row)
    from benchmarks.devices.inventory import LOCAL_DEVICE

    listed = [LOCAL_DEVICE, *devices] if "local" in ctx.recipe.benchmark.devices else devices
    return rows, devices_section(runs, listed, ctx.bench.threads), failures

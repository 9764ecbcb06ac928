"""`compressor bench FILE...`: measure artifacts that anybody made, side by side."""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from pathlib import Path

from benchmarks import eval_data
from benchmarks.harness import LIMITS, MAX_ELEMENTS, BenchConfig, measure, out_of_range, refuse_untrusted
from benchmarks.metrics import Metrics
from benchmarks.outpaths import check_outputs
from benchmarks.report import human_size
from compressor import sysinfo
from compressor.errors import ArtifactError, CompressorError, InputShapeError, RecipeError

# compressor.bench files: 1 lists the local results; 2 (with --device) one result per file
# and device, with the devices section.
BENCH_SCHEMA_VERSION = 1
FLAGS = {"threads": "--threads", "warmup": "--warmup", "warmup_s": "--warmup-s", "runs": "--runs",
         "min_time_s": "--min-time-s", "batch_sizes": "--batch"}
UNITS = {"threads": " threads", "warmup": " warm-up runs", "warmup_s": " seconds", "runs": " timed runs",
         "min_time_s": " seconds", "batch_sizes": ""}


def check_args(args: argparse.Namespace) -> None:
    """Everything the command line says that can be judged without loading a model, judged
    before anything is loaded or measured: settings, shapes, device, data, the output."""
    settings = argparse.Namespace(threads=args.threads, warmup=args.warmup, warmup_s=args.warmup_s, runs=args.runs,
                                  min_time_s=args.min_time_s, batch_sizes=tuple(args.batch))
    for name, value in out_of_range(settings):
        low, high = LIMITS[name]
        cores = f" (this machine has {os.cpu_count()} cores)" if name == "threads" else ""
        raise RecipeError(f"{FLAGS[name]} {value}: use {low} to {high}{UNITS[name]}{cores}")
    from benchmarks import given

    settings = [s for flag, texts in (("--shape", args.shape), ("--value", args.value), ("--inputs", args.inputs))
                for s in given.parse(flag, texts, args.files)]
    for s in settings:
        if s.flag == "--shape" and math.prod(s.value) > MAX_ELEMENTS:
            raise InputShapeError(f"--shape {s.text} is {math.prod(s.value):,} elements; an input takes at most "
                                  f"{MAX_ELEMENTS:,} (2**31): check the dims")
    args.devices_list = resolve_devices(args)
    check_outputs({"--json": args.json}, {"eval data": args.eval_data,
                                          **{f"artifact {f}": f for f in args.files},
                                          **{f"--inputs {s.value}": s.value for s in settings if s.flag == "--inputs"}})
    if args.eval_data is not None:
        eval_data.read(args.eval_data)
    args.settings = settings
    args.given = given.per_file(settings, args.files)  # reads the --inputs files: bad ones fail here


def resolve_devices(args: argparse.Namespace) -> list:
    """--device values: inventory names (local is this machine), or cpu / cuda[:N] for this
    machine's runtime device. Names are looked up before anything is measured."""
    from benchmarks.devices.inventory import LOCAL_DEVICE, Inventory
    from compressor.config.device_names import valid_name

    names = args.device or ["local"]
    execs = [n for n in names if re.fullmatch(r"cpu|cuda(:\d+)?", n)]
    if len(execs) > 1 or (execs and "local" in names):
        raise RecipeError(f"--device {' '.join(names)}: name this machine once (local, or cpu / cuda:N)")
    args.exec_device = execs[0] if execs else "cpu"
    for n in names:
        if n not in execs and not valid_name(n):
            raise RecipeError(f"--device {n}: use local, cpu, cuda, cuda:N or the name of a device in devices.yaml")
    names = ["local" if n in execs else n for n in names]
    if names == ["local"]:
        return [LOCAL_DEVICE]
    if args.exec_device != "cpu":
        raise RecipeError(f"--device {args.exec_device} with other devices: remote devices run on their CPUs; "
                          "measure the GPU in a run of its own")
    return Inventory(args.devices).resolve(names)


def bench_files(args: argparse.Namespace) -> int:
    import targets
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from benchmarks.devices.inventory import LOCAL_DEVICE

    check_args(args)
    files: list[Path] = args.files
    for f in files:  # refuse bad files before spending time on good ones
        if f.is_dir():
            raise ArtifactError(f"{f} is a directory, not an artifact file; give the model file itself")
        target = targets.for_file(f)
        refuse_untrusted(target, f, args.trust)
        target.check_file(f)
    cfg = BenchConfig(device=args.exec_device, threads=args.threads, batch_sizes=tuple(args.batch),
                      warmup=args.warmup, warmup_s=args.warmup_s, runs=args.runs, min_time_s=args.min_time_s,
                      isolate=not args.no_isolate, trust=args.trust)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="compressor-given-") as tmp:
        jobs = {f: _job(f, cfg, args.given[f], Path(tmp) / f"given-{i}.npz") for i, f in enumerate(files)}
        if args.devices_list != [LOCAL_DEVICE]:
            from benchmarks.devices.report_bench import bench_devices_command

            return bench_devices_command(args, files, cfg, console,
                                         lambda f: _measure_or_error(f, *jobs[f], data=args.eval_data))
        results: list[Metrics] = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("benchmark", total=len(files))
            for f in files:
                progress.update(task, description=f"benchmark {f.name}")
                results.append(_measure(f, *jobs[f], data=args.eval_data))
                progress.advance(task)
    from benchmarks.given import unused

    unused({Path(m.path): [i["name"] for i in m.inputs] for m in results}, args.settings)

    for batch in cfg.batch_sizes:
        table = Table(title=f"batch {batch}, {cfg.threads} threads, {cfg.device}", title_justify="left")
        for col in ("file", "runtime", "size", "gzip", "load s", "first ms", "p50 ms", "p90 ms", "p99 ms",
                    "cv", "peak RSS", "accuracy"):
            table.add_column(col, justify="left" if col in ("file", "runtime") else "right", overflow="fold")
        skipped = []
        for m in results:
            lat = m.latency_at(batch)
            if lat is None:
                skipped.append(f"{Path(m.path).name}: {m.batches_refused.get(str(batch), 'not run at this batch')}")
                continue
            table.add_row(Path(m.path).name, m.runtime, human_size(m.size_bytes), human_size(m.gzip_bytes),
                          f"{m.load_s:.3f}", f"{m.first_inference_ms:.2f}", f"{lat.p50_ms:.3f}",
                          f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}", f"{lat.cv:.2f}",
                          "-" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f} MB",
                          "-" if m.accuracy is None else f"{100 * m.accuracy:.2f}%")
        console.print(table)
        for line in skipped:
            console.print(f"  not run at batch {batch}: {line}", markup=False, highlight=False)
    if args.json:
        from compressor.fsutil import write_json

        write_json(args.json, {"schema": "compressor.bench", "schema_version": BENCH_SCHEMA_VERSION,
                               "config": {k: v for k, v in cfg.__dict__.items()},
                               "machine": sysinfo.machine(), "libraries": sysinfo.library_versions(),
                               "results": [m.to_json() for m in results]})
    return 0


def _job(f: Path, cfg: BenchConfig, given, npz: Path) -> tuple[BenchConfig, dict | None]:
    """One file's settings: its shapes, and what the user gave for its inputs (the arrays
    in an .npz of their own for the worker process)."""
    import dataclasses

    import numpy as np

    cfg = dataclasses.replace(cfg, shapes=dict(given.shapes))
    if not given.arrays and not given.values:
        return cfg, None
    if given.arrays:
        np.savez(npz, **given.arrays)
    return cfg, {"npz": str(npz) if given.arrays else None, "values": given.values,
                 "optional": sorted(given.optional)}


def _measure_or_error(f: Path, cfg: BenchConfig, given: dict | None = None,
                      data: Path | None = None) -> Metrics | CompressorError:
    """For several devices at once: a failure is that row's, not the command's."""
    try:
        return _measure(f, cfg, given, data)
    except CompressorError as e:
        return e


def _measure(f: Path, cfg: BenchConfig, given: dict | None = None, data: Path | None = None) -> Metrics:
    """measure(), with an error that names the file it is about (several may be measured)."""
    try:
        return measure(f, cfg, data, given=given)
    except CompressorError as e:
        if str(f) in str(e):
            raise
        try:
            named = type(e)(f"{f}: {e}")
        except TypeError:  # an error class with a signature of its own
            raise e from None
        raise named from None

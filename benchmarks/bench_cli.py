"""`compressor bench FILE...`: measure artifacts that anybody made, side by side."""

from __future__ import annotations

import argparse
import contextlib
import json
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
    from benchmarks import given

    settings = [s for flag, texts in (("--shape", args.shape), ("--value", args.value), ("--inputs", args.inputs))
                for s in given.parse(flag, texts, args.files)]
    if args.batch is None:  # the batch a --shape gives is the one timed (x=2x4: batch 2), not refused against 1
        args.batch = tuple(sorted({s.value[0] for s in settings if s.flag == "--shape"})) or (1,)
    limits = argparse.Namespace(threads=args.threads, warmup=args.warmup, warmup_s=args.warmup_s, runs=args.runs,
                                min_time_s=args.min_time_s, batch_sizes=tuple(args.batch))
    for name, value in out_of_range(limits):
        low, high = LIMITS[name]
        cores = f" (this machine has {os.cpu_count()} cores)" if name == "threads" else ""
        raise RecipeError(f"{FLAGS[name]} {value}: use {low} to {high}{UNITS[name]}{cores}")
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
    console = Console(stderr=args.format != "table")  # json/csv own stdout
    with tempfile.TemporaryDirectory(prefix="compressor-given-") as tmp:
        jobs = {f: _job(f, cfg, args.given[f], Path(tmp) / f"given-{i}.npz") for i, f in enumerate(files)}
        if args.devices_list != [LOCAL_DEVICE]:
            from benchmarks.devices.report_bench import bench_devices_command

            return bench_devices_command(args, files, cfg, console,
                                         lambda f: _measure_or_error(f, *jobs[f], data=args.eval_data))
        results: list[Metrics] = []
        with _progress(args, len(files)) as step:
            for f in files:
                step(f.name)
                results.append(_measure(f, *jobs[f], data=args.eval_data))
    from benchmarks.given import unused

    unused({Path(m.path): [i["name"] for i in m.inputs] for m in results}, args.settings)
    document = {"schema": "compressor.bench", "schema_version": BENCH_SCHEMA_VERSION,
                "config": {k: v for k, v in cfg.__dict__.items()},
                "machine": sysinfo.machine(), "libraries": sysinfo.library_versions(),
                "results": [m.to_json() for m in results]}
    if args.format == "table":
        _print_tables(results, cfg, console)
    elif args.format == "json":
        print(json.dumps(document, indent=2, default=str))
    else:
        from benchmarks.termtable import emit_records

        emit_records(bench_records(results, cfg.batch_sizes), "csv")
    if args.json:
        from compressor.fsutil import write_json

        write_json(args.json, document)
    return 0


def _columns():
    from benchmarks.termtable import Column

    return (Column("file", left=True, shrink=True, min_width=20), Column("runtime", left=True, shrink=True, min_width=12, drop=6),
            Column("size"), Column("gzip", drop=8), Column("load s", drop=5), Column("first ms", drop=4),
            Column("p50 ms"), Column("p90 ms", drop=2), Column("p99 ms", drop=9), Column("cv", drop=10),
            Column("per s", drop=3), Column("peak RSS", drop=7), Column("accuracy", drop=1))


def _print_tables(results: list[Metrics], cfg: BenchConfig, console) -> None:
    """One table per batch size, fitting the terminal; files not run at a batch say why."""
    from benchmarks.termtable import FitTable

    for batch in cfg.batch_sizes:
        table = FitTable(_columns(), title=f"batch {batch}, {cfg.threads} threads, {cfg.device}")
        skipped = []
        for m in results:
            lat = m.latency_at(batch)
            if lat is None:
                skipped.append(f"{Path(m.path).name}: {m.batches_refused.get(str(batch), 'not run at this batch')}")
                continue
            table.add_row([Path(m.path).name, m.runtime, human_size(m.size_bytes), human_size(m.gzip_bytes),
                           f"{m.load_s:.3f}", f"{m.first_inference_ms:.2f}", f"{lat.p50_ms:.3f}",
                           f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}", f"{lat.cv:.2f}", _per_s(lat.throughput),
                           "-" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f} MB",
                           "-" if m.accuracy is None else f"{100 * m.accuracy:.2f}%"])
        if table.rows:
            table.render(console)
        for line in skipped:
            console.print(f"  not run at batch {batch}: {line}", markup=False, highlight=False)


def _per_s(x: float) -> str:
    """Samples per second, in at most 6 characters."""
    return f"{x:.0f}" if x < 1e5 else f"{x / 1e3:.0f}k" if x < 1e8 else f"{x:.1e}"


def bench_records(results: list[Metrics], batches) -> list[dict]:
    """One record per file and batch, raw values (bytes, ms, samples/s, a fraction), for
    --format csv; a batch a file was not run at has its reason instead of numbers."""
    from benchmarks.termtable import latency_fields

    out = []
    for m in results:
        doc = m.to_json()
        for batch in batches:
            out.append({"file": m.path, "runtime": m.runtime, "batch": batch, **latency_fields(doc, batch),
                        "gzip_bytes": m.gzip_bytes, "load_s": m.load_s, "first_ms": m.first_inference_ms,
                        "not_run": None if m.latency_at(batch) else
                        m.batches_refused.get(str(batch), "not run at this batch")})
    return out


@contextlib.contextmanager
def _progress(args, total: int):
    """A bar over the files that keeps moving while one is measured (a spinner and the
    time so far: a file takes from a second to a minute in its own process), on
    stderr so that --format json/csv keeps stdout clean; none with --no-progress or when
    stderr is not a terminal."""
    from rich.console import Console

    err = Console(stderr=True)
    if args.no_progress or not err.is_terminal:  # a pipe or a CI log gets no redraws
        yield lambda name: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("benchmark", total=total)
        started = [False]

        def step(name: str) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            progress.update(task, description=f"benchmark {name}")
        yield step


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

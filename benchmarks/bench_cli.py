"""`compressor bench FILE...`: measure artifacts that anybody made, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import BenchConfig, measure, refuse_untrusted
from benchmarks.metrics import Metrics
from benchmarks.report import SCHEMA_VERSION, human_size
from compressor import sysinfo
from compressor.errors import ArtifactError


def bench_files(args: argparse.Namespace) -> int:
    import targets
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    files: list[Path] = args.files
    for f in files:  # refuse bad files before spending time on good ones
        target = targets.for_file(f)
        refuse_untrusted(target, f, args.trust)
        target.check_file(f)
    if args.eval_data is not None and not args.eval_data.is_file():
        raise ArtifactError(f"--eval-data {args.eval_data}: no such file")
    cfg = BenchConfig(device=args.device, threads=args.threads, batch_sizes=tuple(args.batch),
                      warmup=args.warmup, warmup_s=args.warmup_s, runs=args.runs, min_time_s=args.min_time_s,
                      isolate=not args.no_isolate, shapes=dict(args.shape), trust=args.trust)
    console = Console()
    results: list[Metrics] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=len(files))
        for f in files:
            progress.update(task, description=f"benchmark {f.name}")
            results.append(measure(f, cfg, args.eval_data))
            progress.advance(task)

    for batch in cfg.batch_sizes:
        table = Table(title=f"batch {batch}, {cfg.threads} threads, {cfg.device}", title_justify="left")
        for col in ("file", "runtime", "size", "gzip", "load s", "first ms", "p50 ms", "p90 ms", "p99 ms",
                    "cv", "peak RSS", "accuracy"):
            table.add_column(col, justify="left" if col in ("file", "runtime") else "right", overflow="fold")
        for m in results:
            lat = m.latency_at(batch)
            table.add_row(Path(m.path).name, m.runtime, human_size(m.size_bytes), human_size(m.gzip_bytes),
                          f"{m.load_s:.3f}", f"{m.first_inference_ms:.2f}", f"{lat.p50_ms:.3f}",
                          f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}", f"{lat.cv:.2f}",
                          "-" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f} MB",
                          "-" if m.accuracy is None else f"{100 * m.accuracy:.2f}%")
        console.print(table)
    if args.json:
        from compressor.fsutil import write_json

        write_json(args.json, {"schema": "compressor.bench", "schema_version": SCHEMA_VERSION,
                               "config": {k: v for k, v in cfg.__dict__.items()},
                               "machine": sysinfo.machine(), "libraries": sysinfo.library_versions(),
                               "results": [m.to_json() for m in results]})
    return 0

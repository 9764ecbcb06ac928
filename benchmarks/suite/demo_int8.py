"""The demo's figures: static int8 against fp32 ONNX on the shipped recipe, as `compressor demo` runs it.

    python -m benchmarks.suite.demo_int8 [--rounds 300] [--out runs/bench]

Runs compressor/recipes/digits_wide.yaml (the wide digits CNN at 32x32, the recipe's own
threads, runs and batch sizes 1 and 32) through the pipeline and reads its report: the
p50 speedups there are the ones the demo prints. The harness times one artifact after
the other, so on a machine shared with other work a neighbour's burst can land on one of
them alone; the suite therefore also times the two artifacts of that run interleaved
(one call of each in turn, `--rounds` calls at batch 1 and `--rounds`/batch, at least 30,
at larger batches; the recipe's threads, no spinning threads, held-out digits as inputs),
which puts the same noise on both.

Figures (exit 1 when one is missed): static int8 (min-max calibration) at least 2x the
speed of fp32 ONNX at batch 1 and at batch 32 on the interleaved medians, at least 3.5x
smaller on disk, and its accuracy on the 450 held-out digits within 0.5 points of
fp32's. The pipeline's own speedups and the run's wall time are recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

MIN_SPEEDUP = 2.0
MIN_SIZE_RATIO = 3.5
MAX_ACCURACY_DROP = 0.005
INT8 = "int8-static"
WARMUP = 20


def figures(report: dict) -> tuple[dict, list[str]]:
    """The int8-vs-fp32 size and accuracy figures of a demo report, its p50 speedups, and
    the size and accuracy targets they miss."""
    rows = {r["label"]: r for r in report["artifacts"] if r["target"] == "onnx" and r["status"] == "ok"}
    if "fp32" not in rows or INT8 not in rows:
        return {}, [f"onnx/fp32 or onnx/{INT8} did not run: {sorted(rows)}"]
    fp32, int8 = rows["fp32"]["metrics"], rows[INT8]["metrics"]
    p50 = {m["batch"]: m["p50_ms"] for m in fp32["latency"]}
    out = {"threads": fp32["threads"], "files": {"fp32": fp32["path"], INT8: int8["path"]},
           "size_bytes": {"fp32": fp32["size_bytes"], INT8: int8["size_bytes"]},
           "size_ratio": fp32["size_bytes"] / int8["size_bytes"],
           "accuracy": {"fp32": fp32["accuracy"], INT8: int8["accuracy"]},
           "accuracy_drop": fp32["accuracy"] - int8["accuracy"],
           "p50_ms": {m["batch"]: {"fp32": p50[m["batch"]], INT8: m["p50_ms"]} for m in int8["latency"]},
           "speedup": {m["batch"]: p50[m["batch"]] / m["p50_ms"] for m in int8["latency"]}}
    missed = []
    if out["size_ratio"] < MIN_SIZE_RATIO:
        missed.append(f"{INT8}: {out['size_ratio']:.2f}x smaller than fp32 < {MIN_SIZE_RATIO}x")
    if out["accuracy_drop"] > MAX_ACCURACY_DROP:
        missed.append(f"{INT8}: accuracy {100 * out['accuracy_drop']:.2f} points below fp32 > 0.5")
    return out, missed


def interleaved(files: dict[str, str], threads: int, batch: int, rounds: int) -> dict[str, float]:
    """Median milliseconds of each file, timed one call of each in turn. The sessions do
    not spin their idle threads: one that just ran would otherwise keep the cores busy
    while the other is timed."""
    import onnxruntime as ort

    from compressor.data import digits_arrays

    x, _ = digits_arrays("test", 32)
    sessions = {}
    for k, path in files.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions[k] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {sessions["fp32"].get_inputs()[0].name: x[:batch]}
    times = {k: [] for k in sessions}
    for i in range(WARMUP + rounds):
        for k, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feeds)
            if i >= WARMUP:
                times[k].append(1000 * (time.perf_counter() - t0))
    return {k: float(statistics.median(v)) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = ap.parse_args(argv)

    import targets
    from benchmarks.suite.common import provenance
    from compressor.config.recipe import load_recipe
    from compressor.flows.run import run
    from compressor.fsutil import write_json
    from compressor.recipes import DEMO_RECIPE

    recipe = load_recipe(DEMO_RECIPE, target_options=targets.option_models())
    with tempfile.TemporaryDirectory(prefix="demo-bench-") as d:
        t0 = time.perf_counter()
        report = run(recipe, Path(d) / "run", show_progress=False)
        wall = time.perf_counter() - t0
        found, missed = figures(report)
        timed = {}
        for b in found.get("p50_ms", {}):
            ms = interleaved(found["files"], found["threads"], b, max(30, args.rounds // b))
            timed[b] = {"median_ms": ms, "speedup": ms["fp32"] / ms[INT8]}
            if timed[b]["speedup"] < MIN_SPEEDUP:
                missed.append(f"{INT8} at batch {b}: {timed[b]['speedup']:.2f}x fp32 (interleaved) < {MIN_SPEEDUP}x")
    found.pop("files", None)
    out = {"suite": "demo_int8", "recipe": DEMO_RECIPE.name, "model": report["model"], "figures": found,
           "interleaved": timed, "run_wall_s": wall, "missed": missed, **provenance()}
    write_json(args.out / "demo_int8.json", out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("machine", "libraries")}, indent=1, default=str))
    for m in missed:
        print(f"MISSED {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

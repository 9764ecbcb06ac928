"""The int8 fallback on unseen convnets and hybrids: timm architectures with random
weights at 96x96, static int8 with `fallback: {min_cosine: 0.99}` (the defaults
otherwise: max_seconds 180, sensitivity auto), on ONNX, TFLite and TorchScript.

    python -m benchmarks.suite.fallback_timm [--models efficientnet_b0,...] [--target onnx,tflite]
                                             [--threads 2] [--max-seconds 180] [--verbose] [--out runs/bench]

Each (model, target) runs in a child process of its own (a runtime crash or a hang
costs that pair only), with `threads` torch/runtime threads. Calibration: 32 images,
validation: 16 others, both with natural images' 1/f amplitude spectrum
(benchmarks.suite.int8_sweep.natural_images). Printed per pair: the fallback's seconds,
probes (real exports) and screens (in-process lowerings), float layers, mean and
worst-sample cosine of the published artifact, or the refusal.

Target (exit 1 when one is missed): every pair ends within max_seconds plus 10% at
cosine >= 0.99 (the artifact re-validated here), or with a clear refusal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.suite import common

MODELS = ("efficientnet_b0", "tinynet_e", "fastvit_t8", "vit_tiny_patch16_224", "lcnet_050", "edgenext_xx_small")
TARGETS = ("onnx", "tflite", "torchscript")
SIZE = 96
CALIB, VAL = 32, 16
MIN_COSINE = 0.99
SLACK = 1.10              # a pair may overrun max_seconds by this factor (the last step in flight)
PAIR_TIMEOUT_S = 900      # the child is killed past this


def kwargs_for(name: str, size: int) -> dict:
    """timm factory arguments: ViTs take the input size (their position embeddings)."""
    kw = {"model_name": name, "pretrained": False}
    if name.startswith(("vit_", "deit_", "levit", "efficientformer")):
        kw["img_size"] = size
    return kw


def run_pair(name: str, tname: str, args) -> dict:
    """One (model, target) in this process: fp32 export, then the fallback."""
    import torch

    import targets
    from benchmarks.suite.common import natural_images
    from compressor.config.quantize import FallbackSpec, QuantVariant
    from compressor.config.recipe import InputSpec, ModelSpec
    from compressor.data import Dataset
    from compressor.errors import CompressorError, first_line
    from compressor.flows.fallback import lower_with_fallback
    from compressor.model import load_model
    from compressor.reference import Reference
    from targets.validate import validate_artifact

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = ModelSpec(factory="timm:create_model", kwargs=kwargs_for(name, args.size),
                     inputs=[InputSpec(name="input", shape=[1, 3, args.size, args.size])])
    model = load_model(spec)
    row = {"model": name, "target": tname, "params_m": round(model.parameter_count() / 1e6, 2)}
    calib = Dataset({"input": natural_images(CALIB, args.size, seed=0)})
    val = {"input": natural_images(VAL, args.size, seed=1)}
    reference = Reference(inputs=val, outputs=model.run(val), accuracy=None, eval_samples=None, on_real_data=False)
    target = targets.get(tname)
    budget = FallbackSpec(min_cosine=args.min_cosine, max_seconds=args.max_seconds)
    variant = QuantVariant(mode="static", calibration_samples=CALIB, fallback=budget)

    def say(msg: str) -> None:
        if args.verbose:
            print(f"  {name}/{tname} {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="fallback-timm-") as d:
        t0 = time.perf_counter()
        try:
            base = target.export(model, None, Path(d) / "fp32", {}, None)
        except CompressorError as e:
            return {**row, "status": "refused", "refusal": f"fp32: {first_line(e)}", "seconds": None}
        row["fp32_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        try:
            out = lower_with_fallback(target, model, variant, {}, calib, base, reference, Path(d) / "int8", budget,
                                      progress=say, threads=args.threads, measure_latency=False)
        except CompressorError as e:  # the lowering itself refused, in one line
            return {**row, "status": "refused", "refusal": first_line(e),
                    "seconds": round(time.perf_counter() - t0, 1)}
        row.update(seconds=round(time.perf_counter() - t0, 1), probes=len(out.attempts), screens=out.screens,
                   plain_cosine=out.attempts[0]["cosine"] if out.attempts else None,
                   plain_cosine_min=out.attempts[0].get("cosine_min") if out.attempts else None,
                   sensitivity=out.sensitivity_mode, notes=out.notes)
        if out.refused:
            return {**row, "status": "refused", "refusal": out.refused}
        fid, _ = validate_artifact(target, out.artifact, val, reference.outputs, args.threads)
        return {**row, "status": "plain" if not out.float_layers and out.lowering == "default" else "fallback",
                "lowering": out.lowering, "float_layers": list(out.float_layers), "cosine": fid.cosine,
                "cosine_min": fid.cosine_min, "int8_ops": _int8_share(out.artifact)}


def _int8_share(artifact) -> str | None:
    """How much of the published graph is int8, where the format says so cheaply (ONNX)."""
    if artifact.target != "onnx":
        return None
    ops = artifact.meta.get("op_types") or {}
    q = ops.get("QuantizeLinear", 0)
    return f"{q} QuantizeLinear" if q else "no QuantizeLinear"


def child(name: str, tname: str, args) -> dict:
    """run_pair in a child process, so that a crash or a hang costs this pair only."""
    cmd = [sys.executable, "-m", "benchmarks.suite.fallback_timm", "--pair", f"{name}:{tname}",
           "--threads", str(args.threads), "--max-seconds", repr(args.max_seconds), "--min-cosine",
           repr(args.min_cosine), "--size", str(args.size)] + ["--verbose"] * args.verbose
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if args.verbose else subprocess.PIPE,
                              text=True, timeout=PAIR_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"model": name, "target": tname, "status": "failed", "refusal": None,
                "error": f"ran past {PAIR_TIMEOUT_S} s", "seconds": None}
    wall = round(time.perf_counter() - t0, 1)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
        return {"model": name, "target": tname, "status": "failed", "refusal": None,
                "error": f"exit {proc.returncode}: {tail[0][:300]}", "seconds": None, "wall_seconds": wall}
    return {**json.loads(lines[-1]), "wall_seconds": wall}


def line(r: dict) -> str:
    cos = (f"{r['cosine']:.4f} / {r['cosine_min']:.4f}" if r.get("cosine") is not None else "-")
    plain = f"{r['plain_cosine']:.4f}" if r.get("plain_cosine") is not None else "-"
    sec = f"{r['seconds']:.0f}" if r.get("seconds") is not None else "-"
    return (f"| {r['model']:21s}| {r['target']:12s}| {sec:>5s} | {r.get('probes', '-')!s:>6s} | "
            f"{r.get('screens', '-')!s:>7s} | {plain:>9s} | {len(r.get('float_layers') or []):5d} | "
            f"{cos:>17s} | {r['status']:8s}|")


HEAD = ("| model                | target      |     s | probes | screens | plain cos | float | cos mean / worst  | "
        "status  |")


def missed(rows: list[dict], args) -> list[str]:
    out = []
    for r in rows:
        where = f"{r['model']}/{r['target']}"
        if r["status"] == "failed":
            out.append(f"{where}: {r.get('error')}")
            continue
        if r.get("seconds") is not None and r["seconds"] > SLACK * args.max_seconds:
            out.append(f"{where}: the fallback took {r['seconds']:.0f} s > {SLACK * args.max_seconds:.0f} s")
        if r["status"] in ("plain", "fallback") and (r.get("cosine") or 0) < args.min_cosine:
            out.append(f"{where}: published cosine {r['cosine']:.4f} < {args.min_cosine}")
    return out


def markdown(rows: list[dict], args) -> str:
    out = ["# The int8 fallback on timm architectures", "",
           f"Random weights, {args.size}x{args.size}, static int8 with fallback min_cosine {args.min_cosine}, "
           f"max_seconds {args.max_seconds:g}, {args.threads} thread(s). s: the fallback's seconds; probes: real "
           "exports; screens: in-process lowerings; cos: the published artifact re-validated.", "", HEAD,
           "|" + "|".join("-" * len(c) for c in HEAD.split("|")[1:-1]) + "|", *map(line, rows), ""]
    notes = [f"- {r['model']}/{r['target']}: refused: {r['refusal']}" for r in rows if r.get("refusal")]
    notes += [f"- {r['model']}/{r['target']}: float layers: {', '.join(r['float_layers'])}"
              for r in rows if r.get("float_layers")]
    notes += [f"- {r['model']}/{r['target']}: {n}" for r in rows for n in r.get("notes") or []]
    notes += [f"- {r['model']}/{r['target']}: failed: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(out + (["## Notes", "", *notes, ""] if notes else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--target", default=",".join(TARGETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--max-seconds", type=float, default=180.0)
    ap.add_argument("--min-cosine", type=float, default=MIN_COSINE)
    ap.add_argument("--verbose", action="store_true", help="stream each fallback's progress")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--pair", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    common.quiet()
    if args.pair:  # a child: one pair, its row as the last line of stdout
        name, tname = args.pair.split(":")
        print(json.dumps(run_pair(name, tname, args), default=str), flush=True)
        return 0
    bad = [t for t in args.target.split(",") if t not in TARGETS]
    if bad:
        ap.error(f"--target {','.join(bad)}: choose from {', '.join(TARGETS)}")
    from compressor.fsutil import write_text

    print(HEAD, flush=True)
    rows = []
    for name in args.models.split(","):
        for tname in args.target.split(","):
            rows.append(child(name, tname, args))
            print(line(rows[-1]), flush=True)
            if rows[-1].get("refusal"):
                print(f"    refused: {rows[-1]['refusal']}", flush=True)
            if rows[-1].get("error"):
                print(f"    failed: {rows[-1]['error']}", flush=True)
    write_text(args.out / "fallback_timm.md", markdown(rows, args))
    return common.finish("fallback_timm", args, rows, missed(rows, args), size=args.size, min_cosine=args.min_cosine,
                         max_seconds=args.max_seconds, calibration=f"{CALIB} synthetic 1/f-spectrum images",
                         validation=f"{VAL} other such images")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())

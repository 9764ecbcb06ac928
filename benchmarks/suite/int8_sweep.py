"""Static int8 across torchvision architectures (random weights) on ONNX, TFLite,
TorchScript, OpenVINO and ExecuTorch: the tools' default lowering first, then the fallback (float layers or
another lowering) until the output cosine against fp32 reaches 0.99, or a refusal.

    python -m benchmarks.suite.int8_sweep [--arch resnet18,vit] [--target onnx,tflite] [--quick]
                                          [--runs 15] [--threads 1] [--out runs/bench]

Inputs: batch 1, seed 0, eval mode, 128x128 (112 for ViT and Swin, which are
torchvision's own classes at reduced width and depth, see ARCHS): at 224 a TFLite
calibration alone took minutes on the shared 2-core box, and the sweep must fit ~45 min. Calibration (32 images) and validation (16 other
images) are synthetic but natural-ish: 1/f amplitude spectrum noise (the power law of
natural images) with correlated colour channels, in [0, 1], then ImageNet-normalised.
Each architecture runs in its own process, so that a runtime crash costs that
architecture only and is reported as such.

Target (exit 1 when missed): every (architecture, target) ends with int8 at cosine
>= 0.99 against fp32 on the validation images, or with a clear refusal naming the cause.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.suite import common
from benchmarks.suite.common import natural_images

MIN_COSINE = 0.99
TARGETS = ("onnx", "tflite", "torchscript", "openvino", "executorch")
CALIB_IMAGES = 32
VAL_IMAGES = 16
WARMUP = 5
ARCH_TIMEOUT_S = 1800  # one architecture on every target, fallback included


@dataclass(frozen=True)
class Arch:
    build: Callable[[], object]
    size: int        # square input side for the full sweep
    quick_size: int  # and for --quick
    note: str = ""


def _tv(name: str, **kw) -> Callable[[], object]:
    def build():
        import torchvision

        return getattr(torchvision.models, name)(weights=None, **kw)
    return build


def _vit():
    from torchvision.models.vision_transformer import VisionTransformer

    import torch

    # vit_b_16's design (patch 16, class token, pre-norm encoder) at ViT-Tiny width, 4 layers.
    vit = VisionTransformer(image_size=112, patch_size=16, num_layers=4, num_heads=3, hidden_dim=192,
                            mlp_dim=768, num_classes=1000)
    # torchvision zero-initialises the head: every output would be 0, and int8 "agree" trivially.
    torch.nn.init.trunc_normal_(vit.heads.head.weight, std=0.02)
    return vit


def _swin():
    from torchvision.models.swin_transformer import SwinTransformer

    # swin_t's design (shifted windows 7x7, patch merging) at half width, one block pair per stage.
    return SwinTransformer(patch_size=[4, 4], embed_dim=48, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24],
                           window_size=[7, 7], stochastic_depth_prob=0.0, num_classes=1000)


ARCHS: dict[str, Arch] = {
    "resnet18": Arch(_tv("resnet18"), 128, 64),
    "mobilenet_v2": Arch(_tv("mobilenet_v2"), 128, 64),
    "mobilenet_v3_small": Arch(_tv("mobilenet_v3_small"), 128, 64, "hard-swish, squeeze-excitation"),
    "efficientnet_b0": Arch(_tv("efficientnet_b0"), 128, 64, "SiLU, squeeze-excitation"),
    "regnet_y_400mf": Arch(_tv("regnet_y_400mf"), 128, 64, "grouped convs, squeeze-excitation"),
    "shufflenet_v2_x1_0": Arch(_tv("shufflenet_v2_x1_0"), 128, 64, "channel shuffle"),
    "squeezenet1_1": Arch(_tv("squeezenet1_1"), 128, 64),
    "densenet121": Arch(_tv("densenet121"), 128, 64, "concatenations"),
    "inception_v3": Arch(_tv("inception_v3", aux_logits=False, init_weights=True), 128, 96,
                         "torchvision's minimum input is 75"),
    "convnext_tiny": Arch(_tv("convnext_tiny"), 128, 64, "layer norm, GELU, layer scale"),
    "vit": Arch(_vit, 112, 112, "torchvision VisionTransformer, patch 16, 4 layers, width 192, 3 heads"),
    "swin": Arch(_swin, 112, 112, "torchvision SwinTransformer, embed 48, depths 2-2-2-2, window 7"),
}


def latencies(sessions: dict[str, object], x: np.ndarray, runs: int) -> dict[str, tuple[float, float]]:
    """(median, min) ms of one batch-1 run per session, interleaved so that a slow spell
    of the (shared) machine hits every session alike, after WARMUP runs each (TorchScript's
    profiling executor optimises over its first calls). On an overloaded box a short run
    escapes preemption more often than a long one, which skews medians; the min does not."""
    feeds = {name: {s.inputs[0].name: x} for name, s in sessions.items()}
    for name, s in sessions.items():
        for _ in range(WARMUP):
            s.run(feeds[name])
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, s in sessions.items():
            t = time.perf_counter()
            s.run(feeds[name])
            times[name].append((time.perf_counter() - t) * 1e3)
    return {name: (statistics.median(v), min(v)) for name, v in times.items()}


def _error(e: BaseException) -> dict:
    from compressor.errors import CompressorError, first_line

    return {"type": type(e).__name__, "text": first_line(e), "clear": isinstance(e, CompressorError)}


def sweep_target(arch: str, tname: str, model, calib, reference, work: Path, runs: int, threads: int,
                 fallback: bool, min_cosine: float = MIN_COSINE) -> dict:
    """fp32, plain int8 and (when plain misses) the fallback of one architecture on one target."""
    import targets
    from compressor.config.quantize import QuantVariant
    from targets.base import Device
    from targets.validate import validate_artifact

    target = targets.get(tname)
    row: dict = {"arch": arch, "target": tname, "input": list(model.inputs[0].shape)}
    t0 = time.perf_counter()
    try:
        base = target.export(model, None, work / f"{arch}.fp32", {}, None)
    except Exception as e:  # the fp32 export of a real architecture failing is itself a finding
        row.update(status="refused" if _error(e)["clear"] else "failed", fp32_error=_error(e))
        row["refusal"] = row["fp32_error"]["text"] if row["status"] == "refused" else None
        return row
    row["fp32_seconds"] = round(time.perf_counter() - t0, 1)
    variant = QuantVariant(mode="static", calibration_samples=len(calib))
    t0 = time.perf_counter()
    plain = None
    try:
        plain = target.export(model, variant, work / f"{arch}.int8", {}, calib, base=base)
        fid = validate_artifact(target, plain, reference.inputs, reference.outputs)[0].to_json()
        row["plain"] = {"cosine": fid["cosine_mean"], "cosine_min": fid["cosine_min"], "error": None}
    except Exception as e:
        row["plain"] = {"cosine": None, "error": _error(e)}
        if not row["plain"]["error"]["clear"]:
            row["plain"]["traceback"] = traceback.format_exc(limit=-3)
    row["plain"]["seconds"] = round(time.perf_counter() - t0, 1)
    cos = row["plain"]["cosine"]
    final = None
    if cos is not None and cos >= min_cosine:
        row.update(status="plain", cosine=cos, lowering="default", float_layers=[], refusal=None)
        final = plain
    elif not fallback:
        err = row["plain"]["error"]
        clear = bool(err and err["clear"])
        row.update(status="refused" if clear else "missed", cosine=cos, lowering="default", float_layers=[],
                   refusal=err["text"] if clear else None)
    else:
        final = _fallback(row, target, model, variant, calib, base, reference, work / f"{arch}.int8-fallback",
                          min_cosine)
    if final is not None:
        sessions = {"fp32": target.open_session(base.path, Device(), threads),
                    "int8": target.open_session(final.path, Device(), threads)}
        lat = latencies(sessions, reference.inputs[model.inputs[0].name][:1], runs)
        (f, f_min), (i, i_min) = lat["fp32"], lat["int8"]
        row.update(fp32_ms=f, int8_ms=i, speedup=f / i, fp32_min_ms=f_min, int8_min_ms=i_min, speedup_min=f_min / i_min)
    return row


def _fallback(row: dict, target, model, variant, calib, base, reference, out: Path, min_cosine: float):
    from compressor.config.quantize import FallbackSpec
    from compressor.flows.fallback import lower_with_fallback

    t0 = time.perf_counter()
    try:
        outcome = lower_with_fallback(target, model, variant, {}, calib, base, reference, out,
                                      FallbackSpec(min_cosine=min_cosine, sensitivity_samples=8),
                                      measure_latency=False)  # timed here, beside fp32
    except Exception as e:
        err = _error(e)
        row.update(status="refused" if err["clear"] else "failed", cosine=row["plain"]["cosine"],
                   lowering=None, float_layers=[], refusal=err["text"] if err["clear"] else None,
                   fallback_error=err, fallback_seconds=round(time.perf_counter() - t0, 1))
        if not err["clear"]:
            row["fallback_traceback"] = traceback.format_exc(limit=-3)
        return None
    cos = (outcome.fidelity or {}).get("cosine_mean")
    row.update(fallback_seconds=round(time.perf_counter() - t0, 1), attempts=outcome.attempts, cosine=cos,
               lowering=outcome.lowering, float_layers=list(outcome.float_layers), refusal=outcome.refused)
    if outcome.artifact is not None and cos is not None and cos >= min_cosine:
        row["status"] = "fallback"
        return outcome.artifact
    row["status"] = "refused" if outcome.refused else "missed"
    return None


def sweep_arch(arch: str, tnames: list[str], quick: bool, runs: int, threads: int, fallback: bool,
               work: Path, emit: Callable[[dict], None], min_cosine: float = MIN_COSINE) -> None:
    """Every target for one architecture; `emit` gets each (arch, target) row as it ends."""
    import torch

    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.reference import Reference
    from compressor.config.recipe import InputSpec

    spec = ARCHS[arch]
    size = spec.quick_size if quick else spec.size
    torch.manual_seed(0)
    module = spec.build().eval()
    model = Model(module=module, inputs=[InputSpec(name="input", shape=[1, 3, size, size])], source=arch)
    n_cal, n_val = (16, 8) if quick else (CALIB_IMAGES, VAL_IMAGES)
    calib = Dataset({"input": natural_images(n_cal, size, seed=0)})
    val = {"input": natural_images(n_val, size, seed=1)}
    reference = Reference(inputs=val, outputs=model.run(val), accuracy=None, eval_samples=None, on_real_data=False)
    if any(not o.any() for o in reference.outputs):
        raise ValueError(f"{arch}: the float model's output is all zeros on the validation images; any int8 "
                         "artifact would agree with it trivially (re-initialise its head)")
    # How much of the output depends on the input at all: random-weight ShuffleNetV2 gives its
    # classifier's bias plus 1e-4, so any int8 reaches cosine ~1 there; the report says so.
    out = reference.outputs[0].reshape(n_val, -1)
    share = float(np.linalg.norm(out - out.mean(0)) / np.linalg.norm(out))
    for tname in tnames:
        t0 = time.perf_counter()
        row = sweep_target(arch, tname, model, calib, reference, work, runs, threads, fallback, min_cosine)
        row.update(note=spec.note, seconds=round(time.perf_counter() - t0, 1), input_share=share)
        emit(row)


def _run_worker(arch: str, tnames: list[str], args, work: Path) -> list[dict]:
    """One architecture in a child process: a segfault or a hang costs that one only."""
    result = work / f"{arch}.jsonl"
    cmd = [sys.executable, "-m", "benchmarks.suite.int8_sweep", "--worker", str(result), "--arch", arch,
           "--target", ",".join(tnames), "--runs", str(args.runs), "--threads", str(args.threads),
           "--min-cosine", repr(args.min_cosine)]
    cmd += ["--quick"] * args.quick + ["--no-fallback"] * (not args.fallback)
    problem = None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.arch_timeout)
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
            problem = f"worker exited with code {proc.returncode}: {tail[0][:300]}"
    except subprocess.TimeoutExpired:
        problem = f"worker ran past {args.arch_timeout} s"
    rows = [json.loads(ln) for ln in result.read_text().splitlines()] if result.exists() else []
    for tname in tnames[len(rows):]:
        rows.append({"arch": arch, "target": tname, "status": "failed", "cosine": None, "float_layers": [],
                     "refusal": None, "plain": {"cosine": None, "error": {"type": "crash", "text": problem,
                                                                          "clear": False}}})
    return rows


def table(rows: list[dict]) -> list[str]:
    head = f"| {'arch':19s}| {'target':12s}| {'plain cos':>10s} | {'final cos':>9s} | {'status':9s}| float | " \
           f"{'lowering':24s}| {'fp32 ms':>8s} | {'int8 ms':>8s} | speedup | by min |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        p = r.get("plain") or {}
        plain = f"{p['cosine']:.4f}" if p.get("cosine") is not None else (p.get("error") or {}).get("type", "-")
        final = f"{r['cosine']:.4f}" if r.get("cosine") is not None else "-"
        ms = (f"{r['fp32_ms']:8.2f} | {r['int8_ms']:8.2f} | {r['speedup']:6.2f}x | " +
              (f"{r['speedup_min']:5.2f}x" if "speedup_min" in r else f"{'-':>6s}") if "int8_ms" in r
              else f"{'-':>8s} | {'-':>8s} | {'-':>7s} | {'-':>6s}")
        lines.append(f"| {r['arch']:19s}| {r['target']:12s}| {plain[:10]:>10s} | {final:>9s} | {r['status']:9s}| "
                     f"{len(r.get('float_layers') or []):5d} | {str(r.get('lowering') or '-')[:24]:24s}| {ms} |")
    return lines


def summary(rows: list[dict]) -> dict:
    count = {s: sum(r["status"] == s for r in rows) for s in ("plain", "fallback", "refused", "missed", "failed")}
    return {"pairs": len(rows), **count}


def markdown(rows: list[dict], args) -> str:
    s = summary(rows)
    out = [f"# int8 sweep: torchvision architectures on {', '.join(sorted({r['target'] for r in rows}))}", "",
           f"Random weights, batch 1, {args.threads} thread(s), static int8 with each target's default "
           f"lowering, then the fallback until cosine >= {args.min_cosine}. Latency: median of interleaved "
           "runs (speedup = fp32 / int8); 'by min' compares the fastest runs, robust when the machine is "
           "overloaded.", "",
           f"{s['pairs']} (arch, target) pairs: {s['plain']} pass plain, {s['fallback']} needed the fallback, "
           f"{s['refused']} refused, {s['missed'] + s['failed']} missed or failed.", "", *table(rows), ""]
    notes = [f"- {r['arch']}/{r['target']}: {r['refusal']}" for r in rows if r.get("refusal")]
    notes += [f"- {r['arch']}/{r['target']} plain: {r['plain']['error']['text']}"
              for r in rows if (r.get("plain") or {}).get("error")]
    notes += [f"- {r['arch']}/{r['target']} float layers: {', '.join(r['float_layers'])}"
              for r in rows if r.get("float_layers")]
    flat = {r["arch"]: r["input_share"] for r in rows if r.get("input_share") is not None and r["input_share"] < 0.01}
    notes += [f"- {arch}: only {share:.1e} of the float output depends on the input (the rest is the "
              "classifier's bias): cosine against fp32 says little there" for arch, share in flat.items()]
    return "\n".join(out + (["## Notes", "", *notes, ""] if notes else []))


def missed(rows: list[dict], min_cosine: float = MIN_COSINE) -> list[str]:
    out = []
    for r in rows:
        if r["status"] in ("plain", "fallback"):
            continue
        if r["status"] == "refused" and r.get("refusal"):
            continue
        why = r.get("fallback_error") or (r.get("plain") or {}).get("error") or {}
        cos = r.get("cosine")
        out.append(f"{r['arch']}/{r['target']}: " + (f"cosine {cos:.4f} < {min_cosine}" if cos is not None
                                                      else f"{why.get('type')}: {why.get('text')}"))
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=",".join(ARCHS), help=f"comma-separated, from: {', '.join(ARCHS)}")
    ap.add_argument("--target", default=",".join(TARGETS))
    ap.add_argument("--quick", action="store_true", help="small inputs (ARCHS' quick_size), 16 calibration and 8 validation images")
    ap.add_argument("--runs", type=int, default=15, help="timed runs per artifact (interleaved)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-fallback", dest="fallback", action="store_false", help="the plain path only")
    ap.add_argument("--arch-timeout", type=int, default=ARCH_TIMEOUT_S)
    ap.add_argument("--min-cosine", type=float, default=MIN_COSINE, help="the fidelity budget (default 0.99)")
    ap.add_argument("--jobs", type=int, default=1, help="architectures run at once (latency gets noisier)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for flag, given, known in (("--arch", args.arch, ARCHS), ("--target", args.target, TARGETS)):
        bad = [x for x in given.split(",") if x not in known]
        if bad:
            ap.error(f"{flag} {','.join(bad)}: unknown; choose from {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    common.quiet()
    arch_names, tnames = args.arch.split(","), args.target.split(",")
    if args.worker:  # a child: one architecture, rows appended as they end
        with tempfile.TemporaryDirectory(prefix="int8-sweep-") as d:
            def emit(row: dict) -> None:
                with open(args.worker, "a") as f:
                    f.write(json.dumps(row) + "\n")
            sweep_arch(arch_names[0], tnames, args.quick, args.runs, args.threads, args.fallback, Path(d), emit,
                       args.min_cosine)
        return 0
    from compressor.fsutil import write_text

    suite = "int8_sweep" + ("_quick" if args.quick else "")
    rows: list[dict] = []
    lines = table([])
    print("\n".join(lines[:2]), flush=True)
    with tempfile.TemporaryDirectory(prefix="int8-sweep-") as d, ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_run_worker, arch, tnames, args, Path(d)) for arch in arch_names]
        for future in as_completed(futures):
            for row in future.result():
                rows.append(row)
                print(table([row])[2], flush=True)
            write_text(args.out / f"{suite}.partial.md", markdown(rows, args))  # a long sweep shows progress
    order = {a: i for i, a in enumerate(arch_names)}
    rows.sort(key=lambda r: (order[r["arch"]], tnames.index(r["target"])))
    (args.out / f"{suite}.partial.md").unlink(missing_ok=True)
    s = summary(rows)
    print(f"{s['pairs']} pairs: {s['plain']} plain, {s['fallback']} fallback, {s['refused']} refused, "
          f"{s['missed']} missed, {s['failed']} failed")
    write_text(args.out / f"{suite}.md", markdown(rows, args))
    return common.finish(suite, args, rows, missed(rows, args.min_cosine), summary=s, min_cosine=args.min_cosine,
                         archs={a: {"input": ARCHS[a].quick_size if args.quick else ARCHS[a].size,
                                    "note": ARCHS[a].note} for a in arch_names},
                         calibration=f"{16 if args.quick else CALIB_IMAGES} synthetic 1/f-spectrum images",
                         validation=f"{8 if args.quick else VAL_IMAGES} other such images")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())

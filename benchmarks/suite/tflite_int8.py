"""TFLite full-integer int8 against fp32 on torchvision ResNet-18 and MobileNetV2 (random
weights), batch 1, 224x224, 2 threads: ours, and litert-torch's PT2E quantizer used by
hand (the anchor, /work/shared/anchors/by_hand.py), timed in the same run; plus the
agreement of our harness with the `litert-benchmark` tool that ships with ai-edge-litert.

    python -m benchmarks.suite.tflite_int8 [--models resnet18,mobilenet_v2] [--runs 60] [--out runs/bench]

Targets (exit 1 when one is missed): our int8 no slower than the by-hand artifact
(latency ratio at most 1.05), int8 size at most 0.26x of fp32, and our median latency
within 10% of litert-benchmark's on the same file and thread count.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.suite import common

MAX_RATIO_TO_BY_HAND = 1.05
MAX_SIZE_RATIO = 0.26
MAX_TOOL_DISAGREEMENT = 0.10


def by_hand_int8(module, x, calib, dst: Path) -> None:
    """The anchor: litert-torch's PT2E quantizer with the symmetric per-channel config."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    q = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    pm = prepare_pt2e(torch.export.export(module, (x,)).module(), q)
    with torch.no_grad():
        for c in calib:
            pm(c)
    cm = convert_pt2e(pm, fold_quantize=False)
    with contextlib.redirect_stdout(io.StringIO()):
        litert_torch.convert(cm, (x,), quant_config=QuantConfig(pt2e_quantizer=q)).export(str(dst))


def litert_benchmark(path: Path, threads: int, runs: int) -> float:
    """Median ms from the `litert-benchmark` console script of ai-edge-litert."""
    tool = shutil.which("litert-benchmark") or str(Path(sys.executable).parent / "litert-benchmark")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        subprocess.run([tool, f"--model={path}", f"--num_threads={threads}", f"--num_runs={runs}",
                        "--warmup_runs=10", f"--result_json={out}"], check=True, capture_output=True, text=True)
        return float(json.loads(out.read_text())["latency"]["median_ms"])


def bench_model(name: str, work: Path, runs: int, threads: int) -> dict:
    import torch
    import torchvision

    import targets
    from benchmarks.harness import BenchConfig, measure
    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import InputSpec

    torch.manual_seed(0)
    module = getattr(torchvision.models, name)().eval()
    model = Model(module=module, inputs=[InputSpec(name="input", shape=[1, 3, 224, 224])])
    # the anchor's calibration, for both: realistic ranges, the speed users get (see runtimes)
    calib = [torch.from_numpy(c[None]) for c in common.natural_images(16, 224, seed=0)]
    t = targets.get("tflite")
    fp32 = t.export(model, None, work / f"{name}.fp32", {}, None)
    int8 = t.export(model, QuantVariant(mode="static", calibration_samples=16), work / f"{name}.int8", {},
                    Dataset({"input": torch.cat(calib).numpy()}), base=fp32)
    hand = work / f"{name}.by_hand_int8.tflite"
    by_hand_int8(module, calib[0], calib, hand)

    cfg = BenchConfig(threads=threads, runs=runs, warmup=10, warmup_s=0.5, isolate=True, keep_samples=False)
    p50: dict[str, list[float]] = {"fp32": [], "int8": [], "by_hand": [], "tool_fp32": [], "tool_int8": []}
    sizes = {}
    # Interleave rounds so that a slow spell of the shared machine hits every artifact alike.
    # The tool runs right after our harness on the same file, so that both see the same spell.
    for _ in range(3):
        for key, path in (("fp32", fp32.path), ("int8", int8.path), ("by_hand", hand)):
            m = measure(path, cfg)
            p50[key].append(m.latency[0].p50_ms)
            sizes[key] = m.size_bytes
            if key != "by_hand":
                p50[f"tool_{key}"].append(litert_benchmark(path, threads, runs))
    med = {k: float(np.median(v)) for k, v in p50.items()}

    x = common.natural_images(8, 224, seed=1)
    s32, s8 = (t.open_session(a.path, targets.Device(), threads) for a in (fp32, int8))
    r = np.concatenate([s32.run({"input": x[i:i + 1]})[0] for i in range(len(x))])
    q = np.concatenate([s8.run({"input": x[i:i + 1]})[0] for i in range(len(x))])
    # Random-weight MobileNetV2 gives logits near 1e-9, which int8 output rounds to zero: no cosine then.
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(q, axis=1)
    cos = np.where(den > 0, (r * q).sum(1) / np.where(den > 0, den, 1), np.nan)
    return {
        "model": name, "fp32_p50_ms": med["fp32"], "int8_p50_ms": med["int8"], "by_hand_p50_ms": med["by_hand"],
        "speedup": med["fp32"] / med["int8"], "by_hand_speedup": med["fp32"] / med["by_hand"],
        "ratio_to_by_hand": med["int8"] / med["by_hand"],
        "size_ratio": sizes["int8"] / sizes["fp32"], "by_hand_size_ratio": sizes["by_hand"] / sizes["fp32"],
        "fp32_mb": sizes["fp32"] / 1e6, "int8_mb": sizes["int8"] / 1e6, "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()), "runtime": s8.runtime,
        "tool_fp32_median_ms": med["tool_fp32"], "tool_int8_median_ms": med["tool_int8"],
        "tool_agreement_fp32": med["fp32"] / med["tool_fp32"] - 1, "tool_agreement_int8": med["int8"] / med["tool_int8"] - 1,
        "rounds": p50, "compacted": int8.meta.get("compacted"),
    }


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__).parse_args(argv)
    common.quiet()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-tflite-int8-") as d:
        for name in args.models.split(","):
            res = bench_model(name, Path(d), args.runs, args.threads)
            results.append(res)
            print(f"{name:13s} fp32 {res['fp32_p50_ms']:7.2f} ms  int8 {res['int8_p50_ms']:7.2f} ms  "
                  f"speedup {res['speedup']:.2f}x (by hand {res['by_hand_speedup']:.2f}x, ratio to by hand "
                  f"{res['ratio_to_by_hand']:.3f})  size {res['size_ratio']:.3f}x (by hand "
                  f"{res['by_hand_size_ratio']:.3f}x)  cosine {res['cosine_mean']:.4f}  litert-benchmark "
                  f"fp32 {res['tool_fp32_median_ms']:.2f} ms ({100 * res['tool_agreement_fp32']:+.1f}%) int8 "
                  f"{res['tool_int8_median_ms']:.2f} ms ({100 * res['tool_agreement_int8']:+.1f}%)", flush=True)
    missed = []
    for r in results:
        if r["ratio_to_by_hand"] > MAX_RATIO_TO_BY_HAND:
            missed.append(f"{r['model']}: int8 {r['ratio_to_by_hand']:.3f}x the by-hand latency > {MAX_RATIO_TO_BY_HAND}")
        if r["size_ratio"] > MAX_SIZE_RATIO:
            missed.append(f"{r['model']}: int8 size ratio {r['size_ratio']:.3f} > {MAX_SIZE_RATIO}")
        for k in ("fp32", "int8"):
            if abs(r[f"tool_agreement_{k}"]) > MAX_TOOL_DISAGREEMENT:
                missed.append(f"{r['model']}: {k} median {100 * r[f'tool_agreement_{k}']:+.1f}% off litert-benchmark's")
    return common.finish("tflite_int8", args, results, missed)


if __name__ == "__main__":
    sys.exit(main())

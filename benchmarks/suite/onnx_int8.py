"""ONNX int8 against fp32 on torchvision ResNet-18 and MobileNetV2 (random weights),
batch 1, 224x224, 2 threads: ours, and onnxruntime's quantize_static used by hand with
its defaults (the anchor), timed in the same run.

    python -m benchmarks.suite.onnx_int8 [--models resnet18,mobilenet_v2] [--runs 60] [--out runs/bench]

Targets (exit 1 when one is missed): int8 at least 2.0x faster than fp32 on ResNet-18
and 1.5x on MobileNetV2; int8 size at most 0.26x of fp32.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.suite import common

TARGET_SPEEDUP = {"resnet18": 2.0, "mobilenet_v2": 1.5}
MAX_SIZE_RATIO = 0.26


def by_hand_int8(fp32: Path, dst: Path, calib: np.ndarray, input_name: str) -> None:
    """The anchor: what a user gets from onnxruntime's quantize_static with its defaults."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{input_name: c[None]} for c in calib])

        def get_next(self):
            return next(self.it, None)

    pre = dst.with_name("by_hand_pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)


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
    calib = common.natural_images(32, 224, seed=0)  # realistic ranges: the speed users get (see runtimes)
    onnx_t = targets.get("onnx")
    fp32 = onnx_t.export(model, None, work / f"{name}.fp32", {}, None)
    int8 = onnx_t.export(model, QuantVariant(mode="static"), work / f"{name}.int8", {},
                         Dataset({"input": calib}), base=fp32)
    hand = work / f"{name}.by_hand_int8.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        by_hand_int8(fp32.path, hand, calib[:16], "input")

    cfg = BenchConfig(threads=threads, runs=runs, warmup=10, warmup_s=0.5, isolate=True, keep_samples=False)
    # Interleave two rounds so that a slow spell of the machine hits every artifact alike.
    p50: dict[str, list[float]] = {"fp32": [], "int8": [], "by_hand": []}
    sizes = {}
    for _ in range(2):
        for key, path in (("fp32", fp32.path), ("int8", int8.path), ("by_hand", hand)):
            m = measure(path, cfg)
            p50[key].append(m.latency[0].p50_ms)
            sizes[key] = m.size_bytes
    med = {k: float(np.median(v)) for k, v in p50.items()}

    x = common.natural_images(8, 224, seed=1)
    s32 = onnx_t.open_session(fp32.path, targets.Device(), threads)
    s8 = onnx_t.open_session(int8.path, targets.Device(), threads)
    r = np.concatenate([s32.run({"input": x[i:i + 1]})[0] for i in range(len(x))])
    q = np.concatenate([s8.run({"input": x[i:i + 1]})[0] for i in range(len(x))])
    cos = (r * q).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(q, axis=1))
    ops = int8.meta.get("op_types", {})
    return {
        "model": name, "fp32_p50_ms": med["fp32"], "int8_p50_ms": med["int8"], "by_hand_p50_ms": med["by_hand"],
        "speedup": med["fp32"] / med["int8"], "by_hand_speedup": med["fp32"] / med["by_hand"],
        "size_ratio": sizes["int8"] / sizes["fp32"], "by_hand_size_ratio": sizes["by_hand"] / sizes["fp32"],
        "fp32_mb": sizes["fp32"] / 1e6, "int8_mb": sizes["int8"] / 1e6, "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()), "qdq_convs": ops.get("Conv", 0),
    }


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__).parse_args(argv)
    common.quiet()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-int8-") as d:
        for name in args.models.split(","):
            res = bench_model(name, Path(d), args.runs, args.threads)
            results.append(res)
            print(f"{name:13s} fp32 {res['fp32_p50_ms']:7.2f} ms  int8 {res['int8_p50_ms']:7.2f} ms  "
                  f"speedup {res['speedup']:.2f}x (by hand {res['by_hand_speedup']:.2f}x)  "
                  f"size {res['size_ratio']:.3f}x (by hand {res['by_hand_size_ratio']:.3f}x)  "
                  f"cosine mean {res['cosine_mean']:.4f} min {res['cosine_min']:.4f}", flush=True)
    missed = []
    for r in results:
        missed += common.int8_misses(r, TARGET_SPEEDUP, MAX_SIZE_RATIO)
    return common.finish("onnx_int8", args, results, missed)


if __name__ == "__main__":
    sys.exit(main())

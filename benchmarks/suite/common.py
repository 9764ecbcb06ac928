"""What every suite shares: its command line, quiet libraries, and how it ends (a JSON
record under runs/bench, a MISSED line per missed target, exit 1 when one is missed)."""

from __future__ import annotations

import argparse
import datetime
import logging
import warnings
from pathlib import Path

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def parser(doc: str, runs: int = 60) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    return ap


def quiet() -> None:
    """Converters and quantizers warn a lot; a suite's output is its figures."""
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)


def provenance() -> dict:
    """When and where a suite ran, which the README states beside its figures
    (benchmarks/readme_figures.py): the UTC date, the machine, the library versions."""
    from compressor import sysinfo

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"date": date, "machine": sysinfo.machine(), "libraries": sysinfo.library_versions()}


def finish(suite: str, args: argparse.Namespace, results: list[dict], missed: list[str], **extra) -> int:
    from compressor.fsutil import write_json

    path = args.out / f"{suite}.json"
    write_json(path, {"suite": suite, "threads": args.threads, **extra, "results": results, "missed": missed,
                      **provenance()})
    for m in missed:
        print(f"MISSED {m}")
    print(f"wrote {path}")
    return 1 if missed else 0


def digits_recipe_head(name: str, weights, targets: str) -> str:
    """The start of a recipe on the shipped digits CNN with the built-in digits data,
    for suites that add their own benchmark and steps."""
    return f"""\
version: 1
name: {name}
model:
  factory: compressor.zoo.digits:digits_cnn
  weights: {weights}
  inputs: [{{name: pixels, shape: [1, 1, 8, 8]}}]
  outputs: [logits]
data:
  calibration: {{source: digits, split: train, limit: 256}}
  evaluation: {{source: digits, split: test}}
  train: {{source: digits, split: train}}
targets: [{targets}]
"""


def int8_misses(r: dict, speedups: dict[str, float], max_size_ratio: float) -> list[str]:
    """The int8 speed and size targets one model's result misses."""
    missed = []
    need = speedups.get(r["model"])
    if need and r["speedup"] < need:
        missed.append(f"{r['model']}: int8 speedup {r['speedup']:.2f}x < {need}x")
    if r["size_ratio"] > max_size_ratio:
        missed.append(f"{r['model']}: int8 size ratio {r['size_ratio']:.3f} > {max_size_ratio}")
    return missed


def natural_images(n: int, size: int, seed: int) -> np.ndarray:
    """Images with natural images' 1/f amplitude spectrum and correlated colours, in
    [0, 1], then ImageNet-normalised (what torchvision models are built to take)."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    falloff = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        luma = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((size, size))) * falloff, s=(size, size))
        chroma = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((2, size, size))) * falloff ** 1.3, s=(size, size))
        luma, chroma = luma / luma.std(), chroma / chroma.std(axis=(1, 2), keepdims=True)
        rgb = np.stack([luma + 0.3 * chroma[0], luma - 0.2 * chroma[0] + 0.2 * chroma[1], luma - 0.3 * chroma[1]])
        img = 0.45 + rng.uniform(-0.1, 0.1) + rng.uniform(0.12, 0.25) * rgb
        out[i] = (np.clip(img, 0, 1) - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    return out

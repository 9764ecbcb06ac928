"""Reports for gate tests, with per-run latencies drawn from a seeded skewed
distribution like real timings (a floor plus a long right tail)."""

from __future__ import annotations

import copy

import numpy as np

from benchmarks.report import build


def timings(p50_ms: float, runs: int = 100, seed: int = 0, noise: float = 0.03) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(p50_ms * (1 + rng.lognormal(mean=np.log(noise), sigma=0.6, size=runs) - noise))


def metrics(p50_ms: float, size: int, accuracy: float, seed: int = 0, reference_ms: float = 1.0) -> dict:
    samples = timings(p50_ms, seed=seed)
    arr = np.asarray(samples)
    return {"path": "x", "target": "onnx", "runtime": "onnxruntime", "provider": "CPUExecutionProvider",
            "device": "cpu", "threads": 2, "size_bytes": size, "gzip_bytes": int(size * 0.8), "load_s": 0.01,
            "first_inference_ms": 1.0,
            "latency": [{"batch": 1, "runs": len(arr), "p50_ms": float(np.median(arr)),
                         "p90_ms": float(np.percentile(arr, 90)), "p99_ms": float(np.percentile(arr, 99)),
                         "mean_ms": float(arr.mean()), "std_ms": float(arr.std()), "min_ms": float(arr.min()),
                         "cv": float(arr.std() / arr.mean()), "throughput": 1e3 / float(np.median(arr)),
                         "samples_ms": samples}],
            "peak_rss_mb": 100.0, "baseline_rss_mb": 50.0, "reference_p50_ms": reference_ms,
            "accuracy": accuracy, "eval_samples": 450, "inputs": []}


def report(fp32_ms=2.0, int8_ms=1.0, int8_size=250_000, int8_acc=0.99, seed=0, slow=1.0,
           source="compressor.zoo.digits:digits_cnn") -> dict:
    """fp32 and int8-static ONNX rows. `slow` scales every timing, the reference
    workload included: a uniformly slower machine."""
    rows = [
        {"name": "onnx/fp32", "target": "onnx", "label": "fp32", "precision": "fp32", "status": "ok",
         "fidelity": {"cosine_mean": 1.0}, "notes": [],
         "metrics": metrics(fp32_ms * slow, 1_000_000, 0.993, seed, reference_ms=slow)},
        {"name": "onnx/int8-static", "target": "onnx", "label": "int8-static", "precision": "int8", "status": "ok",
         "fidelity": {"cosine_mean": 0.999}, "notes": [],
         "metrics": metrics(int8_ms * slow, int8_size, int8_acc, seed + 1, reference_ms=slow)},
    ]
    return build(name="digits", model={"source": source, "inputs": [{"name": "pixels", "shape": [1, 1, 8, 8]}]},
                 reference={"accuracy": 0.993, "eval_samples": 450},
                 bench={"batch_sizes": [1], "threads": 2, "device": "cpu", "runs": 100},
                 machine={"cpu": {"model": "test", "kernel_flags": []}}, artifacts=copy.deepcopy(rows))

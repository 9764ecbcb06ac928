"""A report measured on three devices, built by hand with round numbers: this machine,
a Raspberry Pi 5 over SSH (one row failed there), and a qemu-emulated Cortex-A76
userland whose latency is not the board's. fp32 and static int8 ONNX on each."""

from __future__ import annotations

import copy

from benchmarks.report import build
from gate_reports import timings

# device -> artifact label -> (p50 ms, size bytes, accuracy)
P50 = {"local": {"fp32": 2.0, "int8-static": 1.0, "int8-dynamic": 1.6},
       "pi5": {"fp32": 12.0, "int8-static": 4.0},
       "qemu-a76": {"fp32": 40.0, "int8-static": 50.0}}
SIZE = {"fp32": 1_000_000, "int8-static": 250_000, "int8-dynamic": 260_000}
ACC = {"fp32": 0.993, "int8-static": 0.99, "int8-dynamic": 0.991}
PRECISION = {"fp32": "fp32", "int8-static": "int8", "int8-dynamic": "int8"}

DEVICES = {
    "local": {"kind": "local", "emulated": False, "arch": "x86_64", "cpu": "AMD EPYC", "cores": 16,
              "memory_gb": 128.0, "os": "Linux 6.8", "python": "3.12.3", "runtimes": {"onnxruntime": "1.32.0"},
              "threads": 2, "governor": "performance", "notes": []},
    "pi5": {"kind": "ssh", "emulated": False, "arch": "aarch64", "cpu": "Cortex-A76", "cores": 4, "memory_gb": 8.0,
            "os": "Linux 6.6", "python": "3.11.2", "runtimes": {"onnxruntime": "1.22.0"}, "threads": 4,
            "governor": "ondemand",
            "notes": ["onnxruntime 1.22.0 differs from 1.32.0 that validated the artifacts",
                      "governor 'ondemand', not 'performance': the clock may change while measuring"]},
    "qemu-a76": {"kind": "ssh", "emulated": True, "arch": "aarch64", "cpu": "Cortex-A76 (qemu)", "cores": 4,
                 "memory_gb": 4.0, "os": "Linux 6.6", "python": "3.11.2", "runtimes": {"onnxruntime": "1.22.0"},
                 "threads": 2, "governor": None, "notes": ["emulated: latency is qemu's, not a Cortex-A76's"]},
}


def metrics(p50_ms: float, size: int, accuracy: float, seed: int, emulated: bool = False,
            state: dict | None = None) -> dict:
    """Per-run samples around p50_ms, with the median reported exactly as p50_ms so that
    speedups are round numbers."""
    samples = timings(p50_ms, seed=seed)
    m = {"path": "x", "target": "onnx", "runtime": "onnxruntime", "provider": "CPUExecutionProvider",
         "device": "cpu", "threads": 2, "size_bytes": size, "gzip_bytes": int(size * 0.8), "load_s": 0.01,
         "first_inference_ms": 1.0,
         "latency": [{"batch": 1, "runs": len(samples), "p50_ms": p50_ms, "p90_ms": 1.1 * p50_ms,
                      "p99_ms": 1.3 * p50_ms, "mean_ms": p50_ms, "std_ms": 0.01, "min_ms": 0.9 * p50_ms,
                      "cv": 0.02, "throughput": 1e3 / p50_ms, "samples_ms": samples}],
         "peak_rss_mb": 100.0, "baseline_rss_mb": 50.0, "reference_p50_ms": 1.0,
         "accuracy": accuracy, "eval_samples": 450, "inputs": []}
    if emulated:
        m["emulated"] = True
    if state:
        m["device_state"] = state
    return m


def row(device: str, label: str, seed: int) -> dict:
    key = f"onnx/{label}"
    r = {"name": key if device == "local" else f"{device}:{key}", "target": "onnx", "label": label,
         "precision": PRECISION[label], "status": "ok", "fidelity": {"cosine_mean": 0.999 if label != "fp32" else 1.0},
         "notes": [], "metrics": metrics(P50[device][label], SIZE[label], ACC[label], seed,
                                         emulated=DEVICES[device]["emulated"],
                                         state=PI5_STATE if device == "pi5" else None)}
    if device != "local":
        r["device"] = device
    return r


PI5_STATE = {"before": {"temp_c": 48.0, "freq_mhz": 2400.0}, "after": {"temp_c": 61.5, "freq_mhz": 2400.0}}
FAILED = {"name": "pi5:onnx/int8-dynamic", "device": "pi5", "target": "onnx", "label": "int8-dynamic",
          "precision": "int8", "status": "failed", "notes": [],
          "error": "pi5: connection lost mid-run (ssh exited 255)"}


def devices_report(devices: tuple[str, ...] = ("local", "pi5", "qemu-a76"), failed: bool = True) -> dict:
    rows = [row(d, label, seed) for seed, (d, label) in enumerate(
        (d, label) for d in devices for label in P50[d])]
    if failed and "pi5" in devices:
        rows.append(copy.deepcopy(FAILED))
    return build(name="digits", model={"source": "compressor.zoo.digits:digits_cnn",
                                       "inputs": [{"name": "pixels", "shape": [1, 1, 8, 8]}]},
                 reference={"accuracy": 0.993, "eval_samples": 450},
                 bench={"batch_sizes": [1], "threads": 2, "device": "cpu", "runs": 100},
                 machine={"cpu": {"model": "test", "kernel_flags": []}}, artifacts=rows,
                 devices={d: copy.deepcopy(DEVICES[d]) for d in devices})

"""Reports for the HTML tests: the issue's fourteen artifacts of four targets whose
latencies differ by timing noise only and whose accuracies are all 99.33%, and one with
every optional section (batch 32, pruning, QAT, fallback, per-layer bars)."""

from __future__ import annotations

import copy

import numpy as np

from benchmarks.report import build
from gate_reports import metrics

LABELS = {"onnx": ["fp32", "int8-static", "int8-percentile", "int8-dynamic", "fp16"],
          "tflite": ["fp32", "int8", "int8-dynamic", "fp16"],
          "torchscript": ["fp32", "int8-static", "int8-dynamic"], "openvino": ["fp32", "int8-static"]}


def _row(target: str, label: str, p50: float, size: int, acc: float, seed: int, batches=(1,)) -> dict:
    m = metrics(p50, size, acc, seed=seed)
    for b in batches[1:]:
        lat = copy.deepcopy(m["latency"][0])
        lat.update(batch=b, p50_ms=lat["p50_ms"] * b * 0.6, p90_ms=lat["p90_ms"] * b * 0.6,
                   throughput=1e3 * b / (lat["p50_ms"] * b * 0.6))
        m["latency"].append(lat)
    m["target"] = target
    return {"name": f"{target}/{label}", "target": target, "label": label,
            "precision": "fp32" if label == "fp32" else "fp16" if label == "fp16" else "int8", "status": "ok",
            "fidelity": {"cosine_mean": 1.0 if label == "fp32" else 0.9995}, "notes": [], "metrics": m}


def noisy_fourteen() -> dict:
    """Every artifact 0.0405-0.0435 ms (one noise distribution), accuracy 99.33%."""
    rng = np.random.default_rng(3)
    rows, seed = [], 0
    for target, labels in LABELS.items():
        for label in labels:
            size = 268_100 if label == "fp32" else 134_000 if label == "fp16" else 74_300 + int(rng.integers(0, 900))
            rows.append(_row(target, label, 0.042 + 0.0015 * float(rng.uniform(-1, 1)), size, 0.99333, seed))
            seed += 1
    return _build(rows, (1,))


def sectioned() -> dict:
    """Two targets with real speed differences, batch 1 and 32, and the pruning, QAT,
    fallback and per-layer sections report.md shows."""
    rows = [_row("onnx", "fp32", 2.0, 1_000_000, 0.9933, 0, (1, 32)),
            _row("onnx", "int8-static", 0.8, 260_000, 0.9911, 1, (1, 32)),
            _row("onnx", "int8-qat", 0.82, 262_000, 0.9933, 2, (1, 32)),
            _row("tflite", "fp32", 2.6, 1_020_000, 0.9933, 3, (1, 32)),
            _row("tflite", "int8", 1.1, 270_000, 0.9889, 4, (1, 32))]
    rows[1]["fallback"] = {"budget": {"min_cosine": 0.999, "max_accuracy_drop": None}, "lowering": "qdq",
                           "float_layers": [{"name": "classifier", "latency_ms": 0.004}], "attempts": [{}, {}],
                           "sensitivity_mode": "target runtime, cosine loss per layer", "refused": None}
    r = _build(rows, (1, 32))
    r["pruning"] = {"methods": ["structured l1"], "params_before": 65_000, "params_after": 33_000,
                    "macs_before": 1_200_000, "macs_after": 610_000, "sparsity": 0.49, "accuracy_dense": 0.9933,
                    "accuracy_pruned": 0.97, "accuracy_after_finetune": 0.9911,
                    "before_after": {"onnx": {"dense": {"p50_ms": 2.0, "accuracy": 0.9933},
                                              "pruned": {"p50_ms": 1.2, "accuracy": 0.9911}, "speedup": 1.67,
                                              "size_ratio": 0.51, "gzip_ratio": 0.5}}}
    r["qat"] = {"weight_bits": 8, "per_channel": True, "float_accuracy": 0.9933, "note": "PTQ beside QAT",
                "by_target": {"onnx": {"int8-ptq-same": {"accuracy": 0.9911}, "int8-qat": {"accuracy": 0.9933,
                                                                                          "p50_ms": 0.82}}},
                "target_family": {"onnx": "x86"},
                "families": {"x86": {"finetune": {"epochs": [1, 2], "train_wall_s": 3.2}, "resumed_from_epoch": None}},
                "kept_float": {"classifier": "sensitivity"}}
    r["per_layer"] = {"sensitivity (cosine loss)": {f"features.{i}": 0.001 * (i + 1) for i in range(8)}}
    return r


def _build(rows: list[dict], batches: tuple[int, ...]) -> dict:
    from benchmarks.recommend import recommend

    r = build(name="digits", model={"source": "compressor.zoo.digits:digits_cnn",
                                    "inputs": [{"name": "pixels", "shape": [1, 1, 8, 8]}]},
              reference={"accuracy": 0.9933, "eval_samples": 450},
              bench={"batch_sizes": list(batches), "threads": 2, "device": "cpu", "runs": 100},
              machine={"cpu": {"model": "test", "kernel_flags": ["avx2"]}}, artifacts=rows)
    r["recommended"] = recommend(r)
    return r

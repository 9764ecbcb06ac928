"""The pipeline's side of the prune step: it joins compressor.prune to the target
runtime (layer and model latency on ONNX Runtime, for the latency search) and measures
the dense model next to the pruned artifacts, so that the report shows before and after
from the same run.

Reference policy: the report's reference accuracy is the DENSE PyTorch model's, and each
artifact's accuracy delta is against it (what pruning cost). Validation compares each
artifact with the PRUNED PyTorch model: fidelity measures the export, not the pruning.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.prune.run import PruneResult
    from compressor.config.recipe import Recipe


def apply_prune_steps(recipe: "Recipe", model: "Model", train: "Dataset | None", evaluation: "Dataset | None",
                      show_progress: bool) -> tuple["Model", list["PruneResult"]]:
    from benchmarks.layer_latency import OrtLayerTimer, model_latency_ms
    from compressor.prune import prune

    threads = recipe.benchmark.threads
    timer = OrtLayerTimer(threads)
    results = []
    for step in recipe.prune_steps:
        model, res = prune(model, step, train=train, evaluation=evaluation, layer_ms=timer,
                           measure_latency=lambda m: model_latency_ms(m, threads), show_progress=show_progress)
        results.append(res)
    return model, results


def measure_dense(recipe: "Recipe", dense: "Model", bench, eval_npz: Path | None) -> dict[str, dict]:
    """fp32 artifact of the unpruned model per target, measured like the run's own
    artifacts (kept out of the run directory: it is the 'before', not a deliverable)."""
    import targets
    from benchmarks.harness import measure

    out = {}
    with tempfile.TemporaryDirectory(prefix="compressor-dense-") as d:
        for tname in recipe.targets:
            art = targets.get(tname).export(dense, None, Path(d) / f"{recipe.name}.dense", recipe.targets[tname],
                                            None)
            out[tname] = measure(art.path, bench, eval_npz).to_json()
    return out


def pruning_section(results: list["PruneResult"], dense_metrics: dict[str, dict], rows: list[dict],
                    batch: int) -> tuple[dict, dict]:
    """report["pruning"] and report["per_layer"]."""
    first, last = results[0], results[-1]
    after = {r["target"]: r["metrics"] for r in rows if r["label"] == "fp32" and r.get("metrics")}
    compare = {}
    for tname, before in dense_metrics.items():
        m = after.get(tname)
        b50, a50 = _p50(before, batch), _p50(m, batch) if m else None
        compare[tname] = {
            "dense": _brief(before, batch), "pruned": _brief(m, batch) if m else None,
            "speedup": b50 / a50 if b50 and a50 else None,
            "size_ratio": m["size_bytes"] / before["size_bytes"] if m else None,
            "gzip_ratio": m["gzip_bytes"] / before["gzip_bytes"] if m else None,
        }
    pruning = {
        "methods": [r.method for r in results],
        "params_before": first.params_before, "params_after": last.params_after,
        "macs_before": first.macs_before, "macs_after": last.macs_after,
        "sparsity": last.sparsity, "layer_sparsity": last.layer_sparsity,
        "layer_ratios": {k: v for r in results for k, v in r.layer_ratios.items()},
        "accuracy_dense": first.accuracy_before, "accuracy_pruned": last.accuracy_pruned,
        "accuracy_after_finetune": last.accuracy_after,
        "before_after": compare, "steps": [r.to_json() for r in results],
        "notes": sorted({n for r in results for n in r.notes}),
    }
    per_layer = {}
    if any(v > 0 for v in last.layer_sparsity.values()):
        per_layer["sparsity (%)"] = {k: 100 * v for k, v in last.layer_sparsity.items()}
    if any(v > 0 for v in pruning["layer_ratios"].values()):
        per_layer["channels pruned (%)"] = {k: 100 * v for k, v in pruning["layer_ratios"].items()}
    return pruning, per_layer


def _p50(m: dict | None, batch: int) -> float | None:
    if not m:
        return None
    return next((lat["p50_ms"] for lat in m["latency"] if lat["batch"] == batch), None)


def _brief(m: dict, batch: int) -> dict:
    return {"p50_ms": _p50(m, batch), "size_bytes": m["size_bytes"], "gzip_bytes": m["gzip_bytes"],
            "accuracy": m.get("accuracy")}

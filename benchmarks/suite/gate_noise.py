"""Does the gate fail for real regressions only? Measured, not assumed.

    python -m benchmarks.suite.gate_noise [--repeats 20] [--budget 5]

Each repeat measures, each in a fresh worker process: a baseline of model A, A again,
and model B, which does 30% more work (13 identical conv blocks instead of 10). The gate
with `max_latency_regression: 5` must pass A-vs-A in at least 19 of 20 repeats and fail
B-vs-A in at least 19 of 20. Exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

SHAPE = (1, 32, 32, 32)


def conv_stack(blocks: int, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        w = (rng.standard_normal((32, 32, 3, 3)) * 0.05).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    graph = helper.make_graph(nodes, f"stack{blocks}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, SHAPE)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def as_report(metrics, created: str) -> dict:
    from benchmarks.report import build

    row = {"name": "onnx/fp32", "target": "onnx", "label": "fp32", "precision": "fp32", "status": "ok",
           "metrics": metrics.to_json(), "notes": []}
    return build(name="gate-noise", model={"source": "conv-stack", "inputs": [{"name": "x", "shape": list(SHAPE)}]},
                 reference={}, bench={"batch_sizes": [1], "threads": metrics.threads, "device": "cpu", "runs": 0},
                 machine={}, artifacts=[row]) | {"created": created}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--budget", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = ap.parse_args(argv)

    from benchmarks.gate import evaluate
    from benchmarks.harness import BenchConfig, measure
    from compressor import sysinfo
    from compressor.config.budgets import BudgetsSpec, LatencyPolicy, Limits
    from compressor.fsutil import write_json

    cfg = BenchConfig(threads=args.threads, runs=args.runs, warmup=10, warmup_s=0.3)
    default = LatencyPolicy()
    # The default policy decides the exit code; the others are measured alongside for comparison.
    policies = {f"{'normalised' if n else 'raw'} p{q:g}": {"normalize": n, "quantile": q}
                for n in (True, False) for q in (50, 25)}
    chosen = f"{'normalised' if default.normalize else 'raw'} p{default.quantile:g}"
    results = {name: {"same_pass": 0, "more_fail": 0} for name in policies}
    ratios: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gate-noise-") as d:
        a = conv_stack(10, Path(d) / "a.onnx")
        b = conv_stack(13, Path(d) / "b.onnx")
        for i in range(args.repeats):
            base = as_report(measure(a, cfg), "base")
            same = as_report(measure(a, cfg), "same")
            more = as_report(measure(b, cfg), "more")
            for name, policy in policies.items():
                spec = BudgetsSpec(limits={"onnx/fp32": Limits(max_latency_regression=args.budget)},
                                   latency=policy)
                same_check = evaluate(same, spec, base)[0]
                more_check = evaluate(more, spec, base)[0]
                results[name]["same_pass"] += same_check.passed
                results[name]["more_fail"] += not more_check.passed
                if name == chosen:
                    ratios.append({"same_pct": same_check.measured, "more_pct": more_check.measured})
            print(f"repeat {i + 1:2d}: A vs A {ratios[-1]['same_pct']:+6.1f}%   B vs A {ratios[-1]['more_pct']:+6.1f}%"
                  f"   ({chosen})", flush=True)
    need = int(np.ceil(0.95 * args.repeats))
    ok = results[chosen]["same_pass"] >= need and results[chosen]["more_fail"] >= need
    for name, r in results.items():
        print(f"{name:15s}: same model passes {r['same_pass']}/{args.repeats}, 30% more work fails "
              f"{r['more_fail']}/{args.repeats} (need {need} each){'  <- the default policy' if name == chosen else ''}")
    write_json(args.out / "gate_noise.json", {"suite": "gate_noise", "budget_pct": args.budget,
                                              "repeats": args.repeats, "results": results, "ratios": ratios,
                                              "default_policy": chosen, "passed": ok,
                                              "machine": sysinfo.machine()})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

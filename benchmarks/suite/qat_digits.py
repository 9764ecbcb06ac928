"""Quantization-aware training on the digits CNN, on every target, in one run.

    python -m benchmarks.suite.qat_digits [--epochs 6] [--runs 300] [--out runs/bench]

A setting where post-training quantization loses clearly: 3-bit weights (-3..3, stored
in int8) with one scale per tensor. The recipe runs through the pipeline: per target,
the target's own static int8 PTQ (8-bit per-channel, the usual artifact), the 3-bit PTQ
twin (same quantizer as QAT, calibration only) and the 3-bit QAT artifact.

Figures (exit 1 when one is missed): on ONNX, TFLite and TorchScript, the 3-bit PTQ twin
loses more than 1 point, QAT is within 0.3 points of fp32, and the QAT artifact is at
most 1.05x the latency of the target's PTQ int8 artifact (p50, batch 1, same run).
The fine-tuning wall time per quantizer family is recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.suite.common import digits_recipe_head, provenance

MAX_QAT_LOSS = 0.003
MIN_PTQ_LOSS = 0.01
MAX_LATENCY_RATIO = 1.05
TARGETS = ("onnx", "tflite", "torchscript")

RECIPE = """\
benchmark: {{batch_sizes: [1], runs: {runs}, warmup: 20, warmup_s: 0.5, min_time_s: 1.0, memory: false}}
validation: {{int8: {{min_cosine: 0.9, min_top1: 0.8}}}}
steps:
  - quantize:
      variants: [{{mode: static}}]
  - qat:
      weight_bits: 3
      per_channel: false
      freeze_bn_after: {bn}
      freeze_observers_after: {obs}
      finetune: {{epochs: {epochs}, lr: 0.001}}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = ap.parse_args(argv)

    import targets
    from compressor.fsutil import write_json
    from compressor.config.recipe import parse_recipe
    from compressor.zoo import digits

    weights = Path(digits.__file__).with_name(digits.WEIGHTS)
    text = digits_recipe_head("qat-digits", weights, "onnx, tflite, torchscript") + RECIPE.format(weights=weights, runs=args.runs, epochs=args.epochs, bn=max(0, args.epochs - 2),
                         obs=max(0, args.epochs - 1))
    recipe = parse_recipe(text, "qat_digits.yaml", target_options=targets.option_models())
    from compressor.flows.run import run

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qat-bench-") as d:
        report = run(recipe, Path(d) / "run", show_progress=False)
    wall = time.perf_counter() - t0
    fp32 = report["reference"]["accuracy"]
    rows = {(r["target"], r["label"]): r for r in report["artifacts"]}
    figures, missed = {}, []
    for t in TARGETS:
        def acc(label):
            r = rows.get((t, label), {})
            return (r.get("metrics") or {}).get("accuracy")

        def p50(label):
            r = rows.get((t, label), {})
            lat = (r.get("metrics") or {}).get("latency") or []
            return lat[0]["p50_ms"] if lat else None

        f = {"fp32_accuracy": fp32, "ptq_3bit_accuracy": acc("int8-ptq-same"), "qat_3bit_accuracy": acc("int8-qat"),
             "ptq_int8_static_accuracy": acc("int8-static"), "p50_ms": {
                 lbl: p50(lbl) for lbl in ("fp32", "int8-static", "int8-ptq-same", "int8-qat")}}
        ms = f["p50_ms"]
        f["latency_ratio_qat_vs_ptq_static"] = ms["int8-qat"] / ms["int8-static"] if ms["int8-qat"] and ms["int8-static"] else None
        f["latency_ratio_qat_vs_ptq_same"] = ms["int8-qat"] / ms["int8-ptq-same"] if ms["int8-qat"] and ms["int8-ptq-same"] else None
        figures[t] = f
        if f["qat_3bit_accuracy"] is None or f["qat_3bit_accuracy"] < fp32 - MAX_QAT_LOSS:
            missed.append(f"{t}: QAT {f['qat_3bit_accuracy']} is more than 0.3 points below fp32 {fp32:.4f}")
        if f["ptq_3bit_accuracy"] is None or f["ptq_3bit_accuracy"] > fp32 - MIN_PTQ_LOSS:
            missed.append(f"{t}: 3-bit PTQ {f['ptq_3bit_accuracy']} does not lose clearly")
        if f["latency_ratio_qat_vs_ptq_static"] is None or f["latency_ratio_qat_vs_ptq_static"] > MAX_LATENCY_RATIO:
            missed.append(f"{t}: QAT/PTQ latency ratio {f['latency_ratio_qat_vs_ptq_static']}")
    out = {"benchmark": "qat_digits", "suite": "qat_digits",
           "setting": "3-bit per-tensor weights (int8 storage), uint8/int8 activations",
           **provenance(), "machine": report["machine"], "figures": figures,
           "finetune_wall_s": {fam: v["finetune"]["train_wall_s"] for fam, v in report["qat"]["families"].items()},
           "run_wall_s": wall, "failed_artifacts": [r["name"] for r in report["artifacts"] if r["status"] != "ok"],
           "missed": missed, "note": report["qat"]["note"]}
    write_json(args.out / "qat_digits.json", out)
    print(json.dumps(out, indent=1, default=str))
    return 1 if missed or out["failed_artifacts"] else 0


if __name__ == "__main__":
    sys.exit(main())

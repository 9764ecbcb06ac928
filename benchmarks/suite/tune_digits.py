"""Accuracy-aware tuning of the digits CNN on ONNX Runtime: does a study find a
configuration within the accuracy budget that is faster than plain static int8?

    python -m benchmarks.suite.tune_digits [--trials 16] [--sampler tpe] [--out runs/bench]

The study (compressor tune, Optuna TPE) searches structured pruning (0-60% of the
channels, 2 epochs of fine-tuning), static or dynamic int8, calibration method and
sample count, per-channel or per-tensor weights, 0-2 of the most sensitive layers kept
in float, and 0-2 epochs of QAT; objectives p50 latency (batch 1, 2 threads) and size;
budget: at most 0.5 points of accuracy below fp32 and output cosine >= 0.99. Plain
static int8 is the study's first trial. At the end the front and plain static int8 are
measured again side by side (3 interleaved rounds, medians).

Figures: the best feasible configuration, its latency and size against plain static
int8 (ratios from the same study), its accuracy; or the study's one-line reason why none
exists. Exit 1 (MISSED) when none within budget is at least 3% faster (the noise margin). The study directory
(tune.md, tune.html, best.yaml, trials/) is kept under OUT/tune_digits.
"""

from __future__ import annotations

import shutil
import sys
import time

from benchmarks.suite.common import digits_recipe_head, finish, parser, quiet

RECIPE = """\
benchmark: {{threads: {threads}, batch_sizes: [1], runs: {runs}, warmup: 20, warmup_s: 0.3, memory: false}}
tune:
  trials: {trials}
  sampler: {sampler}
  seed: 0
  objectives: [latency, size]
  budget: {{max_accuracy_drop: 0.5, min_cosine: 0.99}}
  benchmark: {{runs: 100, warmup: 10, warmup_s: 0.2}}
  space:
    prune: {{ratio: [0.0, 0.6], finetune_epochs: 2}}
    modes: [static, dynamic]
    calibration: [minmax, percentile, entropy]
    calibration_samples: [64, 256]
    per_channel: [true, false]
    fallback: {{max_layers: 2}}
    qat: {{epochs: [0, 2], lr: [0.0001, 0.001]}}
"""


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, runs=300)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--sampler", choices=("tpe", "nsga2"), default="tpe")
    args = ap.parse_args(argv)
    quiet()

    import targets
    from compressor.config.recipe import parse_recipe
    from compressor.flows.tune.study import run_tune
    from compressor.zoo.digits import WEIGHTS_PATH

    text = digits_recipe_head("tune-digits", WEIGHTS_PATH, "onnx") + RECIPE.format(weights=WEIGHTS_PATH, threads=args.threads, runs=args.runs, trials=args.trials,
                         sampler=args.sampler)
    recipe = parse_recipe(text, "tune_digits.yaml", target_options=targets.option_models())
    study_dir = args.out / "tune_digits"
    if (study_dir / "study.db").exists():  # a fresh study each time: the figure is one study's
        shutil.rmtree(study_dir)
    t0 = time.perf_counter()
    report = run_tune(recipe, study_dir, show_progress=False)
    wall = time.perf_counter() - t0
    rows = {t["number"]: t for t in report["trials"]}
    best, base, cmp = rows.get(report["best"]), rows.get(report["baseline"]), report["comparison"] or {}
    result = {
        "verdict": report["verdict"], "trials": report["counts"], "wall_s": wall,
        "baseline": _summary(base), "best": _summary(best), "best_trial": report["best"],
        "speedup_vs_static_int8": cmp.get("speedup"), "speedup_in_trials": cmp.get("trial_speedup"),
        "size_ratio_vs_static_int8": cmp.get("size_ratio"), "confirmed_side_by_side": cmp.get("confirmed"),
        "confirm_p50_ms": {"best": cmp.get("best_p50_ms"), "static_int8": cmp.get("baseline_p50_ms")},
        "front": [_summary(rows[n]) for n in report["front"]], "study_dir": str(study_dir),
    }
    print(report["verdict"])
    for key in ("speedup_vs_static_int8", "size_ratio_vs_static_int8", "confirm_p50_ms"):
        print(f"{key}: {result[key]}")
    from compressor.flows.tune.report import CLEARLY_FASTER

    clearly = (cmp.get("speedup") or 0) >= CLEARLY_FASTER and report["best"] != report["baseline"]
    missed = [] if clearly else \
        [f"no configuration within budget faster than plain static int8: {report['verdict']}"]
    return finish("tune_digits", args, [result], missed, sampler=args.sampler, n_trials=args.trials)


def _summary(t: dict | None) -> dict | None:
    if t is None:
        return None
    return {k: t.get(k) for k in ("number", "describe", "p50_ms", "latency", "size_bytes", "accuracy",
                                  "accuracy_drop", "cosine", "feasible", "wall_s")}


if __name__ == "__main__":
    sys.exit(main())

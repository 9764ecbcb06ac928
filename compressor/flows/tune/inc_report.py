"""The INC engine's measurements and report: its chosen model exported to the target,
validated and measured beside plain static int8 from our pipeline, in the same
tune.json / tune.md / tune.html shape as an Optuna study (its evaluated configurations
are rows with accuracy only: INC measures no latency)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.errors import CompressorError, first_line
from compressor.fsutil import write_json, write_text

if TYPE_CHECKING:
    from compressor.model import Model
    from compressor.config.recipe import Recipe
    from compressor.flows.tune.space import TrialConfig
    from compressor.flows.tune.context import TuneContext


def inc_report(recipe: "Recipe", ctx: "TuneContext", inc_model: "Model | None", fp32_acc: float,
               evaluations: list[float], configs: list[dict], tune_s: float, baseline_cfg: "TrialConfig") -> dict:
    from compressor import sysinfo
    from compressor.flows.tune.report import CONFIRM_ROUNDS, now, to_html, to_markdown, verdict

    spec, out = ctx.spec, ctx.out
    budget = spec.budget
    rows = [_baseline_row(recipe, ctx, baseline_cfg)]
    goal = fp32_acc * (1 - budget.max_accuracy_drop / 100 / max(fp32_acc, 1e-9))
    chosen = None
    if evaluations:  # INC keeps the first configuration meeting its goal, else the most accurate
        chosen = len(evaluations) - 1 if evaluations[-1] >= goal else max(range(len(evaluations)),
                                                                             key=evaluations.__getitem__)
    for i, acc in enumerate(evaluations):
        rows.append({"number": i + 1, "state": "evaluated", "role": "inc", "config": configs[i] if i < len(configs)
                     else None, "describe": "INC " + _describe(configs[i] if i < len(configs) else {}),
                     "accuracy": acc, "accuracy_drop": 100 * (fp32_acc - acc), "p50_ms": None, "latency": None,
                     "size_bytes": None, "cosine": None, "feasible": False, "values": None, "error": None})
    if inc_model is not None and chosen is not None:
        row = rows[chosen + 1]
        row.update(_measure_inc(recipe, ctx, inc_model, fp32_acc))
        row["state"] = "complete" if row.get("p50_ms") is not None else "fail"
    for r in rows:
        if r["state"] == "complete":
            v = []
            if budget.max_accuracy_drop is not None:
                v.append(r["accuracy_drop"] - budget.max_accuracy_drop)
            if budget.min_cosine is not None:
                v.append(budget.min_cosine - (r["cosine"] if r["cosine"] is not None else -1))
            r.update(violations=v, feasible=all(x <= 0 for x in v),
                     values=[{"latency": r["latency"], "size": float(r["size_bytes"])}[o] for o in spec.objectives])
    measured = [r for r in rows if r["feasible"]]
    from compressor.flows.tune.report import non_dominated

    front = sorted((measured[i] for i in non_dominated([tuple(r["values"]) for r in measured])),
                   key=lambda r: tuple(r["values"]))
    base = rows[0]
    inc_row = next((r for r in rows[1:] if r["state"] in ("complete", "fail")), None)
    comparison, best = None, (front[0] if front else None)
    if base["state"] == "complete" and inc_row is not None and inc_row["state"] == "complete":
        med = _side_by_side(recipe, [base, inc_row], CONFIRM_ROUNDS)
        if med and best is not None and len(front) > 1:
            best = min(front, key=lambda r: med[r["number"]])
        comparison = {"trial_speedup": base["latency"] / inc_row["latency"],
                      "size_ratio": inc_row["size_bytes"] / base["size_bytes"], "confirmed": bool(med),
                      "speedup": base["latency"] / inc_row["latency"]}
        if med:
            comparison.update(rounds=CONFIRM_ROUNDS, runs=recipe.benchmark.runs, best_p50_ms=med[inc_row["number"]],
                              baseline_p50_ms=med[0], speedup=med[0] / med[inc_row["number"]])
    report = {
        "schema": "compressor.tune", "schema_version": 1, "name": recipe.name, "created": now(), "engine": "inc",
        "sampler": "INC sequential config set", "study": "inc-autotune", "storage": "none (INC keeps no study)",
        "target": ctx.target, "objectives": list(spec.objectives), "budget": budget.model_dump(),
        "space": {"inc_config_set": configs}, "sensitivity_ranking": [], "wall_s": tune_s,
        "machine": sysinfo.machine(), "fp32_accuracy": fp32_acc,
        "counts": {"trials": len(rows), "feasible": len(measured), "failed": sum(r["state"] == "fail" for r in rows)},
        "trials": rows, "front": [r["number"] for r in front], "best": best["number"] if best else None,
        "baseline": 0, "comparison": comparison,
    }
    report["verdict"] = _inc_verdict(report, rows, inc_row) or verdict(report, {r["number"]: r for r in rows})
    write_json(out / "tune.json", report)
    write_text(out / "tune.md", to_markdown(report))
    write_text(out / "tune.html", to_html(report))
    return report


def _inc_verdict(report: dict, rows: list[dict], inc_row: dict | None) -> str | None:
    if rows[0]["state"] == "complete" and inc_row is None:
        return (f"INC autotune found no static int8 configuration within its accuracy goal among "
                f"{len(rows) - 1} tried; plain static int8 stands")
    if inc_row is not None and inc_row["state"] == "fail":
        return f"INC's model did not export to {report['target']}: {inc_row.get('error')}"
    return None


def _describe(c: dict) -> str:
    return (f"act {'sym' if c.get('act_sym') else 'asym'} {c.get('act_algo')}, "
            f"weights {str(c.get('w_granularity', '')).replace('_', '-')}")


def _baseline_row(recipe: "Recipe", ctx: "TuneContext", cfg: "TrialConfig") -> dict:
    """Plain static int8 from our own pipeline, with the tuner's benchmark settings."""
    from compressor.flows.run import run
    from compressor.config.recipe import parse_recipe
    from compressor.flows.tune.context import base_dict
    from compressor.flows.tune.space import derived_recipe, to_yaml

    import targets

    d = derived_recipe(base_dict(recipe), cfg, ctx.spec, ctx.target, ctx.spec.space.percentile)
    d["name"] = f"{recipe.name}-static-int8"
    trial_dir = ctx.out / "trials" / "static-int8"
    row = {"number": 0, "state": "fail", "role": "baseline", "config": cfg.to_json(), "describe": cfg.describe(),
           "dir": str(trial_dir), "feasible": False, "values": None, "error": None}
    try:
        report = run(parse_recipe(to_yaml(d), "static-int8.yaml", recipe.base_dir, targets.option_models()),
                     trial_dir, overwrite=True, show_progress=False)
    except CompressorError as e:
        report = getattr(e, "report", None)
        if report is None:
            return {**row, "error": first_line(e)}
    r = next((a for a in report["artifacts"] if a["label"] == cfg.label and a.get("metrics")), None)
    if r is None:
        return {**row, "error": "plain static int8 produced no measured artifact"}
    ref = report["reference"]["accuracy"]
    return {**row, **_metrics(r["metrics"]), "state": "complete", "accuracy": r["metrics"]["accuracy"],
            "accuracy_drop": 100 * (ref - r["metrics"]["accuracy"]),
            "cosine": (r.get("fidelity") or {}).get("cosine_mean"), "artifact": str(trial_dir / r["file"])}


def _metrics(m: dict) -> dict:
    p50 = m["latency"][0]["p50_ms"]
    ref = m.get("reference_p50_ms")
    return {"p50_ms": p50, "reference_p50_ms": ref, "latency": p50 / ref if ref else p50, "size_bytes": m["size_bytes"]}


def _measure_inc(recipe: "Recipe", ctx: "TuneContext", model: "Model", fp32_acc: float) -> dict:
    import targets
    from benchmarks.harness import BenchConfig, measure
    from compressor.data import load_dataset
    from compressor.flows.rundir import eval_file
    from compressor.reference import reference_for
    from compressor.config.quantize import QuantVariant
    from targets.base import Device
    from targets.validate import validate_artifact

    target = targets.get(ctx.target)
    tokenizer = getattr(model, "tokenizer", None)  # an hf source's own, for text data
    evaluation = load_dataset(recipe.data.evaluation, model.inputs, recipe.base_dir, tokenizer)
    variant = QuantVariant(name="int8-inc", mode="qat")
    try:
        art = target.export(model, variant, ctx.out / "trials" / "inc" / f"{recipe.name}.int8-inc",
                            recipe.targets[ctx.target], None)
    except CompressorError as e:
        return {"error": first_line(e)}
    ref = reference_for(model, evaluation, recipe.validation.samples)
    fid, _ = validate_artifact(target, art, ref.inputs, ref.outputs, recipe.benchmark.threads,
                               Device.parse(recipe.benchmark.device))
    b, tb = recipe.benchmark, ctx.spec.benchmark
    cfg = BenchConfig.from_spec(b, batch_sizes=(b.batch_sizes[0],), warmup=tb.warmup, warmup_s=tb.warmup_s,
                                runs=tb.runs, min_time_s=0.0, isolate=tb.memory, keep_samples=False, trust=True)
    with eval_file(evaluation) as npz:
        m = measure(art.path, cfg, npz).to_json()
    # The budget counts what the artifact scores on the target runtime, not INC's PyTorch figure.
    return {**_metrics(m), "accuracy": m["accuracy"], "accuracy_drop": 100 * (fp32_acc - m["accuracy"]),
            "cosine": fid.cosine, "artifact": str(art.path), "dir": str(art.path.parent),
            "export": {k: v for k, v in art.meta.items() if k in ("engine", "op_types", "ort_fused_ops")}}


def _side_by_side(recipe: "Recipe", rows: list[dict], rounds: int) -> dict[int, float]:
    from benchmarks.harness import BenchConfig, measure

    b = recipe.benchmark
    cfg = BenchConfig.from_spec(b, batch_sizes=(b.batch_sizes[0],), isolate=False, keep_samples=False, trust=True)
    p50: dict[int, list[float]] = {r["number"]: [] for r in rows}
    for _ in range(rounds):
        for r in rows:
            p50[r["number"]].append(measure(Path(r["artifact"]), cfg).to_json()["latency"][0]["p50_ms"])
    return {n: statistics.median(v) for n, v in p50.items()}

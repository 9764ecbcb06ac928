"""The study's report: tune.json (schema `compressor.tune`), tune.md, tune.html (the
front, drawn like the run reports' plots) and best.yaml, the winning configuration as
a recipe to run. The best configuration and plain static int8 are measured once more,
side by side in interleaved rounds, so that the headline ratio is not one noisy trial."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.fsutil import write_json, write_text
from compressor.flows.tune.space import TrialConfig, absolute_paths, derived_recipe, to_yaml

if TYPE_CHECKING:
    from compressor.flows.tune.context import TuneContext

SCHEMA_VERSION = 1
CONFIRM_ROUNDS = 3
CLEARLY_FASTER = 1.03  # under 3%, two medians on these shared machines are not told apart


def non_dominated(points: list[tuple[float, ...]]) -> list[int]:
    """Indices of the points no other point beats (every coordinate minimised)."""
    def beats(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [i for i, p in enumerate(points) if not any(beats(q, p) for j, q in enumerate(points) if j != i)]


def trial_rows(study) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    rows = []
    for t in study.trials:
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            continue
        a = t.user_attrs
        rows.append({"number": t.number, "state": t.state.name.lower(), "role": a.get("role", "search"),
                     "config": a.get("config"), "params": t.params,
                     "describe": TrialConfig.from_json(a["config"]).describe() if a.get("config") else None,
                     **{k: a.get(k) for k in ("p50_ms", "reference_p50_ms", "latency", "size_bytes", "accuracy",
                                              "accuracy_drop", "cosine", "violations", "artifact", "dir",
                                              "fp32_p50_ms", "error")},
                     "feasible": bool(a.get("feasible")) and t.state == TrialState.COMPLETE,
                     "values": list(t.values) if t.values else None,
                     "wall_s": t.duration.total_seconds() if t.duration else None})
    return rows


def build_report(study, ctx: "TuneContext", url: str, name: str, wall_s: float, confirm: bool = True) -> dict:
    from compressor import sysinfo

    rows = trial_rows(study)
    feasible = [r for r in rows if r["feasible"]]
    front_idx = non_dominated([tuple(r["values"]) for r in feasible])
    front = sorted((feasible[i] for i in front_idx), key=lambda r: tuple(r["values"]))
    baseline = next((r for r in rows if r["role"] == "baseline" and r["state"] == "complete"), None)
    best = front[0] if front else None  # lowest first objective, then the next
    comparison = None
    if best is not None and baseline is not None:
        medians = _confirm(front, baseline, ctx) if confirm and "latency" in ctx.spec.objectives else {}
        if medians:  # one noisy trial must not pick the winner: the front measured again decides
            best = min(front, key=lambda r: medians[r["number"]])
        comparison = {"trial_speedup": baseline["latency"] / best["latency"],
                      "size_ratio": best["size_bytes"] / baseline["size_bytes"],
                      "speedup": baseline["latency"] / best["latency"], "confirmed": bool(medians)}
        if medians:
            b = ctx.recipe.benchmark
            comparison.update(rounds=CONFIRM_ROUNDS, runs=b.runs, best_p50_ms=medians[best["number"]],
                              baseline_p50_ms=medians[baseline["number"]],
                              speedup=medians[baseline["number"]] / medians[best["number"]],
                              p50_ms_by_trial={str(k): v for k, v in medians.items()})
    report = {
        "schema": "compressor.tune", "schema_version": SCHEMA_VERSION, "name": ctx.recipe.name,
        "created": now(), "engine": ctx.spec.engine, "sampler": ctx.spec.sampler, "study": name, "storage": url,
        "target": ctx.target, "objectives": list(ctx.spec.objectives),
        "budget": ctx.spec.budget.model_dump(), "space": ctx.spec.space.model_dump(mode="json"),
        "sensitivity_ranking": ctx.ranking, "wall_s": wall_s, "machine": sysinfo.machine(),
        "counts": {"trials": len(rows), "feasible": len(feasible),
                   "failed": sum(r["state"] == "fail" for r in rows)},
        "trials": rows, "front": [r["number"] for r in front],
        "best": best["number"] if best else None,
        "baseline": next((r["number"] for r in rows if r["role"] == "baseline"), None),
        "comparison": comparison, "importance": importance(study, list(ctx.spec.objectives)),
    }
    report["verdict"] = verdict(report, {r["number"]: r for r in rows})
    return report


def verdict(report: dict, by_number: dict[int, dict]) -> str:
    """One line: what the study found, or why nothing beats plain static int8."""
    base = by_number.get(report["baseline"]) if report["baseline"] is not None else None
    best = by_number.get(report["best"]) if report["best"] is not None else None
    budget = report["budget"]
    if base is None or base["state"] != "complete":
        why = (base or {}).get("error") or "it has not run yet"
        return f"no comparison: plain static int8 (the seeded first trial) did not complete ({why})"
    if best is None:
        done = [r for r in by_number.values() if r["state"] == "complete"]
        if not done:
            return "no trial completed; see the errors in tune.json"
        close = min(done, key=lambda r: sum(max(0.0, v) for v in r["violations"] or [float("inf")]))
        return (f"no configuration is within budget ({_budget(budget)}): the closest, trial {close['number']} "
                f"({close['describe']}), has accuracy drop {_num(close['accuracy_drop'], '.2f')} points and "
                f"cosine {_num(close['cosine'], '.4f')}")
    cmp = report["comparison"] or {}
    speedup = cmp.get("speedup")
    if best["number"] == base["number"] or speedup is None or speedup < CLEARLY_FASTER:
        return (f"none clearly faster than plain static int8 within budget: the best feasible configuration, trial "
                f"{best['number']} ({best['describe']}), runs at {_num(speedup, '.2f')}x of its speed "
                f"({'measured again side by side' if cmp.get('confirmed') else 'in the trials'}; "
                f"under {CLEARLY_FASTER:.2f}x is within run-to-run noise)"
                if best["number"] != base["number"] else
                f"none faster than plain static int8 within budget: it is itself the best feasible configuration "
                f"({report['counts']['feasible']} feasible of {report['counts']['trials']} trials)")
    return (f"trial {best['number']} ({best['describe']}) is {speedup:.2f}x faster than plain static int8 and "
            f"{cmp['size_ratio']:.2f}x its size, accuracy {100 * best['accuracy']:.2f}% vs "
            f"{100 * base['accuracy']:.2f}% (budget: {_budget(budget)})")


def _budget(b: dict) -> str:
    parts = []
    if b.get("max_accuracy_drop") is not None:
        parts.append(f"accuracy drop <= {b['max_accuracy_drop']:g} points")
    if b.get("min_cosine") is not None:
        parts.append(f"cosine >= {b['min_cosine']:g}")
    return ", ".join(parts)


def _num(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _confirm(front: list[dict], baseline: dict, ctx: "TuneContext") -> dict[int, float]:
    """Plain static int8 and every front configuration measured again in interleaved
    rounds with the recipe's own benchmark settings: trial number -> median p50 (ms).
    Empty when an artifact is gone (a trial run on another machine of a shared study)."""
    from benchmarks.harness import BenchConfig, measure

    rows = {r["number"]: r for r in [baseline, *front]}
    if not all(r.get("artifact") and Path(r["artifact"]).is_file() for r in rows.values()):
        return {}
    b = ctx.recipe.benchmark
    cfg = BenchConfig.from_spec(b, batch_sizes=(b.batch_sizes[0],), isolate=False, keep_samples=False, trust=True)
    p50: dict[int, list[float]] = {n: [] for n in rows}
    for _ in range(CONFIRM_ROUNDS):
        for n, r in rows.items():
            p50[n].append(measure(Path(r["artifact"]), cfg).to_json()["latency"][0]["p50_ms"])
    return {n: statistics.median(v) for n, v in p50.items()}


def write_report(out: Path, report: dict, ctx: "TuneContext") -> None:
    write_json(out / "tune.json", report)
    write_text(out / "tune.md", to_markdown(report))
    write_text(out / "tune.html", to_html(report))
    best = next((r for r in report["trials"] if r["number"] == report["best"]), None)
    if best is not None:
        cfg = TrialConfig.from_json(best["config"])
        d = derived_recipe(ctx.base, cfg, None, ctx.target, ctx.spec.space.percentile)
        d = absolute_paths({**d, "name": f"{ctx.recipe.name}-tuned"}, ctx.recipe.base_dir)
        header = (f"# The best feasible configuration of study {report['study']!r} (trial {best['number']}):\n"
                  f"# {best['describe']}\n# Run it with: compressor run best.yaml --out runs/NAME\n")
        write_text(out / "best.yaml", to_yaml(d, header))


def _cells(r: dict, front: set[int], best: int | None, baseline: int | None) -> list[str]:
    tag = "best" if r["number"] == best else ("front" if r["number"] in front else "")
    if r["number"] == baseline:
        tag = (tag + ", " if tag else "") + "static int8"
    return [str(r["number"]), r["describe"] or "", _num(r["p50_ms"], ".4f"), _num(r["latency"], ".4f"),
            _num(r["size_bytes"] / 1e3 if r["size_bytes"] else None, ".1f"),
            _num(100 * r["accuracy"] if r["accuracy"] is not None else None, ".2f"),
            _num(r["accuracy_drop"], "+.2f"), _num(r["cosine"], ".4f"),
            "yes" if r["feasible"] else {"fail": "failed", "evaluated": "PyTorch only"}.get(r["state"], "no"), tag]


HEADER = ["#", "configuration", "p50 ms", "p50 / ref", "size KB", "acc %", "drop", "cosine", "in budget", ""]


def to_markdown(report: dict) -> str:
    front, best, base = set(report["front"]), report["best"], report["baseline"]
    c = report["counts"]
    lines = [f"# Tuning {report['name']} on {report['target']} ({report['engine']}, {report['sampler']})", "",
             f"Study `{report['study']}` in `{report['storage']}`: {c['trials']} trials, {c['feasible']} within "
             f"budget ({_budget(report['budget'])}), {c['failed']} failed; objectives: "
             f"{', '.join(report['objectives'])} (minimised, measured on the target runtime).", "",
             f"**{report['verdict']}**", ""]
    cmp = report.get("comparison")
    if cmp and cmp.get("confirmed"):
        lines += [f"Measured again side by side ({cmp['rounds']} interleaved rounds of {cmp['runs']} runs, medians, "
                  f"the front and plain static int8; the fastest of the front is the best): best "
                  f"{cmp['best_p50_ms']:.4f} ms, plain static int8 {cmp['baseline_p50_ms']:.4f} ms, "
                  f"speedup {cmp['speedup']:.2f}x (in the trials: {cmp['trial_speedup']:.2f}x); size "
                  f"{cmp['size_ratio']:.2f}x.", ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in report["trials"]:
        lines.append("| " + " | ".join(_cells(r, front, best, base)) + " |")
    errors = [r for r in report["trials"] if r.get("error")]
    if errors:
        lines += ["", "Failed trials:", ""] + [f"- {r['number']}: {r['error']}" for r in errors]
    lines += ["", f"Pareto front (within budget): trials {', '.join(map(str, report['front'])) or 'none'}."]
    return "\n".join(lines) + "\n"


def to_html(report: dict) -> str:
    from compressor.flows.tune.html import to_html as page

    front, best, base = set(report["front"]), report["best"], report["baseline"]
    return page(report, HEADER, [_cells(r, front, best, base) for r in report["trials"]])


def importance(study, objectives: list[str]) -> dict[str, Any]:
    """Optuna's parameter importance (fANOVA) for the first objective over the completed
    trials, or why there is none (too few trials, a parameter that never varied)."""
    import optuna
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.values]
    out: dict[str, Any] = {"objective": objectives[0] if objectives else "the first objective", "trials": len(done),
                           "evaluator": "fANOVA"}
    if len(done) < 3:
        return {**out, "error": f"{len(done)} completed trials; importance needs at least 3"}
    try:
        values = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except (ValueError, RuntimeError) as e:
        return {**out, "error": str(e).splitlines()[0][:200]}
    return {**out, "values": {k: float(v) for k, v in values.items()}}


def now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

"""`compressor tune`: an Optuna study over the compression space of a recipe's `tune`
section. Each trial derives an ordinary recipe and runs the ordinary pipeline into its
own directory; latency and size come from the target runtime, accuracy and fidelity
from the run's report. Infeasible trials (over the accuracy budget) stay in the study,
through Optuna's constraints, but never on the front.

The study lives in a database (SQLite in the run directory by default, any SQLAlchemy
URL to share it between machines): rerunning the same command continues it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError, RecipeError, first_line
from compressor.fsutil import nearest_existing, write_json
from compressor.config.recipe import Recipe
from compressor.config.tune import TuneSpec
from compressor.flows.tune.context import TuneContext, base_dict
from compressor.flows.tune.space import BASELINE, TrialConfig, check_space, derived_recipe, suggest, to_yaml

ROLE_BASELINE = "baseline"
HEARTBEAT_S, GRACE_S = 30, 90  # a killed machine's running trial is marked failed after this long


class TrialFailed(CompressorError):
    """A trial whose pipeline run produced no measurable artifact (kept in the study as failed)."""


def tune_spec(recipe: Recipe, trials: int | None = None, storage: str | None = None,
              study: str | None = None) -> tuple[TuneSpec, str]:
    """The recipe's tune section with command-line overrides, and the tuned target."""
    spec = recipe.tune
    if spec is None:
        raise RecipeError("the recipe has no 'tune' section; add one (see docs/tune.md) to tune it")
    updates = {k: v for k, v in (("trials", trials), ("storage", storage), ("study", study)) if v is not None}
    spec = spec.model_copy(update=updates)
    target = spec.target or (next(iter(recipe.targets)) if len(recipe.targets) == 1 else None)
    if target is None:
        raise RecipeError(f"tune.target: the recipe has several targets ({', '.join(recipe.targets)}); "
                          "name the one to tune")
    if target not in recipe.targets:
        raise RecipeError(f"tune.target {target!r} is not among the recipe's targets ({', '.join(recipe.targets)})")
    return spec, target


def storage_url(spec: TuneSpec, out: Path) -> str:
    return spec.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def check_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise RecipeError(f"study storage {url!r} is not a database URL; use sqlite:///path/study.db or a "
                          "SQLAlchemy URL such as postgresql://user@host/db") from None


def open_storage(url: str):
    """An RDB storage for `url`, or one line saying what is wrong with it."""
    import optuna

    check_url(url)
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as e:  # missing driver, unreachable server, unwritable file: all one line
        raise RecipeError(f"cannot open the study storage {safe_url(url)}: {first_line(e)}") from None


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def run_tune(recipe: Recipe, out: Path, trials: int | None = None, storage: str | None = None,
             study_name: str | None = None, show_progress: bool = True, console=None) -> dict:
    """Run (or continue) the study; returns the study report (tune.json)."""
    import optuna

    import targets
    from compressor.flows.tune.report import build_report, write_report

    spec, target = tune_spec(recipe, trials, storage, study_name)
    base = base_dict(recipe)
    check_space(base, spec, target)
    out = Path(out)
    if spec.engine == "inc":
        from compressor.flows.tune.inc import run_inc

        _prepare_out(out)
        return run_inc(recipe, spec, target, out, show_progress=show_progress, console=console)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are in the report, not tracebacks
    url = storage_url(spec, out)
    check_url(url)  # before anything is written
    _prepare_out(out)
    store = open_storage(url)
    name = spec.study or recipe.name
    study = _open_study(store, name, spec)
    ranking = _ranking(recipe, spec, target)
    ctx = TuneContext(recipe=recipe, spec=spec, target=target, out=out, base=base, ranking=ranking,
                      target_options=targets.option_models())
    done = counted_trials(study)
    if not any(t.user_attrs.get("role") == ROLE_BASELINE for t in study.trials):
        study.enqueue_trial({}, user_attrs={"role": ROLE_BASELINE})
    remaining = max(0, spec.trials - len(done))
    study.sampler = _sampler(spec, seed_offset=len(study.trials))
    started, finished = time.perf_counter(), False
    try:
        with _progress(show_progress, console, remaining) as (progress, task):
            def after(st, frozen) -> None:
                progress.update(task, advance=1, description=_line(frozen))

            if remaining:
                study.optimize(lambda t: _objective(t, ctx), n_trials=remaining, timeout=spec.timeout_s,
                               catch=(CompressorError,), callbacks=[after], gc_after_trial=False)
        finished = True
    finally:  # an interrupted study still reports what it has (without measuring again)
        report = build_report(study, ctx, safe_url(url), name, time.perf_counter() - started, confirm=finished)
        write_report(out, report, ctx)
    return report


TUNE_MARKER = ".compressor-tune.json"


def _prepare_out(out: Path) -> None:
    """A new directory, or one of ours (its marker, or from before the marker its study or
    tune.json): rerunning continues the study there. Nothing in it is ever deleted."""
    if out.exists() and not out.is_dir():
        raise RecipeError(f"tune directory {out} is a file; choose another --out")
    parent = nearest_existing(out.absolute().parent)
    if not parent.is_dir():
        raise RecipeError(f"cannot make tune directory {out}: {parent} is a file; choose another --out")
    ours = any((out / n).exists() for n in (TUNE_MARKER, "study.db", "tune.json"))
    if out.is_dir() and any(out.iterdir()) and not ours:
        raise RecipeError(f"tune directory {out} holds files that are not a study of ours; choose another --out")
    (out / "trials").mkdir(parents=True, exist_ok=True)
    if not (out / TUNE_MARKER).exists():
        write_json(out / TUNE_MARKER, {"tool": "compressor", "kind": "tune"})


def _open_study(store, name: str, spec: TuneSpec):
    import optuna

    directions = ["minimize"] * len(spec.objectives)
    try:
        study = optuna.create_study(storage=store, study_name=name, directions=directions, load_if_exists=True)
    except Exception as e:
        raise RecipeError(f"cannot open study {name!r}: {first_line(e)}") from None
    had = study.user_attrs.get("objectives")
    if had is None:
        study.set_user_attr("objectives", list(spec.objectives))
    elif had != list(spec.objectives):
        raise RecipeError(f"study {name!r} in this storage minimises {had}, not {list(spec.objectives)}; "
                          "use another --study name or the same objectives")
    return study


def _sampler(spec: TuneSpec, seed_offset: int):
    import optuna

    # A resumed study must not replay the random start of the first run.
    seed = None if spec.seed is None else spec.seed + seed_offset
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(4, min(50, spec.trials // 3)), seed=seed,
                                             constraints_func=constraints)
    return optuna.samplers.TPESampler(n_startup_trials=max(3, min(10, spec.trials // 3)), seed=seed,
                                      constraints_func=constraints, multivariate=True, group=True,
                                      warn_independent_sampling=False)


def constraints(frozen) -> list[float]:
    """Optuna's convention: a value <= 0 holds. Set by the objective from the trial's report."""
    return list(frozen.user_attrs.get("violations", [float("inf")]))


def counted_trials(study) -> list:
    """Trials that count towards `trials`: finished ones, and failures a trial reported
    itself (not those killed or interrupted mid-way, which a resumed study redoes)."""
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and "error" in t.user_attrs)]


def _objective(trial, ctx: TuneContext) -> tuple[float, ...]:
    from compressor.flows.run import run
    from compressor.config.recipe import parse_recipe

    role = trial.user_attrs.get("role")
    cfg = BASELINE if role == ROLE_BASELINE else suggest(trial, ctx.spec.space, ctx.ranking)
    trial.set_user_attr("config", cfg.to_json())
    trial_dir = ctx.out / "trials" / f"trial-{trial.number:04d}"
    trial.set_user_attr("dir", str(trial_dir))
    d = derived_recipe(ctx.base, cfg, ctx.spec, ctx.target, ctx.spec.space.percentile)
    d["name"] = f"{ctx.recipe.name}-t{trial.number}"
    try:
        recipe = parse_recipe(to_yaml(d), f"{trial_dir}/recipe.yaml", ctx.recipe.base_dir, ctx.target_options)
        report = run(recipe, trial_dir, overwrite=True, show_progress=False)
    except CompressorError as e:
        report = getattr(e, "report", None)
        if report is None:
            trial.set_user_attr("error", first_line(e))
            raise TrialFailed(f"trial {trial.number}: {first_line(e)}") from None
    except Exception as e:  # a library failing on one configuration must not end the whole study
        trial.set_user_attr("error", f"{type(e).__name__}: {first_line(e)}")
        raise TrialFailed(f"trial {trial.number}: {type(e).__name__}: {first_line(e)}") from None
    from compressor.fsutil import write_text

    write_text(trial_dir / "recipe.yaml", to_yaml(d))
    return _score(trial, ctx, cfg, report)


def _score(trial, ctx: TuneContext, cfg: TrialConfig, report: dict) -> tuple[float, ...]:
    row = next((r for r in report["artifacts"] if r["label"] == cfg.label), None)
    if row is None or row.get("status") != "ok" or not row.get("metrics"):
        why = (row or {}).get("error") or f"no {cfg.label} artifact in the report"
        trial.set_user_attr("error", first_line(Exception(why)))
        raise TrialFailed(f"trial {trial.number}: {why}")
    m = row["metrics"]
    batch = report["benchmark"]["batch_sizes"][0]
    p50 = next(l["p50_ms"] for l in m["latency"] if l["batch"] == batch)
    fp32 = next((r for r in report["artifacts"] if r["label"] == "fp32" and r.get("metrics")), None)
    ref_acc = report["reference"].get("accuracy")
    acc = m.get("accuracy")
    cosine = (row.get("fidelity") or {}).get("cosine_mean")
    budget = ctx.spec.budget
    violations = []
    drop = None if acc is None or ref_acc is None else 100 * (ref_acc - acc)
    if budget.max_accuracy_drop is not None:
        violations.append(float("inf") if drop is None else drop - budget.max_accuracy_drop)
    if budget.min_cosine is not None:
        violations.append(float("inf") if cosine is None else budget.min_cosine - cosine)
    # The objective divides by the reference workload timed in the same process (benchmarks.reference):
    # trials minutes apart on a shared machine compare better that way than raw.
    ref_ms = m.get("reference_p50_ms")
    latency = p50 / ref_ms if ref_ms else p50
    attrs = {"p50_ms": p50, "reference_p50_ms": ref_ms, "latency": latency, "size_bytes": m["size_bytes"], "accuracy": acc, "reference_accuracy": ref_acc,
             "accuracy_drop": drop, "cosine": cosine, "violations": violations,
             "feasible": all(v <= 0 for v in violations), "artifact": str(Path(trial.user_attrs["dir"]) / row["file"]),
             "fp32_p50_ms": _p50(fp32, batch) if fp32 else None}
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    values = {"latency": latency, "size": float(m["size_bytes"])}
    return tuple(values[o] for o in ctx.spec.objectives)


def _p50(row: dict, batch: int) -> float | None:
    return next((l["p50_ms"] for l in row["metrics"]["latency"] if l["batch"] == batch), None)


def _ranking(recipe: Recipe, spec: TuneSpec, target: str) -> list[str]:
    """Layers by quantization sensitivity, most sensitive first (only when the space
    has a fallback dimension): measured once per study on the evaluation data."""
    if spec.space.fallback is None:
        return []
    from compressor.flows.tune.sensitivity import ranking

    return ranking(recipe, target)


def _line(frozen) -> str:
    a = frozen.user_attrs
    if "p50_ms" not in a:
        return f"trial {frozen.number}: failed"
    acc = f"{100 * a['accuracy']:.2f}%" if a.get("accuracy") is not None else "n/a"
    return f"trial {frozen.number}: {a['p50_ms']:.3f} ms, {acc}{'' if a.get('feasible') else ' (over budget)'}"


class _progress:
    def __init__(self, enabled: bool, console, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, disable=not enabled)
        self.total = total

    def __enter__(self) -> tuple[Any, Any]:
        self.p.__enter__()
        return self.p, self.p.add_task("tuning", total=self.total)

    def __exit__(self, *exc) -> None:
        self.p.__exit__(*exc)

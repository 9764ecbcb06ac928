"""One point of the search space (`TrialConfig`), how a trial samples it, and the
ordinary recipe it stands for (steps: prune? -> qat? -> quantize). No torch, no optuna
at import: the sampler's trial object is passed in."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compressor.errors import RecipeError
from compressor.config.tune import SearchSpace, TuneSpec

PRUNE_STEP = 0.05  # ratios closer than this give the same channel counts on small layers
QAT_LABEL = "int8-qat"  # the label the qat step gives its artifact (compressor.pipeline_qat)


@dataclass(frozen=True)
class TrialConfig:
    prune_ratio: float = 0.0
    mode: str = "static"                 # static | dynamic | fp16 | qat
    calibration: str = "minmax"
    calibration_samples: int = 128
    per_channel: bool = True
    fallback: tuple[str, ...] = field(default_factory=tuple)  # layers kept in float
    qat_epochs: int = 0
    qat_lr: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fallback": list(self.fallback)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrialConfig":
        return cls(**{**d, "fallback": tuple(d.get("fallback", ()))})

    @property
    def label(self) -> str:
        return QAT_LABEL if self.mode == "qat" else "int8-tuned" if self.mode != "fp16" else "fp16-tuned"

    def describe(self) -> str:
        parts = [f"prune {self.prune_ratio:.2f}"] if self.prune_ratio > 0 else []
        if self.mode == "qat":
            parts.append(f"QAT {self.qat_epochs} ep lr {self.qat_lr:.1e}")
        else:
            parts.append(self.mode)
        if self.mode == "static":
            parts.append(f"{self.calibration}/{self.calibration_samples}")
        if self.mode != "fp16":
            parts.append("per-channel" if self.per_channel else "per-tensor")
        if self.fallback:
            parts.append(f"float: {','.join(self.fallback)}")
        return ", ".join(parts)


BASELINE = TrialConfig()  # plain static int8: min-max calibration, per-channel, nothing else


def suggest(trial: Any, space: SearchSpace, ranking: list[str]) -> TrialConfig:
    """Sample a configuration from an optuna trial. Parameters that do not apply to the
    sampled mode are not sampled (define-by-run: the space is conditional)."""
    ratio = 0.0
    if space.prune is not None:
        low, high = space.prune.ratio
        steps = math.floor((high - low) / PRUNE_STEP + 1e-9)
        ratio = trial.suggest_float("prune_ratio", low, low + steps * PRUNE_STEP, step=PRUNE_STEP) if steps else low
    epochs, lr = 0, None
    if space.qat is not None:
        epochs = trial.suggest_int("qat_epochs", *space.qat.epochs)
        if epochs > 0:
            lr = trial.suggest_float("qat_lr", *space.qat.lr, log=True)
    mode = "qat" if epochs > 0 else trial.suggest_categorical("mode", space.modes)
    calibration, samples = BASELINE.calibration, BASELINE.calibration_samples
    if mode == "static":
        calibration = trial.suggest_categorical("calibration", space.calibration)
        samples = trial.suggest_categorical("calibration_samples", space.calibration_samples)
    per_channel = trial.suggest_categorical("per_channel", space.per_channel) if mode != "fp16" else True
    fallback: tuple[str, ...] = ()
    # Float layers matter where convolutions are quantized (static, QAT); dynamic int8 leaves them float anyway.
    if space.fallback is not None and mode in ("static", "qat") and ranking:
        k = trial.suggest_int("fallback_layers", 0, min(space.fallback.max_layers, len(ranking)))
        fallback = tuple(ranking[:k])
    return TrialConfig(prune_ratio=round(ratio, 4), mode=mode, calibration=calibration, calibration_samples=samples,
                       per_channel=per_channel, fallback=fallback, qat_epochs=epochs, qat_lr=lr)


def check_space(recipe_dict: dict, spec: TuneSpec, target: str) -> None:
    """What the space asks of the recipe, checked before the first trial."""
    space, data = spec.space, recipe_dict.get("data") or {}
    trains = (space.prune is not None and space.prune.ratio[1] > 0 and space.prune.finetune_epochs > 0) or \
        (space.qat is not None)
    if trains and not data.get("train"):
        raise RecipeError("tune.space: pruning fine-tuning and QAT train on data.train; add "
                          "'data: {train: {source: ...}}' to the recipe or drop them from the space")
    if space.qat is not None and target not in ("onnx", "tflite", "torchscript"):
        raise RecipeError(f"tune.space.qat: the {target} target does not lower QAT models; "
                          "drop 'qat' from the space or tune onnx, tflite or torchscript")
    if spec.budget.max_accuracy_drop is not None and not data.get("evaluation"):
        raise RecipeError("tune.budget.max_accuracy_drop needs accuracy: add 'data: {evaluation: ...}' to the recipe")
    if any(m == "static" for m in space.modes) and not data.get("calibration"):
        raise RecipeError("tune.space.modes has static: add 'data: {calibration: ...}' to the recipe")


def derived_recipe(base: dict, cfg: TrialConfig, spec: TuneSpec | None, target: str, percentile: float) -> dict:
    """The recipe (as a plain dict) a trial runs: the base recipe's model, data and
    target options, the trial's steps. With `spec`, the tuner's lighter benchmark and no
    validation thresholds (the tune budget judges); without, the base's own (the winner
    written out as a recipe to run)."""
    out = {k: v for k, v in base.items() if k not in ("tune", "steps", "budgets", "output")}
    out["targets"] = {target: base["targets"][target]}
    steps: list[dict] = []
    if cfg.prune_ratio > 0:
        prune = spec.space.prune if spec else None
        epochs, lr = (prune.finetune_epochs, prune.lr) if prune else (4, 2e-3)
        steps.append({"prune": {"structured": {"ratio": cfg.prune_ratio},
                                **({"finetune": {"epochs": epochs, "lr": lr}} if epochs else {})}})
    if cfg.mode == "qat":
        steps.append({"qat": {"per_channel": cfg.per_channel, "keep_float": list(cfg.fallback), "compare_ptq": False,
                              "finetune": {"epochs": cfg.qat_epochs, "lr": cfg.qat_lr}}})
    else:
        variant: dict[str, Any] = {"name": cfg.label, "mode": cfg.mode}
        if cfg.mode == "static":
            variant.update(calibration=cfg.calibration, calibration_samples=cfg.calibration_samples)
            if cfg.calibration == "percentile":
                variant["percentile"] = percentile
        if cfg.mode != "fp16":
            variant["per_channel"] = cfg.per_channel
            if cfg.fallback:
                variant["exclude"] = list(cfg.fallback)
        steps.append({"quantize": {"variants": [variant]}})
    out["steps"] = steps
    if spec is not None:
        bench = dict(base.get("benchmark") or {})
        bench.update(runs=spec.benchmark.runs, warmup=spec.benchmark.warmup, warmup_s=spec.benchmark.warmup_s,
                     memory=spec.benchmark.memory, min_time_s=0.0,
                     batch_sizes=(bench.get("batch_sizes") or [1])[:1])
        out["benchmark"] = bench
        # The budget decides what counts; a threshold here would turn a useful data point into a failed trial.
        out["validation"] = {**(base.get("validation") or {}), "int8": {}, "fp16": {}}
    return out


def absolute_paths(recipe_dict: dict, base_dir: Path) -> dict:
    """Model and data paths made absolute, so that the recipe runs from anywhere."""
    d = {**recipe_dict, "model": dict(recipe_dict["model"])}
    for key in ("weights", "program"):
        if d["model"].get(key):
            d["model"][key] = str((base_dir / d["model"][key]).resolve())
    data = dict(d.get("data") or {})
    for key, src in data.items():
        if src and src.get("source", "").endswith(".npz"):
            data[key] = {**src, "source": str((base_dir / src["source"]).resolve())}
    if data:
        d["data"] = data
    return d


def to_yaml(recipe_dict: dict, header: str = "") -> str:
    return header + yaml.safe_dump(recipe_dict, sort_keys=False, default_flow_style=None, width=110)

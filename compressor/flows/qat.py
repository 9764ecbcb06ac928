"""The pipeline's side of the qat step: one QAT run per family of the recipe's targets
(x86 PT2E for ONNX, LiteRT PT2E for TFLite, FX for TorchScript), each fine-tuned from the
same float model with the same loop; the models and references the targets export and
validate against; the report's qat section.

Reference policy (as for pruning): each QAT artifact is validated against the converted
PyTorch QAT model it was exported from (fidelity measures the export); accuracy deltas
are against the float model (what quantization cost after QAT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.errors import DataError, RecipeError

if TYPE_CHECKING:
    from compressor.data import Dataset
    from compressor.distributed import World
    from compressor.model import Model
    from compressor.qat.run import QatResult
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import Recipe

QAT_LABEL, PTQ_LABEL = "int8-qat", "int8-ptq-same"


@dataclass
class QatOutcome:
    result: "QatResult"
    step: object
    sources: dict[tuple[str, str], "Model"] = field(default_factory=dict)  # (target, label) -> model


def qat_families() -> dict[str, str]:
    """Target name -> the quantizer family its QAT models are trained under, for the
    targets that lower QAT models (their modes include "qat")."""
    import targets

    return {name: t.quantizer_family for name in targets.names()
            if "qat" in (t := targets.get(name)).modes and t.quantizer_family is not None}


def apply_qat_steps(recipe: "Recipe", model: "Model", train: "Dataset | None", evaluation: "Dataset | None",
                    out: Path, resume: bool, world: "World", show_progress: bool) -> QatOutcome:
    from compressor.finetune import accuracy
    from compressor.qat import checkpoint as ckpt
    from compressor.qat.run import QatResult, plan_keep_float, qat_family

    if len(recipe.qat_steps) > 1:
        raise RecipeError("a recipe takes one qat step")
    step = recipe.qat_steps[0]
    if train is None:
        raise DataError("the qat step fine-tunes on training data: add 'data: {train: {source: ...}}' to the recipe")
    family_of = qat_families()
    families = sorted({family_of[t] for t in recipe.targets if t in family_of})
    if not families:
        raise RecipeError(f"the qat step needs a target that lowers QAT models ({', '.join(family_of)})")
    keep, scores = plan_keep_float(model, step, evaluation or train)
    result = QatResult(float_accuracy=accuracy(model.module, evaluation, model.input_names) if evaluation else None,
                       keep_float=keep, sensitivity=scores)
    weights = recipe.resolve(recipe.model.weights) if recipe.model.weights else None
    for family in families:
        path = out / "checkpoints" / f"qat-{family}.pt"
        if not resume:
            path.unlink(missing_ok=True)  # a fresh run starts from the float model
        fp = ckpt.fingerprint(recipe.model.model_dump(mode="json"), step.model_dump(mode="json"), family, weights)
        result.families[family] = qat_family(model, step, family, train, evaluation, list(keep), path, fp, resume,
                                             world, show_progress)
    outcome = QatOutcome(result=result, step=step)
    for tname in recipe.targets:
        fam = result.families.get(family_of.get(tname, ""))
        if fam is not None:
            outcome.sources[(tname, QAT_LABEL)] = fam.qat
            if fam.ptq is not None:
                outcome.sources[(tname, PTQ_LABEL)] = fam.ptq
    return outcome


def qat_variants(outcome: QatOutcome | None, target: str) -> list["QuantVariant"]:
    from compressor.config.quantize import QuantVariant

    if outcome is None:
        return []
    s = outcome.step
    return [QuantVariant(name=label, mode="qat", per_channel=s.per_channel,
                         exclude=list(outcome.result.keep_float))
            for label in (QAT_LABEL, PTQ_LABEL) if (target, label) in outcome.sources]


def qat_section(outcome: QatOutcome, rows: list[dict]) -> tuple[dict, dict]:
    res, step, family_of = outcome.result, outcome.step, qat_families()
    fams = {}
    for name, f in res.families.items():
        fams[name] = {"qat_accuracy_torch": f.qat_accuracy, "ptq_accuracy_torch": f.ptq_accuracy,
                      "finetune": {**f.history.to_json(), "train_wall_s": f.train_wall_s},
                      "checkpoint": f.checkpoint, "resumed_from_epoch": f.resumed_from_epoch}
    by_target = {}
    for r in rows:
        if r.get("label") in (QAT_LABEL, PTQ_LABEL) and r.get("metrics"):
            by_target.setdefault(r["target"], {})[r["label"]] = {
                "accuracy": r["metrics"].get("accuracy"), "p50_ms": _p50(r["metrics"])}
    section = {
        "weight_bits": step.weight_bits, "per_channel": step.per_channel, "float_accuracy": res.float_accuracy,
        "kept_float": res.keep_float, "sensitivity": res.sensitivity,
        "families": fams, "target_family": {t: family_of[t] for t in by_target},
        "by_target": by_target,
        "note": "QAT runs once per quantizer family (x86 PT2E for ONNX, LiteRT PT2E for TFLite, FX for "
                "TorchScript), each fine-tuned from the same float model with the same loop",
    }
    per_layer = {}
    if res.sensitivity:
        per_layer["sensitivity (relative output error)"] = res.sensitivity
    return section, per_layer


def _p50(metrics: dict) -> float | None:
    lat = metrics.get("latency") or []
    return lat[0].get("p50_ms") if lat else None

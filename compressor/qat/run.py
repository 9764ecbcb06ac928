"""The qat step: per family of targets, calibrate a fake-quantized copy of the float
model, fine-tune it with the shared loop (compressor.finetune), convert it to the
family's quantized graph; and the PTQ twin (same quantizer, calibration only) beside it.

Checkpoints go to `<run>/checkpoints/qat-<family>.pt` after every epoch; a resumed run
continues after the last completed epoch (a killed run loses at most one epoch).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from compressor.data import Dataset
from compressor.distributed import World, shard, wrap
from compressor.errors import DataError, TrainingError, first_line
from compressor.finetune import FinetuneHistory, TrainHooks, accuracy, finetune
from compressor.model import Model
from compressor.qat import checkpoint as ckpt
from compressor.config.qat import QatStep
from compressor.qat.graph import QatModule, calibrate, convert, prepare


@dataclass
class FamilyResult:
    family: str
    qat: Model
    ptq: Model | None
    qat_accuracy: float | None
    ptq_accuracy: float | None
    history: FinetuneHistory
    checkpoint: str
    resumed_from_epoch: int | None
    train_wall_s: float


@dataclass
class QatResult:
    float_accuracy: float | None
    keep_float: dict[str, str] = field(default_factory=dict)      # layer -> why
    sensitivity: dict[str, float] = field(default_factory=dict)   # layer -> relative output error
    families: dict[str, FamilyResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def qat_family(model: Model, step: QatStep, family: str, train: Dataset, evaluation: Dataset | None,
               keep_float: list[str], ckpt_path: Path, fingerprint: str, resume: bool,
               world: World = World(), show_progress: bool = False) -> FamilyResult:
    if train is None or not len(train):
        raise DataError("the qat step needs training data: add 'data: {train: ...}' to the recipe")
    # A checkpoint of another recipe or a damaged one is refused before minutes of preparing.
    saved = ckpt.load(ckpt_path, fingerprint) if resume and ckpt_path.is_file() else None
    names = model.input_names
    example = model.example_inputs(batch=2)  # not 1: torch.export would fix a size-1 batch axis
    calib = train.take(step.calibration_samples).inputs
    ptq = None
    if step.compare_ptq:
        observed = prepare(family, model.module, example, step.weight_bits, step.per_channel, keep_float, qat=False)
        calibrate(observed, family, calib, names)
        ptq = convert(observed, family)
    prepared = prepare(family, model.module, example, step.weight_bits, step.per_channel, keep_float, qat=True)
    calibrate(prepared, family, calib, names)
    qmod = QatModule(prepared, family)
    start, resumed = None, None
    if saved is not None:
        try:
            qmod.load_state_dict(saved["module"])
            start, resumed = saved["loop"], int(saved["loop"]["epoch"])
            if saved["frozen"].get("observers"):
                qmod.freeze_observers()
            if saved["frozen"].get("bn"):
                qmod.freeze_bn()
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:  # damaged inside
            raise TrainingError(f"checkpoint {ckpt_path} does not fit this run's model ({type(e).__name__}: "
                                f"{first_line(e)}); delete it to start over") from None
    last_good = {"epoch": resumed}

    def after_epoch(epoch: int, state: dict) -> None:
        if step.freeze_observers_after is not None and epoch >= step.freeze_observers_after:
            qmod.freeze_observers()
        if step.freeze_bn_after is not None and epoch >= step.freeze_bn_after:
            qmod.freeze_bn()
        if world.is_main:
            ckpt.save(ckpt_path, fingerprint, family, qmod.state_dict(), state,
                      {"observers": qmod.observers_frozen, "bn": qmod.bn_frozen})
        last_good["epoch"] = epoch

    # Freezing "after 0 epochs" means from the start.
    if step.freeze_observers_after == 0:
        qmod.freeze_observers()
    if step.freeze_bn_after == 0:
        qmod.freeze_bn()
    teacher = copy.deepcopy(model.module).eval() if step.finetune.distill is not None else None
    hooks = TrainHooks(after_epoch=after_epoch, start=start, shard=shard(world))
    t0 = time.perf_counter()
    try:
        history = finetune(wrap(qmod, world), train, step.finetune, names, evaluation, teacher, hooks,
                           show_progress)
    except TrainingError as e:
        kept = (f"the last good checkpoint (epoch {last_good['epoch']}) is kept at {ckpt_path}"
                if last_good["epoch"] else "no epoch completed, so there is no checkpoint")
        raise TrainingError(f"qat ({family}): {e}; {kept}") from None
    wall = time.perf_counter() - t0
    qmod.eval()
    converted = convert(prepared, family)
    qat_model = _as_model(model, converted, f"qat ({family})")
    ptq_model = _as_model(model, ptq, f"ptq ({family}, same quantizer)") if ptq is not None else None
    return FamilyResult(family=family, qat=qat_model, ptq=ptq_model,
                        qat_accuracy=accuracy(converted, evaluation, names) if evaluation is not None else None,
                        ptq_accuracy=accuracy(ptq, evaluation, names) if evaluation is not None and ptq else None,
                        history=history, checkpoint=str(ckpt_path), resumed_from_epoch=resumed, train_wall_s=wall)


def _as_model(model: Model, module: torch.nn.Module, note: str) -> Model:
    return Model(module=module, inputs=model.inputs, output_names=model.output_names, source=model.source,
                 notes=[*model.notes, note])


def layer_names(module: torch.nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d,
                                                                     torch.nn.Linear))]


def sensitivity(model: Model, step: QatStep, data: Dataset, skip: list[str]) -> dict[str, float]:
    """Relative output error (||y_q - y||^2 / ||y||^2 on evaluation inputs) with only that
    layer quantized (x86 quantizer, PTQ): a ranking of which layers quantization hurts."""
    names = model.input_names
    samples = data.take(step.sensitivity.samples if step.sensitivity else 256).inputs
    args = [torch.from_numpy(samples[k]) for k in names]
    with torch.no_grad():
        ref = model.module(*args)
    example = model.example_inputs(batch=2)
    scores = {}
    for layer in layer_names(model.module):
        if layer in skip:
            continue
        others = [n for n in layer_names(model.module) if n != layer]
        observed = prepare("x86", model.module, example, step.weight_bits, step.per_channel, others, qat=False)
        calibrate(observed, "x86", samples, names)
        with torch.no_grad():
            out = convert(observed, "x86")(*args)
        scores[layer] = float(((out - ref) ** 2).sum() / (ref ** 2).sum().clamp_min(1e-12))
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def plan_keep_float(model: Model, step: QatStep, data: Dataset | None) -> tuple[dict[str, str], dict[str, float]]:
    from compressor.errors import RecipeError

    known = layer_names(model.module)
    modules = {n for n, _ in model.module.named_modules() if n}
    for name in step.keep_float:
        if name not in modules:
            import difflib

            close = difflib.get_close_matches(name, known, n=2, cutoff=0.5)
            raise RecipeError(f"qat step: keep_float names {name!r}, which is not a layer of the model"
                              + (f"; did you mean {', '.join(repr(c) for c in close)}?" if close
                                 else f"; layers: {', '.join(known[:8])}"))
    keep = {n: "named in the recipe (keep_float)" for n in step.keep_float}
    scores: dict[str, float] = {}
    if step.sensitivity is not None:
        if data is None:
            raise DataError("the qat sensitivity pass needs data.evaluation or data.train")
        scores = sensitivity(model, step, data, list(keep))
        for name in list(scores)[:step.sensitivity.keep_most_sensitive]:
            keep[name] = f"most sensitive (relative output error {scores[name]:.2e} with only it quantized)"
    return keep, scores

"""The shared training loop: fine-tuning after pruning, and the loop QAT reuses.

`FinetuneConfig` (compressor.config.finetune) is plain data, a recipe block any step can
embed as `finetune:`; `finetune(module, train, config, ...)` runs it. What a step needs beyond plain training
(re-applying pruning masks after each update, a gradual sparsity schedule, freezing
observers in QAT) goes through `TrainHooks`, so that the loop itself stays one loop.

torch is imported inside the functions: `compressor --help` must not pay for torch.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from compressor.config.finetune import Augmentation, FinetuneConfig, Schedule
from compressor.errors import DataError, TrainingError

SMALL_MODEL_PARAMS = 1_000_000

if TYPE_CHECKING:
    import torch

    from compressor.data import Dataset


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_accuracy: float | None
    eval_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class FinetuneHistory:
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    bn_recalibrated: bool = False
    wall_s: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TrainHooks:
    """What a step adds to the loop. All optional.

    after_step(step, total_steps): after each optimizer update (masks, schedules).
    selectable(epoch): whether this epoch's weights may be kept as the best ones; a
    gradual schedule is not finished before its last step, so earlier epochs are not.
    penalty(module): an extra loss term (a regulariser the step owns).
    after_epoch(epoch, state): after each epoch, with the loop's own state (optimizer,
    scheduler and random-generator states, history): QAT freezes observers and BN and
    writes a checkpoint from here.
    start: such a state, to resume after its epoch instead of starting at the first.
    shard(indices): this process's share of a global batch (distributed training).
    """

    after_step: Callable[[int, int], None] | None = None
    selectable: Callable[[int], bool] | None = None
    penalty: Callable[["torch.nn.Module"], "torch.Tensor"] | None = None
    after_epoch: Callable[[int, dict], None] | None = None
    start: dict | None = None
    shard: Callable[[np.ndarray], np.ndarray] | None = None


def finetune(module: "torch.nn.Module", train: "Dataset", config: FinetuneConfig, input_names: list[str],
             evaluation: "Dataset | None" = None, teacher: "torch.nn.Module | None" = None,
             hooks: TrainHooks | None = None, show_progress: bool = False) -> FinetuneHistory:
    """Train `module` in place; it comes back in eval mode, holding the best selectable
    epoch's weights when early stopping is on."""
    import torch

    threads = config.threads or (1 if sum(p.numel() for p in module.parameters()) < SMALL_MODEL_PARAMS
                                 else torch.get_num_threads())
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(module, train, config, input_names, evaluation, teacher, hooks or TrainHooks(),
                      show_progress)
    finally:
        torch.set_num_threads(saved_threads)


def _train(module, train, config: FinetuneConfig, input_names, evaluation, teacher, hooks: TrainHooks,
           show_progress: bool) -> FinetuneHistory:
    import torch
    import torch.nn.functional as F

    if train.labels is None and (teacher is None or config.distill is None):
        raise DataError("fine-tuning needs labels in data.train, or distillation ('distill:') from the "
                        "unpruned model")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    n = len(train)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = steps_per_epoch * config.epochs
    opt = _optimizer(module, config)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config.schedule, steps_per_epoch, total))
    hist = FinetuneHistory()
    best_acc, best_state, stale = -1.0, None, 0
    start = time.perf_counter()
    if teacher is not None:
        teacher.eval()
    first = 0
    if hooks.start is not None:  # resume: the loop continues exactly where the checkpoint left it
        first = _restore(hooks.start, opt, sched, rng, hist)
    with _progress(show_progress) as progress:
        task = progress.add_task("fine-tune", total=total, loss=float("nan"), acc="-")
        step = first * steps_per_epoch
        progress.update(task, advance=step)
        for epoch in range(first, config.epochs):
            t0 = time.perf_counter()
            module.train()
            order = rng.permutation(n)
            loss_sum, correct, seen = 0.0, 0, 0
            for i in range(steps_per_epoch):
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                if hooks.shard is not None:
                    idx = hooks.shard(idx)
                args = _augment([torch.from_numpy(train.inputs[k][idx]) for k in input_names], config.augment, rng)
                logits = module(*args)
                labels = None if train.labels is None else torch.from_numpy(train.labels[idx]).long()
                loss = _loss(logits, labels, args, teacher, config, F)
                if config.l1:
                    loss = loss + config.l1 * _l1(module)
                if hooks.penalty is not None:
                    loss = loss + hooks.penalty(module)
                if not torch.isfinite(loss.detach()):
                    # Every later update would spread the NaN into all weights: stop here.
                    raise TrainingError(f"the training loss is {float(loss.detach()):.4g} at step {step + 1} "
                                        f"(epoch {epoch + 1}); lower the learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if hooks.after_step is not None:
                    hooks.after_step(step, total)
                loss_sum += float(loss.detach()) * len(idx)
                if labels is not None:
                    correct += int((logits.detach().argmax(-1) == labels).sum())
                seen += len(idx)
                progress.update(task, advance=1, loss=loss_sum / seen,
                                acc=f"{100 * correct / seen:.1f}%" if labels is not None else "-")
            eval_acc = accuracy(module, evaluation, input_names) if evaluation is not None else None
            hist.epochs.append(EpochRecord(epoch=epoch + 1, loss=loss_sum / seen,
                                           train_accuracy=correct / seen if labels is not None else None,
                                           eval_accuracy=eval_acc, lr=opt.param_groups[0]["lr"],
                                           seconds=time.perf_counter() - t0))
            if eval_acc is not None:
                progress.update(task, description=f"fine-tune (eval {100 * eval_acc:.1f}%)")
            if hooks.after_epoch is not None:
                hooks.after_epoch(epoch + 1, {"epoch": epoch + 1, "optimizer": opt.state_dict(),
                                              "scheduler": sched.state_dict(), "rng": rng.bit_generator.state,
                                              "torch_rng": torch.get_rng_state(),
                                              "history": [asdict(r) for r in hist.epochs]})
            if config.early_stopping is None or eval_acc is None:
                continue
            if hooks.selectable is not None and not hooks.selectable(epoch + 1):
                continue
            if eval_acc > best_acc + config.early_stopping.min_delta or best_state is None:
                best_acc, best_state, stale = eval_acc, copy.deepcopy(module.state_dict()), 0
                hist.best_epoch = epoch + 1
            else:
                stale += 1
                if stale >= config.early_stopping.patience:
                    hist.stopped_early = True
                    break
    if best_state is not None:
        module.load_state_dict(best_state)
    if config.bn_recalibration:
        hist.bn_recalibrated = recalibrate_bn(module, train, input_names, config.bn_recalibration,
                                              config.batch_size, config.seed)
    module.eval()
    hist.wall_s = time.perf_counter() - start
    return hist


def _restore(state: dict, opt, sched, rng: np.random.Generator, hist: FinetuneHistory) -> int:
    import torch

    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    hist.epochs = [EpochRecord(**r) for r in state["history"]]
    return int(state["epoch"])


def accuracy(module: "torch.nn.Module", data: "Dataset", input_names: list[str], batch: int = 256) -> float | None:
    """Top-1 accuracy of `module` on `data` (None without labels)."""
    import torch

    if data.labels is None:
        return None
    was_training = module.training
    module.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(data), batch):
            out = module(*[torch.from_numpy(data.inputs[k][s:s + batch]) for k in input_names])
            correct += int((out.reshape(out.shape[0], -1).argmax(-1).numpy() == data.labels[s:s + batch]).sum())
    module.train(was_training)
    return correct / len(data)


def recalibrate_bn(module: "torch.nn.Module", data: "Dataset", input_names: list[str], batches: int,
                   batch_size: int, seed: int = 0) -> bool:
    """Re-estimate BatchNorm running statistics with a cumulative average over `batches`
    training batches: after pruning or quantization they describe a network that is gone."""
    import torch

    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # None: a plain average over every batch seen
    rng = np.random.default_rng(seed)
    module.train()
    with torch.no_grad():
        for _ in range(batches):
            idx = rng.choice(len(data), size=min(batch_size, len(data)), replace=False)
            module(*[torch.from_numpy(data.inputs[k][idx]) for k in input_names])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    module.eval()
    return True


def _loss(logits, labels, args, teacher, config: FinetuneConfig, F):
    import torch

    hard = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing) if labels is not None else None
    if teacher is None or config.distill is None:
        return hard
    with torch.no_grad():
        t_logits = teacher(*args)
    T = config.distill.temperature
    # Hinton et al.: the soft term is scaled by T^2 so its gradients keep their size as T grows.
    soft = F.kl_div(F.log_softmax(logits / T, -1), F.softmax(t_logits / T, -1), reduction="batchmean") * T * T
    if hard is None:
        return soft
    return config.distill.alpha * soft + (1 - config.distill.alpha) * hard


def _l1(module) -> "torch.Tensor":
    import torch

    return sum(m.weight.abs().sum() for m in module.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear)))


def _optimizer(module, config: FinetuneConfig):
    import torch

    params = [p for p in module.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def _lr_lambda(s: Schedule, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    warm = int(round(s.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        epoch = step / steps_per_epoch
        if s.kind == "step":
            return s.gamma ** int(epoch // s.step_epochs)
        if s.kind == "exponential":
            return s.gamma ** epoch
        if s.kind == "cosine":
            t = (step - warm) / max(1, total - warm)
            return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 1.0

    return factor


def _augment(args: list, aug: Augmentation | None, rng: np.random.Generator) -> list:
    import torch

    if aug is None:
        return args
    out = []
    for x in args:
        if not (x.is_floating_point() and x.ndim == 4):
            out.append(x)
            continue
        if aug.shift:
            s = aug.shift
            padded = torch.nn.functional.pad(x, (s, s, s, s))
            h, w = x.shape[2:]
            offs = rng.integers(0, 2 * s + 1, size=(len(x), 2))
            x = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])
        if aug.hflip:
            flip = torch.from_numpy(rng.random(len(x)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if aug.noise:
            x = x + aug.noise * torch.randn_like(x)
        out.append(x)
    return out


class _NoProgress:
    def add_task(self, *a, **k) -> int:
        return 0

    def update(self, *a, **k) -> None:
        pass


def _progress(enabled: bool):
    import contextlib

    if not enabled:
        return contextlib.nullcontext(_NoProgress())
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]}"), TimeElapsedColumn(),
                    transient=False)

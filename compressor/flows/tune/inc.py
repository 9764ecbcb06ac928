"""`engine: inc`: Intel Neural Compressor's `autotune` over its static int8
configurations, judged by our accuracy on the evaluation data, on the PyTorch side.

INC 3.x without IPEX quantizes a torch.export graph with PyTorch's PT2E x86 quantizer
(X86InductorQuantizer); the converted graph carries quantize/dequantize nodes, which the
ONNX target exports as QDQ with INC's scales, as it does for QAT graphs of the same
family. INC stops at the first configuration within its (relative) accuracy loss. The
result is exported, validated and measured like any artifact, next to plain static int8
from our own pipeline, in the same tune directory and report format.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.errors import CompressorError, RecipeError, UnsupportedOpError, first_line
from compressor.config.tune import TuneSpec

if TYPE_CHECKING:
    from compressor.config.recipe import Recipe

INC_TARGETS = ("onnx",)  # the targets that lower a converted PT2E x86 graph
LABEL = "int8-inc"


def _inc():
    try:
        from neural_compressor.torch import quantization
        from neural_compressor.torch.export import export
    except ImportError:
        raise RecipeError("tune.engine inc needs Intel Neural Compressor: pip install neural-compressor-pt "
                          "(or use engine: optuna)") from None
    return quantization, export


def config_set():
    """INC's static int8 search space on the PT2E path: activation symmetry and
    calibration algorithm, weight granularity (8 configurations, tried in order)."""
    quantization, _ = _inc()
    return [quantization.INT8StaticQuantConfig(act_sym=[False, True], act_algo=["minmax", "kl"],
                                               w_granularity=["per_channel", "per_tensor"])]


def run_inc(recipe: "Recipe", spec: TuneSpec, target: str, out: Path, show_progress: bool = True,
            console=None) -> dict:
    import logging

    import torch

    from compressor.data import load_dataset
    from compressor.model import Model, load_model
    from compressor.flows.tune.context import TuneContext
    from compressor.flows.tune.space import BASELINE

    if target not in INC_TARGETS:
        raise RecipeError(f"tune.engine inc hands PT2E x86 graphs to the onnx target, not {target}; "
                          "tune onnx or use engine: optuna")
    if spec.budget.max_accuracy_drop is None:
        raise RecipeError("tune.engine inc tunes for accuracy: give tune.budget.max_accuracy_drop")
    quantization, export = _inc()
    logging.getLogger("neural_compressor").setLevel(logging.ERROR)
    model = load_model(recipe.model, recipe.base_dir)
    tokenizer = getattr(model, "tokenizer", None)  # an hf source's own, for text data
    calibration = load_dataset(recipe.data.calibration, model.inputs, recipe.base_dir, tokenizer)
    evaluation = load_dataset(recipe.data.evaluation, model.inputs, recipe.base_dir, tokenizer)
    names = model.input_names
    calib = [torch.from_numpy(calibration.inputs[k]) for k in names]
    fp32_acc = accuracy(model.module, evaluation, names)

    evaluations: list[float] = []

    def eval_fn(m) -> float:
        acc = accuracy(m, evaluation, names)
        evaluations.append(acc)
        return acc

    def run_fn(m) -> None:
        with torch.no_grad():
            for i in range(0, len(calib[0]), 64):
                m(*[x[i:i + 64] for x in calib])

    example = model.example_inputs(batch=2)  # not 1: a size-1 batch axis would be fixed
    batch = torch.export.Dim("batch", min=1, max=4096)
    t0 = time.perf_counter()
    try:
        graph = export(model.module, example, dynamic_shapes=tuple({0: batch} for _ in example))
        # INC's loss is relative to the float accuracy; the budget is in points.
        loss = spec.budget.max_accuracy_drop / 100 / max(fp32_acc, 1e-9)
        tuning = quantization.TuningConfig(config_set=config_set(), tolerable_loss=loss, max_trials=spec.trials)
        quantized = quantization.autotune(graph, tuning, eval_fn=eval_fn, run_fn=run_fn, example_inputs=example)
    except CompressorError:
        raise
    except Exception as e:
        raise UnsupportedOpError(f"Intel Neural Compressor could not quantize the model: {first_line(e)}; "
                                 "use engine: optuna") from None
    tune_s = time.perf_counter() - t0
    configs = _expanded()
    ctx = TuneContext(recipe=recipe, spec=spec, target=target, out=out, base={}, ranking=[], target_options={})
    from compressor.flows.tune.inc_report import inc_report

    inc_model = None if quantized is None else Model(module=quantized, inputs=model.inputs,
                                                     output_names=model.output_names, source=model.source,
                                                     notes=[*model.notes, "Intel Neural Compressor autotune"])
    return inc_report(recipe, ctx, inc_model, fp32_acc, evaluations[1:], configs, tune_s, BASELINE)


def accuracy(module, data, names: list[str]) -> float:
    """Top-1 on `data`. No .eval(): an exported graph refuses train()/eval() (ours are built in eval mode)."""
    import numpy as np
    import torch

    from compressor.model import flatten_outputs

    preds = []
    with torch.no_grad():
        for i in range(0, len(data), 256):
            out = flatten_outputs(module(*[torch.from_numpy(data.inputs[k][i:i + 256]) for k in names]))[0]
            preds.append(out.reshape(out.shape[0], -1).argmax(-1).numpy())
    return float((np.concatenate(preds) == data.labels).mean())


def _expanded() -> list[dict]:
    """The configurations in the order autotune tries them (its default sequential sampler)."""
    from neural_compressor.common.base_tuning import ConfigSet

    cs = ConfigSet.from_fwk_configs(config_set())
    keys = ("act_sym", "act_algo", "w_granularity")
    return [{k: cs[i].to_dict().get(k) for k in keys} for i in range(len(cs))]

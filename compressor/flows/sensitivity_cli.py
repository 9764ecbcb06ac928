"""`compressor sensitivity RECIPE --target T`: the per-layer ranking, on its own."""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings

from compressor.errors import DataError, RecipeError


def sensitivity_command(recipe, target: str, top: int | None, granularity: str, as_json: bool,
                        mode: str = "simulated") -> int:
    import targets
    from compressor.data import load_dataset
    from compressor.model import load_model
    from compressor.reference import reference_for
    from compressor.sensitivity import layer_sensitivity

    simulated = [n for n in targets.names() if targets.get(n).quantizer_family is not None]
    if target not in simulated:
        raise RecipeError(f"--target {target!r}: the sensitivity pass simulates {', '.join(simulated)}")
    data = recipe.data
    if data.calibration is None:
        raise DataError("the sensitivity pass needs calibration data: add 'data: {calibration: ...}' to the recipe")
    model = load_model(recipe.model, recipe.base_dir)
    tokenizer = getattr(model, "tokenizer", None)  # an hf source's own, for text data
    calibration = load_dataset(data.calibration, model.inputs, recipe.base_dir, tokenizer)
    evaluation = load_dataset(data.evaluation, model.inputs, recipe.base_dir, tokenizer) if data.evaluation else None
    # The first int8 variant's settings (static before dynamic): its mode is what gets simulated.
    variant = next((v for v in recipe.quant_variants if v.mode == "static"),
                   next((v for v in recipe.quant_variants if v.mode == "dynamic"), None))
    samples = variant.fallback.sensitivity_samples if variant is not None and variant.fallback else 128
    ref = reference_for(model, evaluation, samples)
    labels = evaluation.labels[:samples] if evaluation is not None and evaluation.labels is not None else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if mode == "target":
            scores = _on_target(recipe, model, target, variant, calibration, ref, labels, granularity)
        else:
            scores = layer_sensitivity(model, targets.get(target).quantizer_family, calibration, ref.inputs,
                                       labels, granularity=granularity,
                                       per_channel=variant.per_channel if variant else True,
                                       calibration_samples=variant.calibration_samples if variant else 128,
                                       mode=variant.mode if variant else "static")
    shown = scores[:top] if top else scores
    if as_json:
        print(json.dumps({"target": target, "granularity": granularity, "mode": mode,
                          "samples": len(next(iter(ref.inputs.values()))),
                          "layers": [s.to_json() for s in shown]}, indent=2))
        return 0
    print(table(shown, target, granularity, labels is not None, mode))
    return 0


def _on_target(recipe, model, target: str, variant, calibration, ref, labels, granularity: str):
    """Real per-layer lowerings from a scratch fp32 export of the target."""
    import tempfile
    from pathlib import Path

    import targets
    from compressor.flows.fallback.choose import target_sensitivity
    from compressor.config.quantize import QuantVariant
    from compressor.sensitivity import candidates

    if target != "onnx":
        raise RecipeError(f"--mode target (real per-layer lowerings) is offered for onnx; use --mode simulated "
                          f"for {target}")
    variant = variant or QuantVariant(mode="static")
    tgt = targets.get(target)
    with tempfile.TemporaryDirectory(prefix="compressor-sensitivity-") as d:
        base = tgt.export(model, None, Path(d) / "fp32", recipe.targets.get(target, {}), None)
        return target_sensitivity(tgt, model, variant, calibration, base, ref.inputs, ref.outputs, labels,
                                  candidates(model, granularity))


def table(scores, target: str, granularity: str, with_accuracy: bool, mode: str = "simulated") -> str:
    """At most 80 columns: rank, name, kind, cosine, relative error, accuracy drop."""
    name_w = max([len("layer")] + [len(s.name) for s in scores])
    name_w = min(name_w, 30)
    kind_w = min(max([4] + [len(s.kind) for s in scores]), 16)
    head = f"{'#':>3}  {granularity:<{name_w}}  {'kind':<{kind_w}}  {'cosine':>9}  {'rel err':>9}"
    head += f"  {'acc drop':>8}" if with_accuracy else ""
    how = "simulated quantizer" if mode == "simulated" else "real lowering"
    lines = [f"{target} int8, one {granularity} at a time ({how}), worst first",
             head]
    for i, s in enumerate(scores, 1):
        name = s.name if len(s.name) <= name_w else "…" + s.name[-(name_w - 1):]
        cos = f"{s.cosine:.6f}" if math.isfinite(s.cosine) else "nan"
        line = f"{i:>3}  {name:<{name_w}}  {s.kind[:kind_w]:<{kind_w}}  {cos:>9}  {s.rel_error:>9.2e}"
        if with_accuracy:
            line += f"  {s.accuracy_drop:>+5.2f} pt" if s.accuracy_drop is not None else f"  {'-':>8}"
        lines.append(line)
    return "\n".join(lines)

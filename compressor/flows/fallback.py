"""Int8 that holds: lower a variant, check it on the target's own runtime, and when it
misses the budget keep the fewest, most sensitive layers in float; when no float set
works, walk the target's other lowerings. Every try is recorded; only the chosen
artifact is published (attempts live in a scratch directory beside it), and a model
that cannot be lowered within the budget is refused with one line naming the worst
layer and the precisions that do hold.

Like the pipeline, this module joins compressor/ and targets/: each probe is a real
export plus a run of the target's runtime on the reference inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from compressor.data import Dataset
from compressor.errors import (CompressorError, DataError, FidelityError, RecipeError, UnsupportedOpError,
                               first_line)
from compressor.fsutil import publish, staging_dir
from compressor.model import Model
from compressor.qat.quantizers import release_model_caches
from compressor.config.quantize import FallbackSpec, QuantVariant

if TYPE_CHECKING:
    from compressor.reference import Reference
    from compressor.sensitivity import LayerScore
    from targets.base import Artifact, Target

PRUNE_AT_MOST = 12        # float sets larger than this skip the one-by-one pruning pass
LATENCY_AT_MOST = 8       # float sets larger than this get no per-layer latency cost
# ONNX op types int8 commonly breaks (gates, normalisations, smooth activations).
ONNX_CASUALTIES = ("HardSigmoid", "HardSwish", "Sigmoid", "Softmax", "LayerNormalization", "Gelu", "Erf", "Mul")
# The same kinds as PyTorch modules, for the torch-based targets.
TORCH_CASUALTIES = ("Hardsigmoid", "Hardswish", "Sigmoid", "SiLU", "Softmax", "LayerNorm", "GELU")


class FallbackRefused(FidelityError):
    """No lowering within the float-layer bound meets the variant's budget."""


class LoweringRefused(UnsupportedOpError):
    """Every lowering of the variant failed to export."""


@dataclass
class Lowering:
    label: str
    variant: dict[str, Any] = field(default_factory=dict)   # QuantVariant fields changed
    options: dict[str, Any] = field(default_factory=dict)   # target options changed


@dataclass
class FallbackOutcome:
    artifact: "Artifact | None"
    fidelity: dict | None
    float_layers: list[str]
    lowering: str
    attempts: list[dict]
    refused: str | None
    sensitivity: list["LayerScore"] = field(default_factory=list)
    sensitivity_mode: str = "simulated"
    latency_ms: dict[str, float | None] = field(default_factory=dict)   # float layer -> ms it costs
    accuracy: float | None = None
    error_type: type[CompressorError] = FallbackRefused
    notes: list[str] = field(default_factory=list)

    def error(self) -> CompressorError:
        return self.error_type(self.refused or "fallback refused")

    def to_json(self, budget: FallbackSpec) -> dict:
        scores = {s.name: s for s in self.sensitivity}
        return {
            "budget": budget.model_dump(), "lowering": self.lowering, "refused": self.refused,
            "sensitivity_mode": self.sensitivity_mode,
            "float_layers": [{"name": n, "kind": scores[n].kind if n in scores else None,
                              "cosine_alone": scores[n].cosine if n in scores else None,
                              "latency_ms": self.latency_ms.get(n)} for n in self.float_layers],
            "accuracy": self.accuracy, "attempts": self.attempts, "notes": self.notes,
        }


def lower_with_fallback(target: "Target", model: Model, variant: QuantVariant, options: dict, calibration,
                        base: "Artifact", reference: "Reference", out: Path, budget: FallbackSpec,
                        evaluation: Dataset | None = None, progress: Callable[[str], None] | None = None,
                        threads: int = 1, measure_latency: bool = True,
                        ranking: list["LayerScore"] | None = None) -> FallbackOutcome:
    """Export `variant` to `out` (a path without suffix) meeting `budget`, or refuse."""
    if variant.mode not in ("static", "dynamic"):
        raise RecipeError(f"{variant.label}: fallback re-lowers the float model, so it works for static and "
                          f"dynamic int8, not {variant.mode}")
    labels = evaluation.labels if evaluation is not None else None
    if budget.max_accuracy_drop is not None and (labels is None or reference.accuracy is None):
        raise RecipeError(f"{variant.label}: fallback.max_accuracy_drop needs labelled evaluation data "
                          "(data.evaluation); or budget on min_cosine only")
    say = progress or (lambda _msg: None)
    out = Path(out)
    with staging_dir(out.parent, out.name + ".fallback") as work:
        probe = _Prober(target, model, variant, options, calibration, base, reference, evaluation, budget,
                        work, out.name, threads)
        say(f"{variant.label}: default lowering")
        first = probe([], Lowering("default"))
        if first.ok:
            return _finish(probe, first, [], "default", ranking or [], "none needed", out, measure_latency)
        order, in_model_order, ranking, mode = _order(model, target, variant, calibration, base, reference, labels,
                                                      budget, ranking, say)
        lowerings = [Lowering("default")] + (alternatives(target, variant, base, model) if budget.alternatives else [])
        for i, low in enumerate(lowerings):
            say(f"{variant.label}: {low.label}, float-layer search")
            found = _search(probe, low, order, budget, skip_plain=i == 0)
            if found is None or len(found.float_layers) > PRUNE_AT_MOST:
                # The ranking did not single out a few layers (each alone is harmless, or the
                # simulation misses the target's own kernels): look for one short run of
                # consecutive layers instead, by real exports.
                say(f"{variant.label}: {low.label}, window search in model order")
                window = _window(probe, low, in_model_order, budget)
                if window is not None and (found is None or len(window.float_layers) < len(found.float_layers)):
                    found = window
            if found is not None:
                return _finish(probe, found, found.float_layers, low.label, ranking, mode, out, measure_latency)
        return _refuse(probe, variant, target, ranking, mode)


# --- probing ------------------------------------------------------------------------


@dataclass
class _Probe:
    lowering: str
    float_layers: list[str]
    ok: bool
    cosine: float | None = None
    accuracy: float | None = None
    error: str | None = None
    seconds: float = 0.0
    artifact: "Artifact | None" = None
    fidelity: Any = None
    crashed: type | None = None

    def record(self) -> dict:
        return {"lowering": self.lowering, "float_layers": list(self.float_layers), "cosine": self.cosine,
                "accuracy": self.accuracy, "ok": self.ok, "error": self.error, "seconds": round(self.seconds, 2)}


class _Prober:
    """One probe = a real export with a float set and lowering, then the target's runtime
    on the reference inputs. Results are cached per (lowering, float set)."""

    def __init__(self, target, model, variant, options, calibration, base, reference, evaluation, budget,
                 work: Path, stem: str, threads: int) -> None:
        self.target, self.model, self.variant, self.options = target, model, variant, options
        self.calibration, self.base, self.reference, self.evaluation = calibration, base, reference, evaluation
        self.budget, self.work, self.stem, self.threads = budget, work, stem, threads
        self.attempts: list[dict] = []
        self.cache: dict[tuple, _Probe] = {}

    def variant_for(self, float_layers: list[str], low: Lowering) -> QuantVariant:
        data = {**self.variant.model_dump(), **low.variant, "fallback": None}
        data["exclude"] = list(dict.fromkeys([*self.variant.exclude, *float_layers]))
        if data["mode"] == "fp16":  # nothing to keep in float: the whole model is float
            data["exclude"], data["exclude_ops"] = [], []
        return QuantVariant.model_validate(data)

    def __call__(self, float_layers: list[str], low: Lowering, record: bool = True) -> _Probe:
        key = (low.label, tuple(sorted(float_layers)))
        if key in self.cache:
            return self.cache[key]
        t0 = time.perf_counter()
        res = _Probe(low.label, list(float_layers), ok=False)
        folder = self.work / f"a{len(self.cache)}"
        try:
            art = self.target.export(self.model, self.variant_for(float_layers, low), folder / self.stem,
                                     {**self.options, **low.options}, self.calibration, base=self.base)
        except (RecipeError, DataError):
            raise  # the user's recipe, not the lowering, is wrong
        except Exception as e:  # an exporter that crashes is one more failed lowering
            res.error, res.crashed = first_line(e), type(e)
        else:
            self._score(res, art)
        release_model_caches()  # the quantizers' helpers would keep every probe's model alive
        res.seconds = time.perf_counter() - t0
        self.cache[key] = res
        if record:
            self.attempts.append(res.record())
        return res

    def _score(self, res: _Probe, art) -> None:
        from targets.validate import validate_artifact

        crash = _runtime_crash(self.target.name, art.path, self.reference.inputs, self.work)
        if crash is not None:  # e.g. ONNX Runtime segfaults creating a session for dynamic int8 ViT
            res.error = crash
            _remove(art)
            return
        try:
            fid, res.accuracy = validate_artifact(self.target, art, self.reference.inputs, self.reference.outputs,
                                                  self.threads, evaluation=self.evaluation)
        except CompressorError as e:
            res.error = first_line(e)
            _remove(art)
            return
        res.cosine = fid.cosine if np.isfinite(fid.cosine) else None
        res.fidelity, res.artifact = fid, art
        res.ok, why = self.meets(fid.cosine, res.accuracy)
        if not res.ok:
            res.error = why
            _remove(art)

    def meets(self, cosine: float, accuracy: float | None) -> tuple[bool, str | None]:
        b = self.budget
        if not np.isfinite(cosine):
            return False, "non-finite outputs"
        if b.min_cosine is not None and cosine < b.min_cosine:
            return False, f"cosine {cosine:.5f} < {b.min_cosine:g}"
        if b.max_accuracy_drop is not None and accuracy is not None:
            drop = 100 * (self.reference.accuracy - accuracy)
            if drop > b.max_accuracy_drop:
                return False, f"accuracy drop {drop:.2f} points > {b.max_accuracy_drop:g}"
        return True, None


def _remove(art) -> None:
    for f in art.files:
        f.unlink(missing_ok=True)


# --- the search ---------------------------------------------------------------------


def _search(probe: _Prober, low: Lowering, order: list[str], budget: FallbackSpec,
            skip_plain: bool = False) -> _Probe | None:
    """The fewest leading layers of `order` that meet the budget (doubling, then
    bisection), then drop any of them the budget holds without."""
    limit = len(order) if budget.max_float_layers is None else min(len(order), budget.max_float_layers)
    if not skip_plain:
        plain = probe([], low)
        if plain.ok:
            return plain
        if plain.crashed is not None and limit == 0:
            return None
    if limit == 0:
        return None
    lo, hi, k = 0, None, 1
    while hi is None:
        k = min(k, limit)
        if probe(order[:k], low).ok:
            hi = k
        elif k == limit:
            return None
        else:
            lo, k = k, 2 * k
    while hi - lo > 1:  # invariant: lo leading layers fail, hi meet the budget
        mid = (lo + hi) // 2
        if probe(order[:mid], low).ok:
            hi = mid
        else:
            lo = mid
    chosen = _prune(probe, low, list(order[:hi]), least_first=True)  # least sensitive tried first
    return probe(chosen, low)


def _prune(probe: _Prober, low: Lowering, chosen: list[str], least_first: bool = False) -> list[str]:
    """Drop, one at a time, each layer of a short float set the budget holds without
    (known failures come from the probe cache)."""
    if not 1 < len(chosen) <= PRUNE_AT_MOST:
        return chosen
    for name in (list(reversed(chosen)) if least_first else list(chosen)):
        trial = [n for n in chosen if n != name]
        if probe(trial, low).ok:
            chosen = trial
    return chosen


def _window(probe: _Prober, low: Lowering, names: list[str], budget: FallbackSpec) -> _Probe | None:
    """The shortest run names[a:b] of consecutive layers (model order) whose float
    version meets the budget, found by two bisections (the latest start a whose suffix
    meets it, then the earliest end b); then, when short, any layer the budget holds
    without is dropped. Int8 error that builds up in one region of the network (a stage
    whose layers each look harmless alone) is found this way in about 2 log2(n) exports."""
    limit = len(names) if budget.max_float_layers is None else budget.max_float_layers
    if len(names) < 2 or not probe(names, low).ok:
        return None
    lo, hi = 0, len(names)          # names[lo:] meets the budget; names[hi:] (empty) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(names[mid:], low).ok:
            lo = mid
        else:
            hi = mid
    start = lo
    lo, hi = start, len(names)      # names[start:lo] does not meet it; names[start:hi] does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(names[start:mid], low).ok:
            hi = mid
        else:
            lo = mid
    chosen = _prune(probe, low, list(names[start:hi]))
    if len(chosen) > limit:
        return None
    return probe(chosen, low)


def _order(model, target, variant, calibration, base, reference, labels, budget, ranking, say):
    """Layers in sensitivity order (most sensitive first), the same layers in model
    (execution) order, the scores, and how the order was made."""
    from compressor.sensitivity import candidates, layer_sensitivity

    names = [n for n in candidates(model, budget.granularity) if n not in variant.exclude]
    if target.name == "onnx":  # only layers the exported graph has nodes of can be kept float there
        names = [n for n in names if _onnx_nodes_of(base, n)]
    if ranking:
        ranked = [s.name for s in ranking if s.name in names]
        return ranked + [n for n in names if n not in ranked], names, ranking, "given"
    n = budget.sensitivity_samples
    inputs = {k: v[:n] for k, v in reference.inputs.items()}
    lab = labels[:n] if labels is not None and reference.on_real_data else None
    say(f"{variant.label}: sensitivity of {len(names)} {budget.granularity}s")
    try:
        if budget.sensitivity == "target":
            outputs = [o[:n] for o in reference.outputs]
            scores = target_sensitivity(target, model, variant, calibration, base, inputs, outputs, lab, names)
            how = f"real {target.name} lowering of one {budget.granularity} at a time, on its runtime"
        else:
            scores = layer_sensitivity(model, target.name, calibration, inputs, lab, layers=names,
                                       granularity=budget.granularity, per_channel=variant.per_channel,
                                       calibration_samples=variant.calibration_samples, mode=variant.mode)
            how = f"simulated {target.name} {variant.mode} quantizer, one {budget.granularity} at a time"
    except (RecipeError, DataError):
        raise
    except CompressorError as e:
        return names, names, [], f"model order (sensitivity failed: {first_line(e)})"
    return [s.name for s in scores], names, scores, how


def _onnx_nodes_of(base, name: str) -> bool:
    from targets.onnx.scopes import nodes_to_exclude

    try:
        return bool(nodes_to_exclude(base.path, [name], []))
    except RecipeError:
        return False


def target_sensitivity(target, model: Model, variant: QuantVariant, calibration, base, inputs: dict,
                       outputs: list[np.ndarray], labels, layers: list[str]) -> list["LayerScore"]:
    """Ranking from the target's own lowering, one layer at a time (ONNX Runtime's
    quantizer with `nodes_to_quantize`), scored on its runtime."""
    from compressor.layers import kind
    from compressor.sensitivity import LayerScore, accuracy, output_cosine, rank, relative_error

    if target.name != "onnx" or variant.mode != "static":
        raise RecipeError(f"{variant.label}: fallback.sensitivity 'target' (real per-layer lowerings) is offered "
                          f"for onnx static int8; use 'simulated' for {target.name} {variant.mode}")
    from targets.onnx.layerwise import module_scores

    got = module_scores(base.path, variant, calibration, inputs, layers, bool(base.meta.get("dynamic_batch")))
    ref_acc = accuracy(outputs[0], labels)
    scores = []
    for name in layers:
        outs = got.get(name)
        if outs is None:  # no node of its own in the graph (fused away): nothing to quantize
            scores.append(LayerScore(name, kind(model.module, name), 1.0, 0.0, None if labels is None else 0.0))
            continue
        acc = accuracy(outs[0], labels)
        scores.append(LayerScore(name, kind(model.module, name), output_cosine(outputs, outs),
                                 relative_error(outputs, outs), None if acc is None else 100 * (ref_acc - acc)))
    return rank(scores)


def alternatives(target: "Target", variant: QuantVariant, base: "Artifact", model: Model) -> list[Lowering]:
    """The target's other lowerings of the same intent, in the order they are tried."""
    out: list[Lowering] = []
    static = variant.mode == "static"
    if static and target.name in ("onnx", "torchscript", "pt2", "aoti"):
        for method in ("percentile", "entropy") if target.name == "onnx" else ("percentile",):
            if variant.calibration != method:
                out.append(Lowering(f"calibration={method}", {"calibration": method}))
    if variant.per_channel and target.name in ("onnx", "tflite", "torchscript"):  # pt2's quantizer: per-channel only
        out.append(Lowering("per-tensor", {"per_channel": False}))
    if static and not variant.symmetric_activations and target.name in ("onnx", "torchscript"):
        out.append(Lowering("symmetric activations", {"symmetric_activations": True}))
    if target.name == "onnx":
        present = set((base.meta or {}).get("op_types") or {})
        kinds = [op for op in ONNX_CASUALTIES if op in present and op not in variant.exclude_ops]
    else:
        present = {type(m).__name__ for m in model.module.modules()}
        kinds = [op for op in TORCH_CASUALTIES if op in present and op not in variant.exclude_ops]
    for op in kinds:
        out.append(Lowering(f"exclude_ops=[{op}]", {"exclude_ops": [*variant.exclude_ops, op]}))
    if len(kinds) > 1:
        out.append(Lowering(f"exclude_ops=[{', '.join(kinds)}]", {"exclude_ops": [*variant.exclude_ops, *kinds]}))
    return out


# --- ending -------------------------------------------------------------------------


def _finish(probe: _Prober, found: _Probe, float_layers: list[str], lowering: str, ranking, mode: str,
            out: Path, measure_latency: bool) -> FallbackOutcome:
    from targets.base import Artifact

    latency: dict[str, float | None] = {}
    notes = []
    if measure_latency and float_layers:
        if len(float_layers) <= LATENCY_AT_MOST:
            low = Lowering(lowering) if lowering == "default" else _lowering_named(probe, lowering)
            latency = _latency_costs(probe, found, float_layers, low)
        else:
            notes.append(f"{len(float_layers)} float layers: per-layer latency cost is measured only up to "
                         f"{LATENCY_AT_MOST}")
    art = found.artifact
    dest = {f: out.parent / f.name for f in art.files}
    publish(dest)
    meta = {**art.meta, "fallback": {"lowering": lowering, "float_layers": list(float_layers)}}
    final = Artifact(target=art.target, label=probe.variant.label, precision=art.precision, path=dest[art.path],
                     extra_files=[dest[f] for f in art.extra_files], meta=meta)
    return FallbackOutcome(artifact=final, fidelity=found.fidelity.to_json(), float_layers=list(float_layers),
                           lowering=lowering, attempts=probe.attempts, refused=None, sensitivity=list(ranking),
                           sensitivity_mode=mode, latency_ms=latency, accuracy=found.accuracy, notes=notes)


def _lowering_named(probe: _Prober, label: str) -> Lowering:
    for low in alternatives(probe.target, probe.variant, probe.base, probe.model):
        if low.label == label:
            return low
    return Lowering(label)


def _latency_costs(probe: _Prober, found: _Probe, float_layers: list[str], low: Lowering) -> dict[str, float | None]:
    """Milliseconds each float layer costs at batch 1: the chosen artifact against the
    same artifact with that one layer quantized too, timed in alternating blocks."""
    from targets.base import Device

    feed = {k: v[:1] for k, v in probe.reference.inputs.items()}
    chosen = probe.target.open_session(found.artifact.path, Device(), probe.threads)
    costs: dict[str, float | None] = {}
    for name in float_layers:
        rest = [n for n in float_layers if n != name]
        # Not recorded as an attempt, and kept on disk whether or not it meets the budget.
        other = _export_only(probe, rest, low)
        if other is None:
            costs[name] = None
            continue
        sess = probe.target.open_session(other.path, Device(), probe.threads)
        a, b = _alternate(chosen, sess, feed)
        costs[name] = round(a - b, 4)
        del sess
    return costs


def _export_only(probe: _Prober, float_layers: list[str], low: Lowering):
    folder = probe.work / f"lat{len(float_layers)}-{abs(hash(tuple(float_layers))) % 10**8}"
    try:
        return probe.target.export(probe.model, probe.variant_for(float_layers, low), folder / probe.stem,
                                   {**probe.options, **low.options}, probe.calibration, base=probe.base)
    except Exception:
        return None


def _alternate(s1, s2, feed: dict, blocks: int = 5, runs: int = 10) -> tuple[float, float]:
    """Median ms of each session, timed in alternating blocks (drift hits both alike)."""
    for s in (s1, s2):
        for _ in range(3):
            s.run(feed)
    t1, t2 = [], []
    for _ in range(blocks):
        for s, acc in ((s1, t1), (s2, t2)):
            for _ in range(runs):
                t = time.perf_counter()
                s.run(feed)
                acc.append(time.perf_counter() - t)
    return 1e3 * float(np.median(t1)), 1e3 * float(np.median(t2))


def _refuse(probe: _Prober, variant: QuantVariant, target: "Target", ranking, mode: str) -> FallbackOutcome:
    crashed = [a for a in probe.cache.values() if a.crashed is not None]
    scored = [a for a in probe.cache.values() if a.cosine is not None]
    all_crashed = crashed and not scored
    if all_crashed:
        cause = f"every {target.name} lowering of {variant.label} failed to export ({crashed[0].error})"
    else:
        best = max(scored, key=lambda a: a.cosine, default=None)
        worst = ranking[0] if ranking else None
        cause = (f"no {target.name} lowering of {variant.label} meets the budget"
                 + (f" (best: cosine {best.cosine:.4f} with {best.lowering}, {len(best.float_layers)} float layer(s))"
                    if best else "")
                 + (f"; most sensitive layer {worst.name!r} ({worst.kind}, cosine {worst.cosine:.4f} alone)"
                    if worst else ""))
    works = _precisions_that_work(probe, variant, target)
    bound = probe.budget.max_float_layers
    msg = (f"{cause}; " + (f"within max_float_layers={bound}; " if bound is not None else "")
           + (f"precisions that meet it: {', '.join(works)}" if works
              else "no other precision of this target meets it"))
    return FallbackOutcome(artifact=None, fidelity=None, float_layers=[], lowering="", attempts=probe.attempts,
                           refused=msg, sensitivity=list(ranking), sensitivity_mode=mode,
                           error_type=LoweringRefused if all_crashed else FallbackRefused)


def _precisions_that_work(probe: _Prober, variant: QuantVariant, target: "Target") -> list[str]:
    works = []
    if "dynamic" in target.modes and variant.mode != "dynamic":
        if probe([], Lowering("mode=dynamic", {"mode": "dynamic", "per_channel": True})).ok:
            works.append("int8 dynamic")
    if "fp16" in target.modes and probe([], Lowering("mode=fp16", {"mode": "fp16"})).ok:
        works.append("fp16")
    works.append("fp32")  # the base artifact passed validation before the fallback ran
    return works


_CHILD = """
import sys
from pathlib import Path
import numpy as np
import targets
from targets.base import Device
name, path, feeds = sys.argv[1:4]
session = targets.get(name).open_session(Path(path), Device(), 1)
with np.load(feeds) as f:
    session.run({k: f[k] for k in f.files})
"""


def _runtime_crash(target_name: str, path: Path, inputs: dict[str, np.ndarray], work: Path) -> str | None:
    """Load `path` and run one sample in a child process first: a runtime that crashes
    (a segfault, an abort) on some lowering must cost that probe, not the whole run.
    Returns the probe's error when the child died, None when it ran (or raised, which
    the in-process check then reports as it does)."""
    import subprocess
    import sys

    feeds = work / "probe-feeds.npz"
    if not feeds.exists():
        np.savez(feeds, **{k: v[:1] for k, v in inputs.items()})
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, target_name, str(path), str(feeds)],
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return f"the {target_name} runtime did not finish loading and running one sample in 900 s"
    if proc.returncode < 0:
        import signal

        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        return f"the {target_name} runtime crashed ({sig}) loading or running this lowering"
    return None


# --- the pipeline's use -------------------------------------------------------------


def export_for_row(target: "Target", model: Model, variant: QuantVariant, options: dict, calibration,
                   base: "Artifact", reference: "Reference", out: Path, evaluation: Dataset | None, row: dict,
                   per_layer: dict, threads: int = 1, progress: Callable[[str], None] | None = None) -> "Artifact":
    """The pipeline's export of a variant with `fallback`: fills the report row's
    `fallback` section and the sensitivity bars; raises the refusal as an error."""
    import contextlib
    import io
    import warnings

    budget = variant.fallback
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # torch.ao and the quantizers warn at every prepare
        outcome = lower_with_fallback(target, model, variant, options, calibration, base, reference, out, budget,
                                      evaluation=evaluation, progress=progress, threads=threads)
    row["fallback"] = outcome.to_json(budget)
    if outcome.sensitivity:
        per_layer[f"{row['name']} sensitivity (1 - cosine, one {budget.granularity} int8)"] = {
            s.name: (1.0 - s.cosine) if np.isfinite(s.cosine) else 2.0 for s in outcome.sensitivity}
    if outcome.refused:
        raise outcome.error()
    if outcome.float_layers:
        row["notes"].append(f"kept in float to meet the budget ({outcome.lowering} lowering): "
                            f"{', '.join(outcome.float_layers)}")
    elif outcome.lowering != "default":
        row["notes"].append(f"met the budget with the {outcome.lowering} lowering")
    return outcome.artifact

"""The fallback's probe: one real export of a variant with a float set and a lowering,
then the target's runtime on the reference inputs (first in a child process, so that a
runtime that crashes costs the probe, not the run), scored against the budget. Also
the latency each float layer costs, timed on the target's runtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.harness import alternating_medians_ms
from compressor.config.quantize import FallbackSpec, QuantVariant
from compressor.errors import CompressorError, DataError, RecipeError, first_line
from compressor.qat.quantizers import release_model_caches
from compressor.quant.search import Lowering, meets

if TYPE_CHECKING:
    from targets.base import Artifact


@dataclass
class Probe:
    """One try: what was lowered, whether it met the budget, and why not."""

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


class Prober:
    """One probe = a real export with a float set and lowering, then the target's runtime
    on the reference inputs. Results are cached per (lowering, float set)."""

    def __init__(self, target, model, variant: QuantVariant, options: dict, calibration, base, reference,
                 evaluation, budget: FallbackSpec, work: Path, stem: str, threads: int) -> None:
        self.target, self.model, self.variant, self.options = target, model, variant, options
        self.calibration, self.base, self.reference, self.evaluation = calibration, base, reference, evaluation
        self.budget, self.work, self.stem, self.threads = budget, work, stem, threads
        self.attempts: list[dict] = []
        self.cache: dict[tuple, Probe] = {}

    def variant_for(self, float_layers: list[str], low: Lowering) -> QuantVariant:
        data = {**self.variant.model_dump(), **low.variant, "fallback": None}
        data["exclude"] = list(dict.fromkeys([*self.variant.exclude, *float_layers]))
        if data["mode"] == "fp16":  # nothing to keep in float: the whole model is float
            data["exclude"], data["exclude_ops"] = [], []
        return QuantVariant.model_validate(data)

    def __call__(self, float_layers: list[str], low: Lowering, record: bool = True) -> Probe:
        key = (low.label, tuple(sorted(float_layers)))
        if key in self.cache:
            return self.cache[key]
        t0 = time.perf_counter()
        res = Probe(low.label, list(float_layers), ok=False)
        folder = self.work / f"a{len(self.cache)}"
        try:
            art = self.export(float_layers, low, folder)
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

    def export(self, float_layers: list[str], low: Lowering, folder: Path) -> "Artifact":
        return self.target.export(self.model, self.variant_for(float_layers, low), folder / self.stem,
                                  self.target.options(self.options).model_copy(update=low.options), self.calibration, base=self.base)

    def _score(self, res: Probe, art) -> None:
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
        res.ok, why = meets(self.budget, fid.cosine, res.accuracy, self.reference.accuracy)
        if not res.ok:
            res.error = why
            _remove(art)


def _remove(art) -> None:
    for f in art.files:
        f.unlink(missing_ok=True)


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


# --- what each float layer costs ----------------------------------------------------


def latency_costs(probe: Prober, found: Probe, float_layers: list[str], low: Lowering) -> dict[str, float | None]:
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
        a, b = alternating_medians_ms(chosen, sess, feed)
        costs[name] = round(a - b, 4)
        del sess
    return costs


def _export_only(probe: Prober, float_layers: list[str], low: Lowering):
    folder = probe.work / f"lat{len(float_layers)}-{abs(hash(tuple(float_layers))) % 10**8}"
    try:
        return probe.export(float_layers, low, folder)
    except Exception:
        return None

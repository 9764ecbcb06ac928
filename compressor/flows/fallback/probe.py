"""The fallback's probe: one real export of a variant with a float set and a lowering,
then the target's runtime on the reference inputs (the first probe of each lowering in
a child process first, so that a runtime that crashes costs the probe, not the run),
scored against the budget; the screen, the same lowering computed in-process where the
target has that shortcut (Target.screen), which the search runs on and the real probe
checks; the clock of the time budget; and the latency each float layer costs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from benchmarks.harness import alternating_medians_ms
from compressor.config.quantize import FallbackSpec, QuantVariant
from compressor.errors import CompressorError, DataError, RecipeError, first_line
from compressor.qat.quantizers import release_model_caches
from compressor.quant.search import BudgetSpent, Lowering, meets

if TYPE_CHECKING:
    from targets.base import Artifact


SPARE = 1.2               # a step's expected length, stretched by this before it is started


class Clock:
    """The fallback's time budget: seconds since it started, and whether a step of a
    given expected length still fits."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = float(seconds), time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def fits(self, expected: float, reserve: float = 0.0) -> bool:
        """Whether a step expected to take `expected` seconds (with a fifth to spare: a
        shared machine's steps vary) still ends within the budget, `reserve` kept back."""
        return self.elapsed() + SPARE * expected + reserve <= self.seconds

    def __str__(self) -> str:
        return f"{self.elapsed():.0f}/{self.seconds:g} s"


@dataclass
class Probe:
    """One try: what was lowered, whether it met the budget, and why not."""

    lowering: str
    float_layers: list[str]
    ok: bool
    cosine: float | None = None
    cosine_min: float | None = None     # the worst validation sample's
    accuracy: float | None = None
    error: str | None = None
    seconds: float = 0.0
    artifact: "Artifact | None" = None
    fidelity: Any = None
    crashed: type | None = None
    screened: bool = False              # judged on the target's in-process screen, not on an artifact

    def record(self) -> dict:
        return {"lowering": self.lowering, "float_layers": list(self.float_layers), "cosine": self.cosine,
                "cosine_min": self.cosine_min, "accuracy": self.accuracy, "ok": self.ok, "error": self.error,
                "seconds": round(self.seconds, 2), **({"screen": True} if self.screened else {})}


class Prober:
    """One probe = a real export with a float set and lowering, then the target's runtime
    on the reference inputs. Results are cached per (lowering, float set). A new export
    that the time budget has no room for raises BudgetSpent instead."""

    def __init__(self, target, model, variant: QuantVariant, options: dict, calibration, base, reference,
                 evaluation, budget: FallbackSpec, work: Path, stem: str, threads: int,
                 clock: Clock | None = None, say: Callable[[str], None] | None = None) -> None:
        self.target, self.model, self.variant, self.options = target, model, variant, options
        self.calibration, self.base, self.reference, self.evaluation = calibration, base, reference, evaluation
        self.budget, self.work, self.stem, self.threads = budget, work, stem, threads
        self.clock = clock or Clock(budget.max_seconds)
        self.say = say or (lambda _msg: None)
        self.attempts: list[dict] = []
        self.cache: dict[tuple, Probe] = {}
        self.screens: dict[tuple, Probe] = {}
        self.reserve = 0.0              # seconds kept back (for the real check of a screened answer)
        self._crash_checked: set[str] = set()
        self._real_seconds: list[float] = []
        self._once = 0.0                # of the probe under way: its child-process check
        self._screen_seconds: list[float] = []

    # --- the real probe -------------------------------------------------------------

    def variant_for(self, float_layers: list[str], low: Lowering) -> QuantVariant:
        data = {**self.variant.model_dump(), **low.variant, "fallback": None}
        data["exclude"] = list(dict.fromkeys([*self.variant.exclude, *float_layers]))
        if data["mode"] == "fp16":  # nothing to keep in float: the whole model is float
            data["exclude"], data["exclude_ops"] = [], []
        return QuantVariant.model_validate(data)

    @property
    def has_screen(self) -> bool:
        """Whether the target offers a screen for this variant (Target.screen)."""
        from targets.base import Target

        return type(self.target).screen is not Target.screen and self.variant.mode == "static"

    @property
    def probes(self) -> int:
        return len(self.cache)

    def expected_seconds(self) -> float:
        """What the next real probe is likely to take (the slowest of the last three)."""
        return max(self._real_seconds[-3:], default=0.0)

    def __call__(self, float_layers: list[str], low: Lowering, record: bool = True, force: bool = False) -> Probe:
        key = (low.label, tuple(sorted(float_layers)))
        if key in self.cache:
            return self.cache[key]
        if not force and not self.clock.fits(self.expected_seconds()):
            raise BudgetSpent()
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
            self._score(res, art, low.label)
        release_model_caches()  # the quantizers' helpers would keep every probe's model alive
        res.seconds = time.perf_counter() - t0
        self._real_seconds.append(res.seconds - self._once)  # the next probe of this lowering skips the child
        self._once = 0.0
        self.cache[key] = res
        if record:
            self.attempts.append(res.record())
        self.say(f"probe {len(self.cache)} ({low.label}, {len(float_layers)} float): {_verdict(res)} [{self.clock}]")
        return res

    def export(self, float_layers: list[str], low: Lowering, folder: Path) -> "Artifact":
        return self.target.export(self.model, self.variant_for(float_layers, low), folder / self.stem,
                                  self.target.options(self.options).model_copy(update=low.options), self.calibration,
                                  base=self.base)

    def _score(self, res: Probe, art, label: str) -> None:
        from targets.validate import validate_artifact

        if label not in self._crash_checked:  # a lowering that crashes the runtime does so on its first probe
            self._crash_checked.add(label)
            t0 = time.perf_counter()
            crash = _runtime_crash(self.target.name, art.path, self.reference.inputs, self.work)
            self._once += time.perf_counter() - t0
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
        res.cosine_min = fid.cosine_min if np.isfinite(fid.cosine_min) else None
        res.fidelity, res.artifact = fid, art
        res.ok, why = meets(self.budget, fid.cosine, res.accuracy, self.reference.accuracy, worst=fid.cosine_min)
        if not res.ok:
            res.error = why
            _remove(art)

    # --- the screen -----------------------------------------------------------------

    def screen(self, float_layers: list[str], low: Lowering,
               optimism: tuple[float, float] = (1.0, 1.0)) -> Probe | None:
        """The lowering computed in-process (Target.screen), judged against the budget
        with its errors scaled by `optimism` (mean, worst: how much larger the artifact's
        were where both were measured); None when the target has no screen. Cached per
        (lowering, float set); costs time like a probe."""
        if not self.has_screen:
            return None
        key = (low.label, tuple(sorted(float_layers)))
        res = self.screens.get(key)
        if res is None:
            if not self.clock.fits(max(self._screen_seconds[-3:], default=0.0), self.reserve):
                raise BudgetSpent()
            res = self._screen(float_layers, low)
            if res is None:
                return None
            self.screens[key] = res
        if res.cosine is None:
            return res
        ok, why = meets(self.budget, res.cosine, res.accuracy, self.reference.accuracy, worst=res.cosine_min,
                        optimism=optimism)
        return Probe(res.lowering, res.float_layers, ok, res.cosine, res.cosine_min, res.accuracy, why,
                     res.seconds, crashed=res.crashed, screened=True)

    def _screen(self, float_layers: list[str], low: Lowering) -> Probe | None:
        from compressor.reference import top1
        from targets.validate import compare

        t0 = time.perf_counter()
        res = Probe(low.label, list(float_layers), ok=False, screened=True)
        variant = self.variant_for(float_layers, low)
        try:
            got = self.target.screen(self.model, variant, self.calibration, self.reference.inputs)
            if got is None:
                return None
            fid = compare(self.reference.outputs, got, [f"output_{i}" for i in range(len(got))])
            if self.evaluation is not None and self.evaluation.labels is not None:
                logits = self.target.screen(self.model, variant, self.calibration, self.evaluation.inputs)
                res.accuracy = top1(logits[0], self.evaluation.labels)
        except (RecipeError, DataError):
            raise
        except Exception as e:
            res.error, res.crashed = first_line(e), type(e)
        else:
            res.cosine = fid.cosine if np.isfinite(fid.cosine) else None
            res.cosine_min = fid.cosine_min if np.isfinite(fid.cosine_min) else None
            if res.cosine is None:
                res.error = "non-finite outputs"
        release_model_caches()
        res.seconds = time.perf_counter() - t0
        self._screen_seconds.append(res.seconds)
        self.say(f"screen {len(self.screens) + 1} ({low.label}, {len(float_layers)} float): "
                 f"{_verdict(res, judged=False)} [{self.clock}]")
        return res

    def screen_outputs(self, float_layers: list[str], low: Lowering, inputs: dict) -> list[np.ndarray] | None:
        """The screen's outputs on `inputs` for a float set (the ranking's scores), timed
        with the screens."""
        t0 = time.perf_counter()
        try:
            return self.target.screen(self.model, self.variant_for(float_layers, low), self.calibration, inputs)
        finally:
            self._screen_seconds.append(time.perf_counter() - t0)

    def screened(self, optimism: tuple[float, float]) -> Callable[[list[str], Lowering], Probe]:
        """A probe callable for the search that answers from the screen (see screen)."""
        def probe(float_layers: list[str], low: Lowering) -> Probe:
            got = self.screen(float_layers, low, optimism)
            return got if got is not None else self(float_layers, low)
        return probe


def _verdict(res: Probe, judged: bool = True) -> str:
    if res.cosine is None:
        return f"failed ({res.error})"
    worst = f", worst {res.cosine_min:.4f}" if res.cosine_min is not None else ""
    return f"cosine {res.cosine:.4f}{worst}" + (" meets the budget" if judged and res.ok else "")


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
    same artifact with that one layer quantized too, timed in alternating blocks. Layers
    the time budget leaves no room for are left out."""
    from targets.base import Device

    feed = {k: v[:1] for k, v in probe.reference.inputs.items()}
    chosen = probe.target.open_session(found.artifact.path, Device(), probe.threads)
    costs: dict[str, float | None] = {}
    for name in float_layers:
        if not probe.clock.fits(probe.expected_seconds()):
            break
        rest = [n for n in float_layers if n != name]
        t0 = time.perf_counter()
        # Not recorded as an attempt, and kept on disk whether or not it meets the budget.
        other = _export_only(probe, rest, low)
        if other is None:
            costs[name] = None
            continue
        sess = probe.target.open_session(other.path, Device(), probe.threads)
        a, b = alternating_medians_ms(chosen, sess, feed)
        costs[name] = round(a - b, 4)
        del sess
        probe._real_seconds.append(time.perf_counter() - t0)
    return costs


def _export_only(probe: Prober, float_layers: list[str], low: Lowering):
    folder = probe.work / f"lat{len(float_layers)}-{abs(hash(tuple(float_layers))) % 10**8}"
    try:
        return probe.export(float_layers, low, folder)
    except Exception:
        return None

"""Numerical validation of an artifact against its reference model's outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Collection

import numpy as np

from compressor.config.recipe import Tolerance
from compressor.errors import FidelityError
from compressor.reference import VALIDATION_BATCH, top1

if TYPE_CHECKING:
    from targets.base import Artifact, Device, Target


@dataclass(frozen=True)
class OutputFidelity:
    name: str
    max_abs: float
    cosine_mean: float
    cosine_min: float
    top1: float | None  # argmax agreement, for (N, classes) outputs
    # Every value zero while the reference's are not: a collapsed lowering, never a pass,
    # whatever the tolerance (max_abs alone can miss it on small outputs).
    all_zero: bool = False
    # Samples whose argmax differs from the reference's, and how many of them were near-ties:
    # the reference's top-2 margin within twice the artifact's typical (median) error there.
    top1_flips: int | None = None
    top1_near_ties: int | None = None


@dataclass(frozen=True)
class Fidelity:
    samples: int
    outputs: list[OutputFidelity]

    @property
    def max_abs(self) -> float:
        return max(o.max_abs for o in self.outputs)

    @property
    def cosine(self) -> float:
        return min(o.cosine_mean for o in self.outputs)

    @property
    def cosine_min(self) -> float:
        return min(o.cosine_min for o in self.outputs)

    @property
    def top1(self) -> float | None:
        vals = [o.top1 for o in self.outputs if o.top1 is not None]
        return min(vals) if vals else None

    def to_json(self) -> dict:
        return {"samples": self.samples, "max_abs": self.max_abs, "cosine_mean": self.cosine,
                "cosine_min": self.cosine_min, "top1_agreement": self.top1,
                "outputs": [asdict(o) for o in self.outputs]}


def validate_artifact(target: "Target", artifact: "Artifact", inputs: dict[str, np.ndarray],
                      reference: list[np.ndarray], threads: int = 1, device: "Device | None" = None,
                      evaluation=None, classes: Collection[str] | None = None) -> tuple[Fidelity, float | None]:
    """Run `artifact` on its target's runtime over the validation `inputs` (declared layout)
    and compare its outputs with the float `reference`; with `evaluation` (a labelled
    dataset) also its top-1 accuracy there. The one session -> run -> compare of the tool."""
    from targets.base import Device, run_batched
    from targets.layout import feeds_for, outputs_from

    meta = artifact.meta or {}
    session = target.open_artifact(artifact, device or Device(), threads)
    try:
        def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            got = run_batched(session, feeds_for(feeds, meta), VALIDATION_BATCH)
            return outputs_from(got, session.output_names, meta)

        fid = compare(reference, run(inputs), meta.get("output_names") or session.output_names, classes)
        accuracy = None
        if evaluation is not None and evaluation.labels is not None:
            accuracy = top1(run(evaluation.inputs)[0], evaluation.labels)
    finally:
        del session  # a runtime's session holds its memory until released
    return fid, accuracy


def compare(reference: list[np.ndarray], got: list[np.ndarray], names: list[str],
            classes: Collection[str] | None = None) -> Fidelity:
    """Each output of `got` against the reference's. Top-1 agreement is taken of the
    (N, k) outputs named in `classes` (all of them when None): an embedding's argmax is
    no class, and its flips say nothing."""
    if len(reference) != len(got):
        raise FidelityError(f"the artifact gives {len(got)} outputs, the reference {len(reference)}")
    outs = []
    for name, r, g in zip(names, reference, got):
        r = np.asarray(r, dtype=np.float64)
        g = np.asarray(g, dtype=np.float64)
        if r.shape != g.shape:
            raise FidelityError(f"output {name!r}: shape {list(g.shape)} differs from the reference's {list(r.shape)}")
        finite = np.isfinite(g).all()
        rf, gf = r.reshape(len(r), -1), g.reshape(len(g), -1)
        num = (rf * gf).sum(1)
        den = np.linalg.norm(rf, axis=1) * np.linalg.norm(gf, axis=1)
        # Two all-zero rows agree; one zero row against a non-zero one does not.
        cos = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(
            (np.abs(rf).sum(1) == 0) & (np.abs(gf).sum(1) == 0), 1.0, 0.0))
        scores = r.ndim == 2 and r.shape[1] > 1 and finite and (classes is None or name in classes)
        top1, flips, ties = _agreement(r, g) if scores else (None, None, None)
        outs.append(OutputFidelity(name=name, max_abs=float(np.abs(r - g).max()) if finite else float("inf"),
                                   cosine_mean=float(cos.mean()) if finite else float("nan"),
                                   cosine_min=float(cos.min()) if finite else float("nan"), top1=top1,
                                   all_zero=bool(finite and not g.any() and r.any()), top1_flips=flips,
                                   top1_near_ties=ties))
    return Fidelity(samples=len(reference[0]) if reference else 0, outputs=outs)


def check(fid: Fidelity, tol: Tolerance, what: str) -> None:
    """Raise FidelityError naming the worst output when `fid` breaks `tol`."""
    for o in sorted(fid.outputs, key=lambda o: (o.cosine_mean if np.isfinite(o.cosine_mean) else -2)):
        problems = []
        if not np.isfinite(o.max_abs):
            problems.append("non-finite values (NaN or inf)")
        elif o.all_zero:
            problems.append("every value is zero, the reference's are not")
        else:
            if tol.max_abs is not None and o.max_abs > tol.max_abs:
                problems.append(f"max abs difference {o.max_abs:.3g} > {tol.max_abs:g}")
            if tol.min_cosine is not None and o.cosine_mean < tol.min_cosine:
                problems.append(f"mean cosine {o.cosine_mean:.5f} < {tol.min_cosine:g}")
            if tol.min_top1 is not None and o.top1 is not None:
                problems.extend(_top1_problem(o, fid.samples, tol))
        if problems:
            raise FidelityError(f"{what}: output {o.name!r} differs from the reference beyond tolerance "
                                f"({'; '.join(problems)}; worst sample cosine {o.cosine_min:.4f}); "
                                "loosen 'validation' in the recipe or keep sensitive layers in float")


def _agreement(r: np.ndarray, g: np.ndarray) -> tuple[float, int, int]:
    """Top-1 agreement of (N, classes) outputs, the flipped samples, and how many flips
    were near-ties: where the reference's top-2 margin is within twice the artifact's
    median per-sample error, ordinary int8 noise decides the argmax."""
    flipped = r.argmax(-1) != g.argmax(-1)
    top2 = np.sort(r, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    noise = float(np.median(np.abs(r - g).max(-1)))
    return float(1 - flipped.mean()), int(flipped.sum()), int((flipped & (margin <= 2 * noise)).sum())


def wilson_interval(agree: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion agree/n (two-sided); the point
    itself at confidence 0. Good coverage at small n and at proportions near 1, where
    the normal approximation's interval is too narrow or leaves [0, 1]."""
    from statistics import NormalDist

    if n == 0:
        return 0.0, 1.0
    p = agree / n
    if confidence <= 0:
        return p, p
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def _top1_problem(o: OutputFidelity, samples: int, tol: Tolerance) -> list[str]:
    """Top-1 agreement is a proportion measured on `samples` inputs: it breaks min_top1
    only when even the upper end of its confidence interval lies below (one flip of 16
    is 0.94 measured, and says little about 0.95)."""
    agree = samples - o.top1_flips if o.top1_flips is not None else round(o.top1 * samples)
    low, high = wilson_interval(agree, samples, tol.top1_confidence)
    if high >= tol.min_top1:
        return []
    ties = f", {o.top1_near_ties} of the flips near-ties" if o.top1_near_ties else ""
    level = f"{tol.top1_confidence:.0%} interval {low:.3f}-{high:.3f}" if tol.top1_confidence > 0 else "point estimate"
    return [f"top-1 agreement {o.top1:.3f} ({agree} of {samples} samples{ties}; {level}) < {tol.min_top1:g}"]

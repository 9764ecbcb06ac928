"""Statistics over per-run latencies: what separates a real slowdown from timing noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float      # median(candidate) / median(baseline)
    low: float        # the bootstrap interval at the given confidence
    high: float
    confidence: float


def ratio_of_medians(candidate: list[float] | np.ndarray, baseline: list[float] | np.ndarray,
                     confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> RatioEstimate:
    """Percentile-bootstrap interval of median(candidate)/median(baseline).

    Medians because latency distributions are skewed with a long right tail (a
    preempted run is slow, never fast); the bootstrap because that skew makes
    normal-theory intervals wrong. Seeded, so a gate gives the same verdict on the
    same reports.
    """
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        r = float(np.median(a) / np.median(b))
        return RatioEstimate(r, r, r, confidence)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), size=(resamples, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), size=(resamples, len(b)))], axis=1)
    ratios = ma / mb
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioEstimate(float(np.median(a) / np.median(b)), float(low), float(high), confidence)


def significantly_slower(candidate: list[float], baseline: list[float], alpha: float = 0.01) -> bool:
    """One-sided Mann-Whitney U: are the candidate's runs stochastically slower?"""
    from scipy.stats import mannwhitneyu

    return bool(mannwhitneyu(candidate, baseline, alternative="greater").pvalue < alpha)

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


def ratio_of_quantiles(candidate: list[float] | np.ndarray, baseline: list[float] | np.ndarray,
                       quantile: float = 50, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> RatioEstimate:
    """Percentile-bootstrap interval of q(candidate)/q(baseline) for the `quantile`-th
    percentile q (50: the median).

    Quantiles because latency distributions are skewed with a long right tail (a
    preempted run is slow, never fast): the median ignores the tail, a lower quantile
    also ignores a machine that was busy for a good part of the measurement. The
    bootstrap because that skew makes normal-theory intervals wrong. Seeded, so a gate
    gives the same verdict on the same reports.
    """
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    point = float(np.percentile(a, quantile) / np.percentile(b, quantile))
    if len(a) < 2 or len(b) < 2:
        return RatioEstimate(point, point, point, confidence)
    rng = np.random.default_rng(seed)
    qa = np.percentile(a[rng.integers(0, len(a), size=(resamples, len(a)))], quantile, axis=1)
    qb = np.percentile(b[rng.integers(0, len(b), size=(resamples, len(b)))], quantile, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(qa / qb, [tail, 100 - tail])
    return RatioEstimate(point, float(low), float(high), confidence)


def significantly_slower(candidate: list[float], baseline: list[float], alpha: float = 0.01) -> bool:
    """One-sided Mann-Whitney U: are the candidate's runs stochastically slower?"""
    from scipy.stats import mannwhitneyu

    return bool(mannwhitneyu(candidate, baseline, alternative="greater").pvalue < alpha)

"""The metrics record of one artifact, and latency statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Latency:
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    cv: float                 # std / mean: above ~0.1 the machine was noisy
    throughput: float         # samples per second at the median
    samples_ms: list[float] = field(default_factory=list, repr=False)
    block: int = 0            # runs per timing block
    ref_blocks_ms: list[float] = field(default_factory=list, repr=False)  # reference workload after each block

    @classmethod
    def from_samples(cls, batch: int, seconds: list[float], keep: bool = True, block: int = 0,
                     ref_blocks_ms: list[float] | None = None) -> "Latency":
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        mean = float(ms.mean())
        p50 = float(np.percentile(ms, 50))
        return cls(batch=batch, runs=len(ms), p50_ms=p50, p90_ms=float(np.percentile(ms, 90)),
                   p99_ms=float(np.percentile(ms, 99)), mean_ms=mean, std_ms=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
                   min_ms=float(ms.min()), cv=float(ms.std(ddof=1) / mean) if len(ms) > 1 and mean > 0 else 0.0,
                   throughput=batch * 1e3 / p50 if p50 > 0 else float("inf"),
                   samples_ms=[round(float(x), 4) for x in ms] if keep else [], block=block,
                   ref_blocks_ms=[round(float(x), 4) for x in (ref_blocks_ms or [])])

    def normalized(self) -> list[float] | None:
        """Each run divided by the reference workload's median in its block."""
        return normalized(self.samples_ms, self.ref_blocks_ms, self.block)


def normalized(samples_ms: list[float], ref_blocks_ms: list[float], block: int) -> list[float] | None:
    """Runs timed in blocks of `block`, each divided by the reference workload timed after
    its block (None without the reference timings)."""
    if not samples_ms or not ref_blocks_ms or not block:
        return None
    return [x / ref_blocks_ms[min(i // block, len(ref_blocks_ms) - 1)] for i, x in enumerate(samples_ms)]


@dataclass
class Metrics:
    """Everything measured for one artifact on one device."""

    path: str
    target: str
    runtime: str
    provider: str
    device: str
    threads: int
    size_bytes: int
    gzip_bytes: int
    load_s: float
    first_inference_ms: float
    latency: list[Latency]
    peak_rss_mb: float | None = None        # of the process that loaded and ran the artifact
    baseline_rss_mb: float | None = None    # that process before it loaded the runtime and model
    reference_p50_ms: float | None = None   # the fixed reference workload, same process and threads
    accuracy: float | None = None
    eval_samples: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    emulated: bool = False                  # measured under an emulator (qemu): the latency is not the board's
    device_state: dict[str, Any] | None = None  # temperature and CPU frequency before and after, per round
    batches_refused: dict[str, str] = field(default_factory=dict)  # batch -> why it was not run

    def latency_at(self, batch: int) -> Latency | None:
        return next((l for l in self.latency if l.batch == batch), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Metrics":
        d = dict(d)
        d["latency"] = [Latency(**l) for l in d["latency"]]
        return cls(**d)

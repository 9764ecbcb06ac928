"""Activation outliers and int8: the target-independent arithmetic of outlier-aware
quantization of linear layers (y = x W, x: [rows, C], W: [C, O]).

Trained transformers carry a few input channels (and a few tokens, such as [CLS]) whose
activations are 10-20x the rest; one per-tensor activation scale then spends its 256
levels on them. Three answers, each chosen per group of linear layers that read the
same input, from calibration activations and the weights, by the simulated int8 error
of the group's outputs:

- smoothing (SmoothQuant, Xiao et al. 2023): x' = x / s, W' = diag(s) W with
  s = max|x|^a / max|W|^(1-a) per input channel, moving range from the activations into
  the per-channel-quantized weights; a searched per group, as Intel Neural Compressor's
  auto-alpha does per layer;
- float outlier channels (LLM.int8(), Dettmers et al. 2022): the few channels whose range
  dwarfs the rest are multiplied in float on a side path, the others in int8;
- per-inference (dynamic) activation ranges for a group whose inputs' range moves from one
  input to the next so much that one calibrated range fits none of them well.

Targets rewrite their graphs with what `plan_group` decides; nothing here knows a format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

ALPHAS = (0.5, 0.65, 0.8, 0.9)
# A channel is an outlier when its range is this many times the median channel's ...
OUTLIER_RATIO = 8.0
# ... and at most this share of a layer's channels (or MIN_OUTLIER_CAP in a narrow layer)
# is kept float: beyond it, the layer is not a few channels away from int8, and smoothing
# and ranges have to do.
MAX_OUTLIER_SHARE = 0.02
MIN_OUTLIER_CAP = 4
# Per-inference ranges are chosen when the calibrated range's simulated error is this
# many times theirs: they cost a min/max pass over the activation at every inference.
DYNAMIC_GAIN = 1.5
# Smoothing is kept only when it lowers the simulated error by this share.
SMOOTHING_GAIN = 0.05


@dataclass
class GroupPlan:
    """What to do with one group of linear layers that read the same input."""

    scales: np.ndarray | None = None        # divide the input by these (None: no smoothing)
    alpha: float | None = None
    float_channels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dynamic: bool = False                   # per-inference activation ranges
    error_before: float = 0.0               # simulated relative output error, plain int8
    error_after: float = 0.0                # ... with this plan

    def describe(self) -> str:
        parts = []
        if self.scales is not None:
            parts.append(f"smoothed (alpha {self.alpha:g})")
        if len(self.float_channels):
            parts.append(f"{len(self.float_channels)} outlier channel(s) float")
        if self.dynamic:
            parts.append("per-inference ranges")
        return ", ".join(parts) or "plain"


def fake_quant_weights(w: np.ndarray) -> np.ndarray:
    """Symmetric int8 per output channel (columns of a [C, O] weight), as the targets do."""
    scale = np.abs(w).max(axis=0, keepdims=True) / np.float32(127.0)
    scale = np.where(scale > 0, scale, np.float32(1.0))
    return np.clip(np.round(w / scale), -127, 127) * scale


def fake_quant_activations(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Asymmetric uint8 over [lo, hi] (widened to hold 0), one scale for the whole tensor."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


@dataclass
class Activations:
    """What calibration saw of one linear group's input: a sample of its rows, the input
    each row came from, and per-channel ranges over all of it and per input."""

    rows: np.ndarray        # [R, C] float32
    tags: np.ndarray        # [R] index of the input each row came from
    cmin: np.ndarray        # [C] over every input
    cmax: np.ndarray
    smin: np.ndarray        # [S, C] per input
    smax: np.ndarray

    @classmethod
    def collect(cls, arrays: Iterable[np.ndarray], rows_per_input: int, seed: int = 0) -> "Activations":
        """From one array per calibration input (channels on the last axis), streamed."""
        rng = np.random.default_rng(seed)
        xs, tags, smin, smax = [], [], [], []
        for i, a in enumerate(arrays):
            flat = np.asarray(a, dtype=np.float32).reshape(-1, a.shape[-1])
            smin.append(flat.min(axis=0))
            smax.append(flat.max(axis=0))
            take = flat if len(flat) <= rows_per_input else flat[rng.choice(len(flat), rows_per_input, replace=False)]
            xs.append(take)
            tags.append(np.full(len(take), i, dtype=np.int64))
        if not xs:
            raise ValueError("no calibration inputs")
        smin_a, smax_a = np.stack(smin), np.stack(smax)
        return cls(np.concatenate(xs), np.concatenate(tags), smin_a.min(axis=0), smax_a.max(axis=0), smin_a, smax_a)

    @property
    def absmax(self) -> np.ndarray:
        return np.maximum(np.abs(self.cmin), np.abs(self.cmax))


def _quantized_x(acts: Activations, rows: np.ndarray, keep: np.ndarray, scales: np.ndarray, dynamic: bool,
                 fit: np.ndarray | None = None) -> np.ndarray:
    """The `rows` of x / s quantized: with each input's own range (`dynamic`) or one range,
    calibrated over the inputs `fit` (all of them when None)."""
    x = acts.rows[rows][:, keep] / scales[keep]
    if not dynamic:
        lo = acts.cmin if fit is None else acts.smin[fit].min(axis=0)
        hi = acts.cmax if fit is None else acts.smax[fit].max(axis=0)
        return fake_quant_activations(x, (lo[keep] / scales[keep]).min(), (hi[keep] / scales[keep]).max())
    out = np.empty_like(x)
    tags = acts.tags[rows]
    for s in np.unique(tags):
        mine = tags == s
        out[mine] = fake_quant_activations(x[mine], (acts.smin[s, keep] / scales[keep]).min(),
                                           (acts.smax[s, keep] / scales[keep]).max())
    return out


def output_error(acts: Activations, weights: Sequence[np.ndarray], dynamic: bool = False,
                 scales: np.ndarray | None = None, float_channels: np.ndarray | None = None,
                 held_out: bool = False, exact: dict | None = None) -> float:
    """Relative squared error of the group's outputs when its input and weights are int8:
    sum ||Q(x / s) Q(diag(s) W) - x W||^2 / sum ||x W||^2 over the group's layers, with the
    calibrated range of x / s (or each input's own range when `dynamic`) and the
    `float_channels` multiplied in float. `held_out`: the range is calibrated on the even
    inputs and the error measured on the odd ones, as a deployed model meets inputs its
    calibration never saw (a spike in a channel no calibration input had is clipped).
    `exact` caches the float products between calls on the same group."""
    rows = np.ones(len(acts.rows), dtype=bool)
    fit = None
    if held_out:
        n = len(acts.smin)
        fit = np.arange(0, n, 2)
        rows = acts.tags % 2 == 1
        if n < 2 or not rows.any():
            rows, fit, held_out = np.ones(len(acts.rows), dtype=bool), None, False
    x = acts.rows[rows]
    scales = np.ones(x.shape[1], dtype=np.float32) if scales is None else scales
    keep = np.ones(x.shape[1], dtype=bool)
    if float_channels is not None and len(float_channels):
        keep[float_channels] = False
    xq = _quantized_x(acts, rows, keep, scales, dynamic, fit)
    num = den = 0.0
    for i, w in enumerate(weights):
        key = (i, held_out)
        if exact is None or key not in exact:
            product = x @ w
            if exact is not None:
                exact[key] = product
        else:
            product = exact[key]
        approx = xq @ fake_quant_weights(w[keep] * scales[keep, None])
        if not keep.all():
            approx += x[:, ~keep] @ w[~keep]
        num += float(np.square(approx - product).sum())
        den += float(np.square(product).sum())
    return num / den if den > 0 else 0.0


def smoothing_scales(x_absmax: np.ndarray, w_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-channel s = max|x|^a / max|W|^(1-a), kept finite and positive."""
    x_absmax = np.maximum(np.asarray(x_absmax, dtype=np.float64), 1e-5)
    w_absmax = np.maximum(np.asarray(w_absmax, dtype=np.float64), 1e-5)
    s = x_absmax ** alpha / w_absmax ** (1.0 - alpha)
    return np.clip(s, 1e-4, 1e4).astype(np.float32)


def outlier_channels(x_absmax: np.ndarray, ratio: float = OUTLIER_RATIO,
                     max_share: float = MAX_OUTLIER_SHARE) -> np.ndarray:
    """The channels whose range is `ratio` times the median channel's, largest first, at
    most `max_share` of them (or MIN_OUTLIER_CAP); none when more would be needed."""
    x_absmax = np.asarray(x_absmax)
    median = float(np.median(x_absmax))
    if median <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(x_absmax > ratio * median)
    if len(idx) > max(MIN_OUTLIER_CAP, int(max_share * len(x_absmax))):
        return np.zeros(0, dtype=np.int64)
    return idx[np.argsort(-x_absmax[idx])].astype(np.int64)


def plan_group(acts: Activations, weights: Sequence[np.ndarray], dynamic_mode: bool, allow_dynamic: bool = True,
               alphas: Sequence[float] = ALPHAS, alpha: float | None = None) -> GroupPlan:
    """Choose smoothing, float outlier channels and (for a static lowering) per-inference
    ranges for the layers `weights` ([C, O] each) that read the input `acts` saw, by
    simulated output error. A dynamic lowering (`dynamic_mode`) has per-inference ranges
    everywhere already; `alpha` fixes the smoothing strength instead of searching it."""
    x_absmax = acts.absmax
    exact: dict = {}
    w_absmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
    plain = output_error(acts, weights, dynamic_mode, exact=exact)
    best = GroupPlan(error_before=plain, error_after=plain, dynamic=dynamic_mode)
    channels = outlier_channels(x_absmax)
    if len(channels):
        err = output_error(acts, weights, dynamic_mode, float_channels=channels, exact=exact)
        if err < best.error_after * (1 - SMOOTHING_GAIN):
            best.float_channels, best.error_after = channels, err
    keep = np.ones(len(x_absmax), dtype=bool)
    keep[best.float_channels] = False
    for a in ([alpha] if alpha is not None else alphas):
        scales = np.ones_like(x_absmax, dtype=np.float32)
        scales[keep] = smoothing_scales(x_absmax[keep], w_absmax[keep], a)
        err = output_error(acts, weights, dynamic_mode, scales=scales, float_channels=best.float_channels,
                           exact=exact)
        if err < best.error_after * (1 - SMOOTHING_GAIN) or (alpha is not None and best.scales is None):
            best.scales, best.alpha, best.error_after = scales, float(a), err
    if not dynamic_mode and allow_dynamic:
        # Judged on inputs the range was not calibrated on: what static ranges risk.
        static = output_error(acts, weights, False, best.scales, best.float_channels, held_out=True, exact=exact)
        dynamic = output_error(acts, weights, True, best.scales, best.float_channels, held_out=True, exact=exact)
        if dynamic * DYNAMIC_GAIN < static:
            best.dynamic = True
            best.error_after = output_error(acts, weights, True, best.scales, best.float_channels, exact=exact)
    return best

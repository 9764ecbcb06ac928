"""Feeding an artifact in its own memory layout. Data, references and reports keep the
model's declared layout (NCHW for PyTorch); an artifact exported channels-last (NHWC,
e.g. TFLite's `channels_last: true`) records which of its inputs and outputs are NHWC in
its meta, and validation and the benchmark harness transpose on the way in and back out.

The record is a plain dict, so that it travels into the benchmark worker as JSON:
{"nhwc_inputs": [input names], "nhwc_outputs": [output names]}.
"""

from __future__ import annotations

import numpy as np

LAYOUT_KEYS = ("nhwc_inputs", "nhwc_outputs")


def layout_of(meta: dict | None) -> dict[str, list[str]]:
    """The layout record in an artifact's meta (empty lists when it is all declared-layout)."""
    meta = meta or {}
    return {k: list(meta.get(k) or []) for k in LAYOUT_KEYS}


def feeds_for(feeds: dict[str, np.ndarray], layout: dict | None) -> dict[str, np.ndarray]:
    """Inputs in the declared layout (N,C,H,W) -> the artifact's (N,H,W,C) where it is NHWC."""
    nhwc = set((layout or {}).get("nhwc_inputs") or [])
    return {k: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) if k in nhwc and v.ndim == 4 else v
            for k, v in feeds.items()}


def outputs_from(outputs: list[np.ndarray], names: list[str], layout: dict | None) -> list[np.ndarray]:
    """The artifact's outputs, with its NHWC ones back in the declared (N,C,H,W) layout."""
    nhwc = set((layout or {}).get("nhwc_outputs") or [])
    return [np.ascontiguousarray(o.transpose(0, 3, 1, 2)) if n in nhwc and o.ndim == 4 else o
            for n, o in zip(names, outputs)]

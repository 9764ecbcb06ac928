"""scikit-learn's handwritten digits, the project's real image data: the fixed split,
at the original 8x8 or upsampled to a larger side (the `digits` data source's
`resolution`)."""

from __future__ import annotations

import numpy as np

from compressor.config.recipe import DIGITS_SIDE, MAX_DIGITS_SIDE
from compressor.errors import DataError

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.25


def digits_arrays(split: str = "all", resolution: int = DIGITS_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits as (N,1,R,R) float32 in [0,1] and int64
    labels, R = `resolution` (the originals are 8x8; larger sides are upsampled bilinearly).
    The train/test split is stratified and fixed, so results are comparable."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not DIGITS_SIDE <= resolution <= MAX_DIGITS_SIDE:
        raise DataError(f"digits resolution {resolution}: give a side from {DIGITS_SIDE} (the originals) "
                        f"to {MAX_DIGITS_SIDE} pixels")
    d = load_digits()
    x = upsample(d.images.astype(np.float32) / 16.0, resolution)[:, None, :, :]
    y = d.target.astype(np.int64)
    if split == "all":
        return x, y
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION,
                                          random_state=DIGITS_SEED, stratify=y)
    return (xtr, ytr) if split == "train" else (xte, yte)


def upsample(images: np.ndarray, side: int) -> np.ndarray:
    """(N,H,W) images resized to (N,side,side) by bilinear interpolation, sampling at
    pixel centres (torch's `interpolate(mode="bilinear", align_corners=False)`)."""
    rows, cols = _interpolation(images.shape[1], side), _interpolation(images.shape[2], side)
    return np.einsum("ih,nhw,jw->nij", rows, images, cols).astype(np.float32)


def _interpolation(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix that interpolates a line of n_in pixels to n_out."""
    centre = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(centre).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = centre - lo
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), lo), 1 - frac)
    np.add.at(out, (np.arange(n_out), hi), frac)
    return out

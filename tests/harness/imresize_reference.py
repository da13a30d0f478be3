"""Straightforward numpy transliteration of MATLAB imresize's bicubic path (imresize.m: contributions,
resizeAlongDim), one output index at a time: the independent reference for harness.degrade."""

from __future__ import annotations

import math

import numpy as np


def _cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices 0-based, weights), each (out_len, taps), following MATLAB's contributions()."""
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    taps = math.ceil(width) + 2
    indices = np.zeros((out_len, taps), dtype=np.int64)
    weights = np.zeros((out_len, taps))
    mirror = list(range(in_len)) + list(range(in_len - 1, -1, -1))
    for i in range(out_len):
        u = (i + 1) / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        for j in range(taps):
            k = left + j
            d = u - k
            weights[i, j] = scale * _cubic(scale * d) if antialias else _cubic(d)
            indices[i, j] = mirror[(k - 1) % len(mirror)]
        weights[i] /= weights[i].sum()
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def _resize_rows(img: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """Resize axis 0 of img (H, W, ...) in float64."""
    indices, weights = contributions(img.shape[0], out_len, scale)
    out = np.empty((out_len, *img.shape[1:]))
    for i in range(out_len):
        out[i] = np.tensordot(weights[i], img[indices[i]], axes=1)
    return out


def imresize_reference(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB imresize(img, scale, 'bicubic') of a float (H, W) or (H, W, C) array, in float64."""
    img = np.asarray(img, dtype=np.float64)
    out_h, out_w = math.ceil(scale * img.shape[0]), math.ceil(scale * img.shape[1])
    rows = _resize_rows(img, out_h, scale)
    return np.swapaxes(_resize_rows(np.swapaxes(rows, 0, 1), out_w, scale), 0, 1)

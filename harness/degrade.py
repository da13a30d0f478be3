"""MATLAB-exact bicubic degradation: the LR images every benchmark in these papers is evaluated on."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_KERNEL_WIDTH = 4.0  # support of the cubic kernel, in input pixels at scale 1


def _cubic(x: Tensor) -> Tensor:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB imresize's 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[Tensor, Tensor]:
    """MATLAB imresize's `contributions`: (indices, weights), each (out_len, taps), float64 weights.

    Indices are 0-based and already folded back into [0, in_len) by symmetric padding; taps whose
    weight is zero for every output pixel are dropped, as MATLAB does.
    """
    antialias = scale < 1
    width = _KERNEL_WIDTH / scale if antialias else _KERNEL_WIDTH
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in 1-based input coordinates
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)  # 1-based
    dist = u[:, None] - indices
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # symmetric padding: MATLAB's aux = [1:in_len, in_len:-1:1] indexed modulo its length
    period = 2 * in_len
    folded = torch.remainder(indices.long() - 1, period)
    folded = torch.where(folded < in_len, folded, period - 1 - folded)
    keep = weights.ne(0).any(dim=0)
    return folded[:, keep], weights[:, keep]


def _weight_matrix(in_len: int, out_len: int, scale: float, like: Tensor) -> Tensor:
    """Sparse (out_len, in_len) matrix of MATLAB's weights, in the dtype and on the device of `like`."""
    indices, weights = _contributions(in_len, out_len, scale)
    rows = torch.arange(out_len).repeat_interleave(indices.shape[1])
    coords = torch.stack([rows, indices.flatten()])
    # indices are in range by construction; the invariant check would cost more than the resize itself
    matrix = torch.sparse_coo_tensor(coords, weights.flatten(), (out_len, in_len), check_invariants=False)
    return matrix.to(device=like.device, dtype=like.dtype)


def imresize_matlab(img: Tensor, scale: float) -> Tensor:
    """MATLAB `imresize(img, scale, 'bicubic')` on a float image, unquantised.

    img: (..., H, W) floating point (float32 or float64; any device), usually in [0, 1].
    Returns (..., ceil(scale·H), ceil(scale·W)) of the same dtype and device. When downscaling, the cubic
    kernel (a = -0.5) is widened by 1/scale (antialiasing); borders use symmetric padding. Rows are
    resized first, then columns (MATLAB's order for equal scales).
    """
    if not img.is_floating_point():
        raise TypeError(f"imresize_matlab needs a floating-point image in [0, 1], got {img.dtype}")
    if img.dim() < 2 or scale <= 0:
        raise ValueError(f"imresize_matlab needs an (..., H, W) image and scale > 0, got {tuple(img.shape)}")
    lead, (h, w) = img.shape[:-2], img.shape[-2:]
    out_h, out_w = math.ceil(scale * h), math.ceil(scale * w)
    # each axis is one sparse (out, in) @ (in, rest) product; the other axes are folded into `rest`
    x = img.reshape(-1, h, w).permute(1, 0, 2).reshape(h, -1)
    x = _weight_matrix(h, out_h, scale, img) @ x
    x = x.reshape(out_h, -1, w).permute(2, 1, 0).reshape(w, -1)
    x = _weight_matrix(w, out_w, scale, img) @ x
    return x.reshape(out_w, -1, out_h).permute(1, 2, 0).reshape(*lead, out_h, out_w)


def bicubic_downsample(hr: Tensor, s: int) -> tuple[Tensor, Tensor]:
    """The benchmark degradation: HR cropped to a multiple of `s`, and its MATLAB bicubic LR.

    hr: (..., 3, H, W) in [0, 1]. Returns (hr_cropped (..., 3, s·h, s·w), lr (..., 3, h, w)), both in the
    input dtype. The LR is what MATLAB `imresize(uint8_hr, 1/s, 'bicubic')` writes: MATLAB computes on
    uint8 input in double and rounds the result to uint8 (nearest, saturating), so the LR here is on the
    uint8 grid: round(clamp(255·x)) / 255, computed in float64.
    """
    h, w = (n - n % s for n in hr.shape[-2:])
    if h == 0 or w == 0:
        raise ValueError(f"image {tuple(hr.shape[-2:])} is smaller than the scale factor {s}")
    hr = hr[..., :h, :w]
    lr = imresize_matlab(hr.double(), 1 / s)
    lr = torch.floor(lr.mul(255).clamp(0, 255) + 0.5).div(255)  # MATLAB rounds half away from zero
    return hr, lr.to(hr.dtype)

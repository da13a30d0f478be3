"""MATLAB-exact bicubic degradation: the LR images every benchmark in these papers is evaluated on."""

from __future__ import annotations

import functools
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


def _contributions(out_len: int, scale: float) -> tuple[Tensor, Tensor]:
    """MATLAB imresize's `contributions` before padding: (indices, weights), each (out_len, taps).

    Indices are 0-based and may fall outside the input; weights are float64, each row summing to 1.
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
    return indices.long() - 1, weights / weights.sum(dim=1, keepdim=True)


def _symmetric(indices: Tensor, in_len: int) -> Tensor:
    """0-based indices folded into [0, in_len) by MATLAB's symmetric padding (aux = [1:n, n:-1:1], cyclic)."""
    period = 2 * in_len
    folded = torch.remainder(indices, period)
    return torch.where(folded < in_len, folded, period - 1 - folded)


def _weight_matrix(in_len: int, out_len: int, scale: float, like: Tensor) -> Tensor:
    """Sparse (out_len, in_len) matrix of MATLAB's weights, in the dtype and on the device of `like`."""
    indices, weights = _contributions(out_len, scale)
    keep = weights.ne(0).any(dim=0)  # MATLAB drops taps whose weight is zero for every output pixel
    indices, weights = _symmetric(indices[:, keep], in_len), weights[:, keep]
    rows = torch.arange(out_len).repeat_interleave(indices.shape[1])
    coords = torch.stack([rows, indices.flatten()])
    # indices are in range by construction; the invariant check would cost more than the resize itself
    matrix = torch.sparse_coo_tensor(coords, weights.flatten(), (out_len, in_len), check_invariants=False)
    return matrix.to(device=like.device, dtype=like.dtype)


def _resize_sparse(x: Tensor, out_h: int, out_w: int, scale: float) -> Tensor:
    """Any scale, x (n, H, W) -> (n, out_h, out_w): per axis one sparse (out, in) @ (in, rest) product."""
    n, h, w = x.shape
    x = _weight_matrix(h, out_h, scale, x) @ x.permute(1, 0, 2).reshape(h, -1)
    x = x.reshape(out_h, n, w).permute(2, 1, 0).reshape(w, -1)
    x = _weight_matrix(w, out_w, scale, x) @ x
    return x.reshape(out_w, n, out_h).permute(1, 2, 0)


_BLOCK = 4  # output pixels per matmul block on the integer-factor path: the fastest of 1, 2, 4, 8 on CPU
# float64 input bytes per strip of the integer-factor path: every intermediate stays in cache and reuses the
# same few blocks of memory, rather than fresh pages from the OS for image-sized buffers (which, on a busy
# machine, cost more than the resize itself)
_STRIP_BYTES = 1 << 20


def _first_tap(in_len: int, scale: float) -> int:
    """0-based input index (before symmetric folding) of the first nonzero tap of output pixel 0."""
    indices, weights = _contributions(1, scale)
    return int(indices[0, weights[0].nonzero()[0, 0]].item())


@functools.lru_cache(maxsize=64)  # building it costs about a tenth of a 512² resize
def _band(in_len: int, scale: float) -> tuple[Tensor, Tensor, int, int]:
    """Downscaling one axis by an integer factor s = 1/scale as one band applied to consecutive blocks.

    Every output pixel has the same weights (its centre sits at the same offset from the input grid) and
    its window starts s pixels after the previous one's. Returns (index, band, out_len, blocks): index
    (padded blocks, s·_BLOCK) is symmetric-folded, padded = input[index.flatten()], and outputs
    _BLOCK·m ... _BLOCK·m + _BLOCK − 1 are band (_BLOCK, K) @ padded[s·_BLOCK·m : s·_BLOCK·m + K].
    Both are CPU tensors (band float64) shared between calls: never modify them.
    """
    indices, weights = _contributions(1, scale)
    nonzero = weights[0].nonzero().flatten().tolist()
    first, weights = indices[0, nonzero[0]].item(), weights[0, nonzero[0] : nonzero[-1] + 1]
    s = round(1 / scale)
    out_len, taps, step = math.ceil(scale * in_len), weights.numel(), s * _BLOCK
    blocks = math.ceil(out_len / _BLOCK)
    padded_blocks = blocks + math.ceil((taps - s) / step)  # the last window reaches into the next blocks
    band = torch.zeros(_BLOCK, step + taps - s, dtype=torch.float64)
    for i in range(_BLOCK):
        band[i, s * i : s * i + taps] = weights
    index = _symmetric(first + torch.arange(padded_blocks * step), in_len).view(padded_blocks, step)
    return index, band, out_len, blocks


def _folded(x: Tensor, start: int, length: int) -> Tensor:
    """Rows start .. start + length − 1 of x (L, C) under MATLAB's symmetric padding, as float64: a plain
    slice inside the image, an index only for the folded rows at its edges; always a contiguous copy."""
    in_len = x.shape[0]
    lo, hi = max(start, 0), min(start + length, in_len)
    parts = []
    if start < lo:
        parts.append(x.index_select(0, _symmetric(torch.arange(start, lo), in_len).to(x.device)))
    parts.append(x[lo:hi])
    if start + length > hi:
        parts.append(x.index_select(0, _symmetric(torch.arange(hi, start + length), in_len).to(x.device)))
    out = torch.cat(parts) if len(parts) > 1 else parts[0]
    return out.to(torch.float64, copy=True, memory_format=torch.contiguous_format)


def _band_rows(x: Tensor, band: Tensor, step: int, blocks: int) -> Tensor:
    """band (_BLOCK, K) applied to blocks of rows of x (R, C): block m reads rows m·step .. m·step + K − 1
    (overlapping windows: batch matrices of one strided view, no copy) → (_BLOCK·blocks, C)."""
    cols = x.shape[1]
    windows = x.as_strided((blocks, band.shape[1], cols), (step * cols, cols, 1))
    return (band @ windows).view(-1, cols)


def _downscale_integer(x: Tensor, scale: float, quantise: bool) -> Tensor:
    """Integer factor 1/scale on both axes of x (n, H, W) → (n, ceil(scale·H), ceil(scale·W)) in x's dtype,
    computed in float64 strip by strip (rows, then columns, as MATLAB); ``quantise`` rounds the result as
    MATLAB writes uint8: floor(clamp(255·v, 0, 255) + 0.5) / 255.

    Per strip of output rows: the input rows its windows need (symmetric padding folded in) are copied to
    float64, each block of _BLOCK output rows is the band times a window of them; the strip is transposed
    with its columns' padding and filtered the same way along what were its columns.
    """
    n, h, w = x.shape
    row_index, row_band, out_h, row_blocks = _band(h, scale)
    col_index, col_band, out_w, col_blocks = _band(w, scale)
    row_step, col_step = row_index.shape[1], col_index.shape[1]
    row_first, col_first = _first_tap(h, scale), _first_tap(w, scale)
    row_band, col_band = row_band.to(x.device), col_band.to(x.device)
    per_strip = max(1, _STRIP_BYTES // (8 * row_step * w))
    out = x.new_empty(n, out_h, out_w)
    for c in range(n):
        for b0 in range(0, row_blocks, per_strip):
            b1 = min(b0 + per_strip, row_blocks)
            span = (b1 - b0 - 1) * row_step + row_band.shape[1]
            rows = _band_rows(_folded(x[c], row_first + b0 * row_step, span), row_band, row_step, b1 - b0)
            span = (col_blocks - 1) * col_step + col_band.shape[1]
            strip = _band_rows(_folded(rows.T, col_first, span), col_band, col_step, col_blocks)
            top, bottom = _BLOCK * b0, min(_BLOCK * b1, out_h)
            strip = strip[:out_w, : bottom - top].T
            if quantise:
                strip = strip.mul(255).clamp_(0, 255).add_(0.5).floor_().div_(255)
            out[c, top:bottom] = strip
    return out


def _integer_factor(scale: float) -> bool:
    return scale < 1 and (1 / scale).is_integer()


def imresize_matlab(img: Tensor, scale: float) -> Tensor:
    """MATLAB `imresize(img, scale, 'bicubic')` on a float image, unquantised.

    img: (..., H, W) floating point (float32 or float64; any device), usually in [0, 1].
    Returns (..., ceil(scale·H), ceil(scale·W)) of the same dtype and device; downscaling by an integer
    factor computes in float64 whatever the input dtype, other scales in the input's. When downscaling, the
    cubic
    kernel (a = -0.5) is widened by 1/scale (antialiasing); borders use symmetric padding. Rows are
    resized first, then columns (MATLAB's order for equal scales).
    """
    if not img.is_floating_point():
        raise TypeError(f"imresize_matlab needs a floating-point image in [0, 1], got {img.dtype}")
    if img.dim() < 2 or scale <= 0:
        raise ValueError(f"imresize_matlab needs an (..., H, W) image and scale > 0, got {tuple(img.shape)}")
    lead, (h, w) = img.shape[:-2], img.shape[-2:]
    out_h, out_w = math.ceil(scale * h), math.ceil(scale * w)
    x = img.reshape(-1, h, w)
    if _integer_factor(scale) and x.numel() > 0:
        x = _downscale_integer(x, scale, quantise=False)
    else:
        x = _resize_sparse(x, out_h, out_w, scale)
    return x.reshape(*lead, out_h, out_w)


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
    if s == 1:
        return hr, hr.double().mul(255).clamp(0, 255).add(0.5).floor().div(255).to(hr.dtype)
    lr = _downscale_integer(hr.reshape(-1, h, w), 1 / s, quantise=True)  # MATLAB: half away from zero
    return hr, lr.reshape(*hr.shape[:-2], h // s, w // s)

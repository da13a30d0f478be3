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


_BLOCK = 8  # output pixels per band on the integer-factor path: the fastest of 4, 8, 16 on one CPU thread
# Largest relative error of the float32 integer-factor pass, per multiply-add of a dot product of the band
# (γ_n = n·u with u = 2^-24 for float32), doubled for safety: see _near_half.
_F32_UNIT = 2.0**-23


@functools.lru_cache(maxsize=16)
def _taps(s: int) -> tuple[int, Tensor]:
    """Downscaling by the integer factor s: every output pixel has the same weights, its window starting s
    input pixels after the previous one's. Returns (offset, weights): output pixel i reads input pixels
    s·i + offset + k (0-based, before symmetric folding) with weights[k] (float64, MATLAB's nonzero taps in
    MATLAB's order)."""
    indices, weights = _contributions(1, 1 / s)
    nonzero = weights[0].nonzero().flatten().tolist()
    return int(indices[0, nonzero[0]].item()), weights[0, nonzero[0] : nonzero[-1] + 1]


@functools.lru_cache(maxsize=32)
def _band(s: int, gain: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(_BLOCK, s·_BLOCK + taps − s): row i holds gain × the taps at columns s·i .., so band @ rows[s·_BLOCK·m
    : s·_BLOCK·m + columns] gives outputs _BLOCK·m .. _BLOCK·m + _BLOCK − 1. Shared between calls: read
    only."""
    weights = _taps(s)[1] * gain
    taps = weights.numel()
    band = torch.zeros(_BLOCK, s * _BLOCK + taps - s, dtype=torch.float64)
    for i in range(_BLOCK):
        band[i, s * i : s * i + taps] = weights
    return band.to(device=device, dtype=dtype)


def _filter_dim0(x: Tensor, band: Tensor, offset: int, out_len: int, s: int) -> Tensor:
    """The band along dim 0 of x (L, C) (any strides, symmetric padding at both ends) → (≥ out_len, C).

    Blocks of output rows whose windows lie inside x read it through one strided view (no copy: a batched
    matmul at BLAS speed); the few at either end read a folded copy of the rows they need.
    """
    n, cols = x.shape
    rows, length = band.shape
    step, blocks = s * rows, -(-out_len // rows)
    lo = min(blocks, max(0, -(offset // step)))  # first block starting inside x
    hi = max(lo, min(blocks, (n - length - offset) // step + 1))  # blocks [lo, hi) end inside x too
    out = x.new_empty(blocks, rows, cols)
    if hi > lo:
        start = x.storage_offset() + (offset + lo * step) * x.stride(0)
        windows = x.as_strided((hi - lo, length, cols), (step * x.stride(0), x.stride(0), x.stride(1)), start)
        torch.matmul(band, windows, out=out[lo:hi])
    for a, b in ((0, lo), (hi, blocks)):
        if b > a:
            index = _symmetric(offset + a * step + torch.arange((b - a - 1) * step + length), n)
            folded = x.index_select(0, index.to(x.device))
            windows = folded.as_strided((b - a, length, cols), (step * cols, cols, 1))
            torch.matmul(band, windows, out=out[a:b])
    return out.view(blocks * rows, cols)


def _downscale_integer(x: Tensor, s: int, dtype: torch.dtype, gain: float = 1.0) -> Tensor:
    """gain × MATLAB bicubic downscaling by the integer factor s of x (n, H, W) → (n, ceil(H/s), ceil(W/s)),
    computed in `dtype` (rows, then columns), up to that dtype's rounding: see _near_half for its bound."""
    n, h, w = x.shape
    offset = _taps(s)[0]
    row_band, col_band = _band(s, gain, dtype, x.device), _band(s, 1.0, dtype, x.device)
    out_h, out_w = -(-h // s), -(-w // s)
    x = x.to(dtype)
    out = x.new_empty(n, out_h, out_w)
    for c in range(n):
        rows = _filter_dim0(x[c], row_band, offset, out_h, s)[:out_h]
        out[c] = _filter_dim0(rows.T, col_band, offset, out_w, s)[:out_w].T
    return out


def _near_half(levels: Tensor, s: int, input_error: float) -> Tensor:
    """Mask of the float32 levels (from _downscale_integer with gain 255 of an image in [0, 1] whose values
    are within `input_error` of MATLAB's) whose rounding could differ from MATLAB's float64 result.

    Each pass's dot products of length n have error ≤ γ_n·Σ|w·x| (any order, FMA or not: Higham's bound),
    plus one rounding of the weights; the second pass also carries the first's error, scaled by Σ|w|.
    """
    weights = _taps(s)[1]
    sum_abs, length = weights.abs().sum().item(), _band(s, 1.0, torch.float64, torch.device("cpu")).shape[1]
    bound = 255 * sum_abs**2 * ((2 * length + 4) * _F32_UNIT + input_error)
    return (levels - levels.floor() - 0.5).abs() <= bound


def _matlab_levels(x: Tensor, pixels: Tensor, s: int) -> Tensor:
    """MATLAB's uint8 result (float64 levels, on the CPU) at the output pixels (m, 3) = (image, row, column)
    of x (n, H, W) (taken as _matlab_input gives it), computed exactly as MATLAB does: per output pixel the
    sums over taps in order (each product rounded, then added), rows first, then floor(255·v + 0.5)
    clamped."""
    offset, weights = _taps(s)
    taps = torch.arange(weights.numel())
    image, row, col = pixels.cpu().unbind(1)
    rows = _symmetric(s * row[:, None] + offset + taps, x.shape[1])
    cols = _symmetric(s * col[:, None] + offset + taps, x.shape[2])
    patch = _matlab_input(
        x.cpu()[image[:, None, None], rows[:, :, None], cols[:, None, :]]
    )  # (m, taps, taps)
    acc = patch[:, 0] * weights[0].item()
    for k in range(1, weights.numel()):
        acc = acc + patch[:, k] * weights[k].item()
    out = acc[:, 0] * weights[0].item()
    for k in range(1, weights.numel()):
        out = out + acc[:, k] * weights[k].item()
    return out.mul(255).clamp(0, 255).add(0.5).floor()


def _integer_factor(scale: float) -> bool:
    return scale < 1 and (1 / scale).is_integer()


def imresize_matlab(img: Tensor, scale: float) -> Tensor:
    """MATLAB `imresize(img, scale, 'bicubic')` on a float image, unquantised.

    img: (..., H, W) floating point (any device), usually in [0, 1]. Returns (..., ceil(scale·H),
    ceil(scale·W)) of the same dtype and device; downscaling by an integer factor computes in float64
    whatever the input dtype, other scales in the input's. When downscaling, the cubic kernel (a = -0.5) is
    widened by 1/scale (antialiasing); borders use symmetric padding. Rows are resized first, then columns
    (MATLAB's order for equal scales).
    """
    if not img.is_floating_point():
        raise TypeError(f"imresize_matlab needs a floating-point image in [0, 1], got {img.dtype}")
    if img.dim() < 2 or scale <= 0:
        raise ValueError(f"imresize_matlab needs an (..., H, W) image and scale > 0, got {tuple(img.shape)}")
    lead, (h, w) = img.shape[:-2], img.shape[-2:]
    out_h, out_w = math.ceil(scale * h), math.ceil(scale * w)
    x = img.reshape(-1, h, w)
    if _integer_factor(scale) and x.numel() > 0:
        x = _downscale_integer(x, round(1 / scale), torch.float64).to(img.dtype)
    else:
        x = _resize_sparse(x, out_h, out_w, scale)
    return x.reshape(*lead, out_h, out_w)


def _matlab_input(x: Tensor) -> Tensor:
    """x as the float64 values MATLAB's im2double gives for a uint8 image: a value within half the dtype's
    machine epsilon of a level k/255 (k/255 as float32 or float16 holds it) becomes float64 k/255."""
    x64 = x.double()
    level = x64.mul(255).round().div(255)
    return torch.where((x64 - level).abs() <= torch.finfo(x.dtype).eps / 2, level, x64)


def bicubic_downsample(hr: Tensor, s: int) -> tuple[Tensor, Tensor]:
    """The benchmark degradation: HR cropped to a multiple of `s`, and its MATLAB bicubic LR.

    hr: (..., 3, H, W) floating point in [0, 1]. Returns (hr_cropped (..., 3, s·h, s·w), lr (..., 3, h, w)),
    both in the input dtype. The LR is bit for bit what the benchmarks' MATLAB LR images hold:
    `im2uint8(imresize(im2double(uint8_hr), 1/s, 'bicubic'))`, i.e. MATLAB's float64 sums over k/255 in
    its order (rows, then columns; taps in order), then floor(255·v + 0.5) saturated (HR values within
    half a machine epsilon of a level k/255 are taken as that level). A float32 pass gives every pixel to
    within a proven error bound; the few whose value lies within that bound of a rounding boundary are
    recomputed exactly as MATLAB does (_matlab_levels).
    """
    if not hr.is_floating_point():
        raise TypeError(f"bicubic_downsample needs a floating-point image in [0, 1], got {hr.dtype}")
    h, w = (n - n % s for n in hr.shape[-2:])
    if h == 0 or w == 0:
        raise ValueError(f"image {tuple(hr.shape[-2:])} is smaller than the scale factor {s}")
    hr = hr[..., :h, :w]
    x = hr.reshape(-1, h, w)
    if s == 1:
        levels = _matlab_input(x).mul(255).clamp(0, 255).add(0.5).floor()
    else:
        levels = _downscale_integer(x, s, torch.float32, gain=255.0)
        input_error = (torch.finfo(x.dtype).eps + torch.finfo(torch.float32).eps) / 2
        near = _near_half(levels, s, input_error)
        levels = levels.clamp_(0, 255).add_(0.5).floor_()
        pixels = near.nonzero()
        if len(pixels):
            levels[near] = _matlab_levels(x, pixels, s).to(levels.dtype)
    lr = levels.to(torch.float64 if hr.dtype == torch.float64 else torch.float32).div_(255).to(hr.dtype)
    return hr, lr.reshape(*hr.shape[:-2], h // s, w // s)

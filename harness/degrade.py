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
# input bytes per call of the integer-factor path: smaller intermediates stay in cache and reuse freed memory
# rather than fresh pages from the OS (2–3× faster on DIV2K-sized float64 images and on patch batches)
_CHUNK_BYTES = 4 << 20


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


def _downscale_rows(x: Tensor, scale: float) -> Tensor:
    """Integer factor 1/scale along H of x (n, H, W) -> (n, ceil(scale·H), W)."""
    n, h, w = x.shape
    index, band, out_len, blocks = _band(h, scale)
    (b, k), (per_image, step) = band.shape, index.shape
    padded = x.index_select(1, index.flatten().to(x.device))
    # the images' padded rows lie end to end, so all blocks are one batched matmul over overlapping
    # windows; windows straddling two images are computed and never read
    windows = padded.as_strided((n * per_image - (per_image - blocks), k, w), (step * w, w, 1))
    return (band.to(x) @ windows).as_strided((n, out_len, w), (per_image * b * w, w, 1))


def _downscale_cols(x: Tensor, scale: float) -> Tensor:
    """Integer factor 1/scale along W of x (n, H, W) -> (n, H, ceil(scale·W)); as _downscale_rows, per row."""
    n, h, w = x.shape
    index, band, out_len, blocks = _band(w, scale)
    (b, k), (per_row, step) = band.shape, index.shape
    # gather, not index_select: on the last axis it is several times faster for float64
    padded = x.gather(2, index.flatten().to(x.device).expand(n, h, -1))
    windows = padded.as_strided((n * h * per_row - (per_row - blocks), k), (step, 1))
    return (windows @ band.to(x).T).as_strided((n, h, out_len), (h * per_row * b, per_row * b, 1))


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
    x = img.reshape(-1, h, w)
    if scale < 1 and (1 / scale).is_integer() and x.numel() > 0:
        per_chunk = max(1, _CHUNK_BYTES // (h * w * x.element_size()))
        x = torch.cat([_downscale_cols(_downscale_rows(c, scale), scale) for c in x.split(per_chunk)])
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
    lr = imresize_matlab(hr.double(), 1 / s)
    lr = torch.floor(lr.mul(255).clamp(0, 255) + 0.5).div(255)  # MATLAB rounds half away from zero
    return hr, lr.to(hr.dtype)

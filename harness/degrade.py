"""MATLAB-exact bicubic degradation: the LR images every benchmark in these papers is evaluated on."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from harness import degrade_c
from harness.errors import UserError

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


_BLOCK = 4  # output pixels per band on the integer-factor path: the fastest of 1, 2, 4, 8 on one CPU thread
# bytes of band-filtered rows per strip: a strip stays in cache through both passes and the rounding, and
# no image-sized buffer is allocated (fresh pages from the OS cost more than the resize on a busy machine)
_STRIP_BYTES = 1 << 19


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


def _filter_dim0(x: Tensor, band: Tensor, offset: int, blocks: range, s: int) -> Tensor:
    """Output blocks `blocks` of the band along dim 0 of x (L, C) (any strides; symmetric padding at both
    ends) → (len(blocks)·_BLOCK, C).

    Blocks whose windows lie inside x read it through one strided view (no copy: a batched matmul at BLAS
    speed); those at either end read a folded copy of the rows they need.
    """
    n, cols = x.shape
    rows, length = band.shape
    step, first, stop = s * rows, blocks.start, blocks.stop
    lo = min(stop, max(first, -(offset // step)))  # first block starting inside x
    hi = max(lo, min(stop, (n - length - offset) // step + 1))  # blocks [lo, hi) end inside x too
    edges = [(a, b) for a, b in ((first, lo), (hi, stop)) if b > a]
    out = x.new_empty(stop - first, rows, cols)
    for a, b, source, start in [
        (lo, hi, x, offset + lo * step),
        *((a, b, _folded(x, offset + a * step, (b - a - 1) * step + length), 0) for a, b in edges),
    ]:
        if b > a:
            r, c = source.stride()
            windows = source.as_strided(
                (b - a, length, cols), (step * r, r, c), source.storage_offset() + start * r
            )
            # bmm of the overlapping windows as they lie in memory (matmul would copy them)
            torch.bmm(band.expand(b - a, rows, length), windows, out=out[a - first : b - first])
    return out.view(-1, cols)


def _folded(x: Tensor, start: int, length: int) -> Tensor:
    """Rows start .. start + length − 1 of x (L, C) under symmetric padding, as a copy laid out as x is
    (row-major or column-major: gathering whole rows or whole columns of memory)."""
    index = _fold_index(x.shape[0], start, length).to(x.device)
    return x.index_select(0, index) if x.stride(1) == 1 else x.T.index_select(1, index).T


@functools.lru_cache(maxsize=256)
def _fold_index(n: int, start: int, length: int) -> Tensor:
    """_symmetric(start .. start + length − 1, n), cached: every strip of every image of a size needs the
    same few. Shared between calls: read only."""
    return _symmetric(start + torch.arange(length), n)


def _downscale_integer(
    x: Tensor, s: int, dtype: torch.dtype, gain: float = 1.0, bound: float | None = None
) -> tuple[Tensor, Tensor]:
    """gain × MATLAB bicubic downscaling by the integer factor s of x (n, H, W) → (n, ceil(H/s), ceil(W/s)),
    computed in `dtype`, strip by strip of output rows (rows, then columns).

    With `bound` (the largest error of the computed values, in levels: gain 255), every value is clamped to
    0..255 and rounded to the nearest level, and the second result lists the pixels (m, 3) = (image, row,
    column) whose value lies within `bound` of a rounding boundary (their level may be wrong); otherwise
    that list is empty.
    """
    n, h, w = x.shape
    offset = _taps(s)[0]
    row_band, col_band = _band(s, gain, dtype, x.device), _band(s, 1.0, dtype, x.device)
    out_h, out_w = -(-h // s), -(-w // s)
    # read_image gives channels-last memory: BLAS needs unit-stride rows (filtering all channels at once as
    # one (H, W·n) matrix measured slower at DIV2K size: splitting each strip's channels costs more)
    x = x.to(dtype).contiguous()
    per_strip = max(1, _STRIP_BYTES // (x.element_size() * w * _BLOCK))
    out = x.new_empty(n, out_h, out_w)
    near = [torch.empty(0, 3, dtype=torch.long, device=x.device)]
    for b0 in range(0, -(-out_h // _BLOCK), per_strip):
        strip = range(b0, min(b0 + per_strip, -(-out_h // _BLOCK)))
        top, bottom = b0 * _BLOCK, min(strip.stop * _BLOCK, out_h)
        for c in range(n):
            rows = _filter_dim0(x[c], row_band, offset, strip, s)[: bottom - top]
            columns = _filter_dim0(rows.T, col_band, offset, range(-(-out_w // _BLOCK)), s)
            out[c, top:bottom] = columns[:out_w].T
        if bound is not None:
            part = out[:, top:bottom]
            level = part.clamp_(0, 255).round()
            image, row, col = part.sub_(level).abs_().ge(0.5 - bound).nonzero().unbind(1)
            near.append(torch.stack([image, row + top, col], dim=1))
            part.copy_(level)
    return out, torch.cat(near)


@functools.lru_cache(maxsize=64)
def _error_bound(s: int, input_error: float) -> float:
    """Largest |float32 levels − MATLAB's float64 levels| of _downscale_integer(x, s, float32, gain=255)
    for x in [-1, 1] within `input_error` of MATLAB's input.

    A dot product of t nonzero terms in float32 errs by at most γ_t·Σ|w·x| ≈ t·u·Σ|w·x| (any order, FMA or
    not, zeros adding nothing: Higham, Accuracy and Stability, §3.1), plus u·Σ|w·x| for the float32 weights;
    the second pass carries the first's error scaled by Σ|w|; MATLAB's own float64 error (≈ 1e-12 levels)
    is covered by the 1e-9 and the 10 % margin.
    """
    weights = _taps(s)[1]
    total, u = weights.abs().sum().item(), 2.0**-24
    return 1.1 * 255 * total**2 * (2 * (weights.numel() + 1) * u + input_error) + 1e-9


def _matlab_levels(x: Tensor, pixels: Tensor, s: int) -> Tensor:
    """MATLAB's uint8 result (float64 levels, on the CPU) at the output pixels (m, 3) = (image, row, column)
    of x (n, H, W) (taken as _matlab_input gives it), computed exactly as MATLAB does: per output pixel the
    sums over taps in order (each product rounded, then added), rows first, then floor(255·v + 0.5)
    clamped."""
    offset, weights = _taps(s)
    taps = torch.arange(weights.numel())
    x = x.cpu()
    image, row, col = pixels.cpu().unbind(1)
    rows = _symmetric(s * row[:, None] + offset + taps, x.shape[1])
    cols = _symmetric(s * col[:, None] + offset + taps, x.shape[2])
    # (m, taps, taps) patches by flat storage index: index_select is 5–10× faster than take or x[i, r, c]
    n, h, w = x.shape
    span = x.as_strided(((n - 1) * x.stride(0) + (h - 1) * x.stride(1) + (w - 1) * x.stride(2) + 1,), (1,))
    flat = (
        (image * x.stride(0))[:, None, None]
        + (rows * x.stride(1))[:, :, None]
        + (cols * x.stride(2))[:, None]
    )
    patch = _matlab_input(span.index_select(0, flat.flatten()).view(flat.shape))
    acc = patch[:, 0] * weights[0].item()
    for k in range(1, weights.numel()):
        acc = acc + patch[:, k] * weights[k].item()
    out = acc[:, 0] * weights[0].item()
    for k in range(1, weights.numel()):
        out = out + acc[:, k] * weights[k].item()
    return out.mul(255).clamp(0, 255).add(0.5).floor()


def _compiled(x: Tensor) -> bool:
    """Whether the compiled kernel computes x (n, H, W): a non-empty CPU tensor, and the kernel built."""
    return x.device.type == "cpu" and x.numel() > 0 and degrade_c.kernel() is not None


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
        raise UserError(f"imresize_matlab needs an (..., H, W) image and scale > 0, got {tuple(img.shape)}")
    lead, (h, w) = img.shape[:-2], img.shape[-2:]
    out_h, out_w = math.ceil(scale * h), math.ceil(scale * w)
    x = img.reshape(-1, h, w)
    if _integer_factor(scale) and x.numel() > 0:
        x = _downscale_integer(x, round(1 / scale), torch.float64)[0].to(img.dtype)
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
    half a machine epsilon of a level k/255 are taken as that level), as level/255. A float32 pass gives
    every pixel to within a proven error bound (_error_bound, scaled by the largest |input| beyond 1); the
    few whose value lies within that bound of a rounding boundary are recomputed exactly as MATLAB does. On
    the CPU this runs in the compiled kernel (harness.degrade_c: one pass over the input, rows of all planes
    at once); without a C compiler, or on other devices, in torch (_downscale_integer, then
    _matlab_levels). Both give the same bits.
    """
    hr, lr = _matlab_lr(hr, s, torch.float64 if hr.dtype == torch.float64 else torch.float32)
    return hr, lr.to(hr.dtype)


def bicubic_levels(hr: Tensor, s: int) -> Tensor:
    """The LR of `bicubic_downsample` as the uint8 levels its MATLAB-made PNG holds: (..., 3, H // s,
    W // s), computed without the float image in between. What writing an LR image needs."""
    return _matlab_lr(hr, s, torch.uint8)[1]


def _matlab_lr(hr: Tensor, s: int, out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """HR cropped to a multiple of `s`, and its MATLAB LR: uint8 levels, or level/255 in float32/float64."""
    if not hr.is_floating_point():
        raise TypeError(f"MATLAB bicubic degradation needs a floating-point image in [0, 1], got {hr.dtype}")
    h, w = (n - n % s for n in hr.shape[-2:])
    if h == 0 or w == 0:
        raise UserError(f"image {tuple(hr.shape[-2:])} is smaller than the scale factor {s}")
    hr = hr[..., :h, :w]
    x = hr.reshape(-1, h, w)
    input_error = (torch.finfo(x.dtype).eps + torch.finfo(torch.float32).eps) / 2
    if s > 1 and _compiled(x):
        offset, weights = _taps(s)
        tol, bound = torch.finfo(x.dtype).eps / 2, _error_bound(s, input_error)
        x = x if x.dtype in (torch.float32, torch.float64) else x.float()
        lr = degrade_c.downsample(x, s, offset, weights, tol, bound, out_dtype)
        return hr, lr.reshape(*hr.shape[:-2], h // s, w // s)
    top = x.abs().max().item()  # NaN propagates
    if not math.isfinite(top):
        raise ValueError(degrade_c.NON_FINITE)
    if s == 1:
        levels = _matlab_input(x).mul(255).clamp(0, 255).add(0.5).floor()
    else:
        # the bound holds for inputs in [-1, 1] and grows with their largest magnitude
        bound = _error_bound(s, input_error) * max(1.0, top)
        levels, near = _downscale_integer(x, s, torch.float32, gain=255.0, bound=bound)
        if len(near):
            levels[near.unbind(1)] = _matlab_levels(x, near, s).to(levels)
    lr = levels.to(out_dtype) if out_dtype == torch.uint8 else levels.to(out_dtype).div_(255)
    return hr, lr.reshape(*hr.shape[:-2], h // s, w // s)

"""Image-quality metrics under the named conventions the papers report.

Every metric takes sr, hr as float tensors in [0, 1] (float16, bfloat16, float32 or float64) or uint8
tensors (levels 0..255), (3, H, W) → float or (B, 3, H, W) → tensor (B,) of float64, rounds both to the
uint8 grid first (as BasicSR and EDSR-PyTorch save or quantise the SR image before scoring), computes in
float64 on sr's device (on the CPU for MPS, which has no float64) and shaves `scale` pixels on every
border. No metric writes into its inputs.
:func:`scores` gives several conventions of one pair at once, sharing the quantisation and the Y channel.

On the CPU the image is scored in strips of rows (each with the 10-row halo SSIM's window needs), so every
intermediate stays in cache and no large buffer is allocated per image; on a GPU, in one strip.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from harness.errors import UserError

# MATLAB rgb2ycbcr luma row (weights of RGB in [0, 1], giving Y in [16, 235]), per uint8 level
_Y_PER_LEVEL = (65.481 / 255, 128.553 / 255, 24.966 / 255)
# EDSR-PyTorch utility.calc_psnr: its own luma constants /256, applied to the difference of RGB in [0, 1]
_EDSR_PER_LEVEL = (65.738 / 256 / 255, 129.057 / 256 / 255, 25.064 / 256 / 255)
_SSIM_WINDOW, _SSIM_SIGMA, _SSIM_K1, _SSIM_K2, _DATA_RANGE = 11, 1.5, 0.01, 0.03, 255.0
_HALO = _SSIM_WINDOW - 1
_FILTER_BLOCK = 8  # output rows per band of the Gaussian filter's matmul: the fastest of 8–64 on CPU
_COLUMN_BLOCK = 12  # columns per block of the column filter (>= 10: a window spans at most two blocks)
_STRIP_PIXELS = 1 << 15  # pixels per image row strip on the CPU: the fastest of 2^13–2^18 (cache-sized)


def to_uint8(img: Tensor) -> Tensor:
    """[0, 1] float (any floating dtype) → uint8 exactly as every metric here quantises it: clamp, ×255,
    round half to even (torch.round, as BasicSR's tensor2img), computed in float64; a uint8 image is
    already quantised and comes back as a copy. Never writes into `img`."""
    return _uint8_grid(img).to(torch.uint8)


def _uint8_grid(img: Tensor) -> Tensor:
    """A new float64 tensor on 0..255: a float image in [0, 1] clamped, ×255 and rounded half to even; a
    uint8 image's levels as they are. Other dtypes are an error."""
    if img.dtype == torch.uint8:
        return img.double()
    if not img.is_floating_point():
        raise TypeError(f"expected a float image in [0, 1] or a uint8 image, got {img.dtype}")
    # copy=True: img.double() would be img itself for float64 input, which must stay untouched
    return img.to(torch.float64, copy=True).clamp_(0, 1).mul_(255).round_()


def _luma(img: Tensor, weights: tuple[float, float, float], offset: float = 0.0) -> Tensor:
    """(B, 3, H, W) → (B, H, W): offset + weighted channel sum."""
    out = torch.mul(img[:, 0], weights[0])
    out.add_(img[:, 1], alpha=weights[1]).add_(img[:, 2], alpha=weights[2])
    return out.add_(offset) if offset else out


class _Strip:
    """Rows of a quantised (sr, hr) pair, (B, 3, rows, W) float64 on 0..255, with their Y on demand."""

    def __init__(self, sr: Tensor, hr: Tensor):
        self.sr, self.hr = _uint8_grid(sr), _uint8_grid(hr)

    @functools.cached_property
    def y(self) -> tuple[Tensor, Tensor]:
        """MATLAB rgb2ycbcr Y, 16 + (65.481 R + 128.553 G + 24.966 B)/255, of sr and hr: (B, rows, W)."""
        return tuple(_luma(img, _Y_PER_LEVEL, 16.0) for img in (self.sr, self.hr))


# Each convention sums its per-pixel term over a strip's rows; the sum over all strips / pixels is the
# mean it needs. A strip is scored on rows [0, own) of its tensors (the rest is SSIM's halo).
def _sse_y(s: _Strip, own: int) -> Tensor:
    x, y = s.y
    return (x[:, :own] - y[:, :own]).pow_(2).sum(dim=(1, 2))


def _sse_rgb(s: _Strip, own: int) -> Tensor:
    return (s.sr[:, :, :own] - s.hr[:, :, :own]).pow_(2).sum(dim=(1, 2, 3)) / 3


def _sse_edsr(s: _Strip, own: int) -> Tensor:
    return _luma(s.sr[:, :, :own] - s.hr[:, :, :own], _EDSR_PER_LEVEL).pow_(2).sum(dim=(1, 2))


def _gaussian_taps() -> Tensor:
    """MATLAB fspecial("gaussian", 11, 1.5)'s separable 1-D factor, float64."""
    t = torch.arange(_SSIM_WINDOW, dtype=torch.float64) - _HALO / 2
    g = torch.exp(-(t**2) / (2 * _SSIM_SIGMA**2))
    return g / g.sum()


@functools.lru_cache(maxsize=8)
def _row_band(device: torch.device) -> Tensor:
    """(block, block + 10): row i holds the taps at columns i..i+10, so band @ rows[k·block : k·block + block
    + 10] filters `block` consecutive rows."""
    band = torch.zeros(_FILTER_BLOCK, _FILTER_BLOCK + _HALO, dtype=torch.float64)
    for i in range(_FILTER_BLOCK):
        band[i, i : i + _SSIM_WINDOW] = _gaussian_taps()
    return band.to(device)


@functools.lru_cache(maxsize=8)
def _column_bands(device: torch.device) -> tuple[Tensor, Tensor]:
    """(near, far), each (block, block): output column i of a block of _COLUMN_BLOCK columns is that block's
    columns @ near[:, i] + the next block's columns @ far[:, i] (taps at input columns i..i+10)."""
    b = _COLUMN_BLOCK
    both = torch.zeros(2 * b, b, dtype=torch.float64)
    for i in range(b):
        both[i : i + _SSIM_WINDOW, i] = _gaussian_taps()
    return both[:b].to(device), both[b:].to(device)


def _padded(rows: int) -> int:
    """Rows a matrix needs so that the 'valid' filter of its first `rows` rows fills whole bands."""
    return -(-(rows - _HALO) // _FILTER_BLOCK) * _FILTER_BLOCK + _HALO


def _filter_rows(x: Tensor, rows: int) -> Tensor:
    """'valid' 11-tap Gaussian along the first axis of x[:rows] for x (_padded(rows), C) (the extra rows
    are read, their outputs dropped) → (rows − 10, C), followed in its storage by at least C finite values
    (what :func:`_filter_columns` needs).

    The bands of consecutive output rows read overlapping windows of x, the batch matrices of one strided
    view (no copy): the filter is one batched matmul at BLAS speed.
    """
    cols = x.shape[1]
    blocks = (x.shape[0] - _HALO) // _FILTER_BLOCK
    windows = x.as_strided((blocks, _FILTER_BLOCK + _HALO, cols), (_FILTER_BLOCK * cols, cols, 1))
    out = x.new_empty(blocks * _FILTER_BLOCK + 1, cols)
    out[-1].zero_()
    torch.matmul(_row_band(x.device), windows, out=out[:-1].view(blocks, _FILTER_BLOCK, cols))
    return out[: rows - _HALO]


def _filter_columns(x: Tensor) -> Tensor:
    """The 11-tap Gaussian along the second axis of x (R, C), C a multiple of _COLUMN_BLOCK: output column
    c = Σ_k g_k x[:, c + k] for every c (those whose window passes the right edge are garbage).

    As (R·C / block, block) matrices, x's blocks of columns and the blocks one to their right are two
    views of the same memory, so the filter is two plain matmuls with the (block, block) near and far
    parts of the band; x must be followed by a block of finite values in its storage (_filter_rows).
    """
    rows, cols = x.shape
    near, far = _column_bands(x.device)
    blocks = x.as_strided((rows * cols // _COLUMN_BLOCK, _COLUMN_BLOCK), (_COLUMN_BLOCK, 1))
    following = x.as_strided(blocks.shape, blocks.stride(), x.storage_offset() + _COLUMN_BLOCK)
    return torch.addmm(blocks @ near, following, far).view(rows, cols)


def _ssim_sum(s: _Strip, own: int) -> Tensor:
    """Sum of the SSIM map (MATLAB ssim_index: filter2 of fspecial("gaussian", 11, 1.5), 'valid') over
    the strip's first `own` output rows; the strip holds own + 10 rows.

    SSIM needs σx² + σy², never each alone: four filtered maps (x, y, x² + y², xy), laid side by side as
    one (rows, B·4·W) matrix (columns padded to whole blocks), filtered along the rows, then along the
    columns; outputs whose window straddles two maps are computed and dropped.
    """
    x, y = s.y
    b, rows, w = x.shape
    cols = 4 * b * w
    width = -(-cols // _COLUMN_BLOCK) * _COLUMN_BLOCK
    wide = x.new_empty(_padded(rows), width)
    wide[rows:].zero_()
    wide[:rows, cols:].zero_()
    maps = wide[:rows, :cols].view(rows, b, 4, w).permute(1, 2, 0, 3)  # (B, 4, rows, W) view
    maps[:, 0].copy_(x)
    maps[:, 1].copy_(y)
    torch.mul(x, x, out=maps[:, 2]).addcmul_(y, y)
    torch.mul(x, y, out=maps[:, 3])
    out = _filter_columns(_filter_rows(wide, rows))[:own, :cols].view(own, b, 4, w)[..., : w - _HALO]
    mu_x, mu_y, sq, xy = out.unbind(dim=2)  # each (own, B, W − 10)
    mu_xy = mu_x * mu_y
    mu_sq = torch.mul(mu_x, mu_x).addcmul_(mu_y, mu_y)
    c1, c2 = (_SSIM_K1 * _DATA_RANGE) ** 2, (_SSIM_K2 * _DATA_RANGE) ** 2
    num = torch.mul(mu_xy, 2).add_(c1).mul_((xy - mu_xy).mul_(2).add_(c2))
    den = mu_sq.add(c1).mul_((sq - mu_sq).add_(c2))
    return num.div_(den).sum(dim=(0, 2))


# convention → (its sum over a strip, the data range of a PSNR or None for SSIM's mean)
_TERMS: dict[str, tuple[Callable[[_Strip, int], Tensor], float | None]] = {
    "psnr_y": (_sse_y, _DATA_RANGE),
    "psnr_rgb": (_sse_rgb, _DATA_RANGE),
    "psnr_edsr": (_sse_edsr, 1.0),
    "ssim_y": (_ssim_sum, None),
}


def scores(
    sr: Tensor, hr: Tensor, scale: int, conventions: Sequence[str] = ("psnr_y", "ssim_y")
) -> dict[str, Tensor | float]:
    """Several conventions of one (sr, hr) pair, each equal to its function below, quantising once.
    hr is moved to sr's device (both to the CPU from MPS)."""
    unknown = [c for c in conventions if c not in _TERMS]
    if unknown:
        raise UserError(f"unknown metric conventions {unknown}; known: {sorted(_TERMS)}")
    if sr.shape != hr.shape:
        raise UserError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ: crop hr to the sr size")
    if sr.dim() not in (3, 4) or sr.shape[-3] != 3:
        raise UserError(f"expected (3, H, W) or (B, 3, H, W) RGB images, got {tuple(sr.shape)}")
    if min(sr.shape[-2:]) <= 2 * scale:
        raise UserError(f"image {tuple(sr.shape[-2:])} too small to shave {scale} pixels per border")
    batched = sr.dim() == 4
    device = torch.device("cpu") if sr.device.type == "mps" else sr.device  # MPS has no float64
    sr, hr = (x.to(device) if batched else x.to(device).unsqueeze(0) for x in (sr, hr))
    if scale > 0:
        sr, hr = (x[..., scale:-scale, scale:-scale] for x in (sr, hr))
    h, w = sr.shape[-2:]
    if "ssim_y" in conventions and min(h, w) < _SSIM_WINDOW:
        raise UserError(f"shaved image {(h, w)} is smaller than the 11×11 SSIM window")
    step = h if sr.is_cuda else max(_FILTER_BLOCK, _STRIP_PIXELS // (w * sr.shape[0]))
    sums = {c: sr.new_zeros(sr.shape[0], dtype=torch.float64) for c in conventions}
    for top in range(0, h, step):
        own = min(step, h - top)
        strip = _Strip(sr[..., top : top + own + _HALO, :], hr[..., top : top + own + _HALO, :])
        for c in conventions:
            if c != "ssim_y":
                sums[c] += _TERMS[c][0](strip, own)
            elif top < h - _HALO:
                sums[c] += _ssim_sum(strip, min(own, h - _HALO - top))
    out = {}
    for c in conventions:
        data_range = _TERMS[c][1]
        if data_range is None:
            value = sums[c] / ((h - _HALO) * (w - _HALO))
        else:
            value = 10.0 * torch.log10(data_range**2 / (sums[c] / (h * w)))
        out[c] = value if batched else value.item()
    return out


def psnr_y(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """BasicSR `calculate_psnr(test_y_channel=True, crop_border=scale)`: PSNR in dB of MATLAB Y, range 255."""
    return scores(sr, hr, scale, ("psnr_y",))["psnr_y"]


def psnr_rgb(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """NTIRE challenge PSNR: RGB on 0..255, all three channels, shave `scale` pixels."""
    return scores(sr, hr, scale, ("psnr_rgb",))["psnr_rgb"]


def psnr_edsr(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """EDSR-PyTorch `calc_psnr` on a benchmark set: (sr − hr)/255 weighted by (65.738, 129.057, 25.064)/256
    and summed over channels (the +16 of Y cancels in a difference), shave = scale, data range 1."""
    return scores(sr, hr, scale, ("psnr_edsr",))["psnr_edsr"]


def ssim_y(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """BasicSR `calculate_ssim(test_y_channel=True, crop_border=scale)` (MATLAB ssim_index): SSIM of
    MATLAB Y on 0..255, Gaussian window 11×11 σ 1.5, K1 0.01, K2 0.03, L 255, 'valid' filtering, mean."""
    return scores(sr, hr, scale, ("ssim_y",))["ssim_y"]


CONVENTIONS: dict[str, Callable[[Tensor, Tensor, int], Tensor | float]] = {
    "psnr_y": psnr_y,
    "ssim_y": ssim_y,
    "psnr_rgb": psnr_rgb,
    "psnr_edsr": psnr_edsr,
}

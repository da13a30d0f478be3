"""Image-quality metrics under the named conventions the papers report.

Every metric takes sr, hr as [0, 1] float tensors, (3, H, W) → float or (B, 3, H, W) → tensor (B,) of
float64, rounds both to the uint8 grid first (as BasicSR and EDSR-PyTorch save or quantise the SR image
before scoring), computes in float64 and shaves `scale` pixels on every border.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# MATLAB rgb2ycbcr luma row, applied to RGB in [0, 1] to give Y in [16, 235]
_Y_WEIGHTS = (65.481, 128.553, 24.966)
# EDSR-PyTorch utility.calc_psnr: its own luma constants, divided by 256, applied to the difference
_EDSR_WEIGHTS = (65.738 / 256, 129.057 / 256, 25.064 / 256)
_SSIM_WINDOW, _SSIM_SIGMA, _SSIM_K1, _SSIM_K2, _DATA_RANGE = 11, 1.5, 0.01, 0.03, 255.0


def _uint8_grid(img: Tensor) -> Tensor:
    """[0, 1] float → float64 on 0..255, rounded half to even (torch.round, as BasicSR's tensor2img)."""
    return torch.round(img.double().clamp(0, 1) * 255)


def _prepare(sr: Tensor, hr: Tensor, scale: int) -> tuple[Tensor, Tensor, bool]:
    """Check shapes, batch a single image and quantise; returns (sr, hr, was_batched) on 0..255."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ: crop hr to the sr size")
    if sr.dim() not in (3, 4) or sr.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W) RGB images, got {tuple(sr.shape)}")
    if min(sr.shape[-2:]) <= 2 * scale:
        raise ValueError(f"image {tuple(sr.shape[-2:])} too small to shave {scale} pixels per border")
    batched = sr.dim() == 4
    sr, hr = (x if batched else x.unsqueeze(0) for x in (sr, hr))
    return _uint8_grid(sr), _uint8_grid(hr), batched


def _shave(img: Tensor, scale: int) -> Tensor:
    return img[..., scale:-scale, scale:-scale] if scale > 0 else img


def _luma(img: Tensor, weights: tuple[float, float, float]) -> Tensor:
    """(B, 3, H, W) → (B, 1, H, W): weighted channel sum."""
    w = torch.tensor(weights, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return (img * w).sum(dim=1, keepdim=True)


def _y_channel(img255: Tensor) -> Tensor:
    """MATLAB rgb2ycbcr Y of 0..255 RGB: 16 + (65.481 R + 128.553 G + 24.966 B) with R, G, B in [0, 1]."""
    return 16.0 + _luma(img255 / 255.0, _Y_WEIGHTS)


def _psnr_from_mse(mse: Tensor, data_range: float) -> Tensor:
    return 10.0 * torch.log10(data_range**2 / mse)


def _finish(values: Tensor, batched: bool) -> Tensor | float:
    return values if batched else values.item()


def psnr_y(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """BasicSR `calculate_psnr(test_y_channel=True, crop_border=scale)`: PSNR in dB of MATLAB Y, range 255."""
    sr, hr, batched = _prepare(sr, hr, scale)
    diff = _shave(_y_channel(sr) - _y_channel(hr), scale)
    return _finish(_psnr_from_mse(diff.pow(2).mean(dim=(1, 2, 3)), _DATA_RANGE), batched)


def psnr_rgb(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """NTIRE challenge PSNR: RGB on 0..255, all three channels, shave `scale` pixels."""
    sr, hr, batched = _prepare(sr, hr, scale)
    diff = _shave(sr - hr, scale)
    return _finish(_psnr_from_mse(diff.pow(2).mean(dim=(1, 2, 3)), _DATA_RANGE), batched)


def psnr_edsr(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """EDSR-PyTorch `calc_psnr` on a benchmark set: (sr − hr)/255 weighted by (65.738, 129.057, 25.064)/256
    and summed over channels (the +16 of Y cancels in a difference), shave = scale, data range 1."""
    sr, hr, batched = _prepare(sr, hr, scale)
    diff = _shave(_luma((sr - hr) / 255.0, _EDSR_WEIGHTS), scale)
    return _finish(_psnr_from_mse(diff.pow(2).mean(dim=(1, 2, 3)), 1.0), batched)


def _gaussian_filter_valid(x: Tensor) -> Tensor:
    """MATLAB filter2(fspecial("gaussian", 11, 1.5), x, "valid") on (N, 1, H, W) float64 (separably)."""
    t = torch.arange(_SSIM_WINDOW, dtype=torch.float64, device=x.device) - (_SSIM_WINDOW - 1) / 2
    g = torch.exp(-(t**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    return F.conv2d(F.conv2d(x, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))


def ssim_y(sr: Tensor, hr: Tensor, scale: int) -> Tensor | float:
    """BasicSR `calculate_ssim(test_y_channel=True, crop_border=scale)` (MATLAB ssim_index): SSIM of
    MATLAB Y on 0..255, Gaussian window 11×11 σ 1.5, K1 0.01, K2 0.03, L 255, 'valid' filtering, mean."""
    sr, hr, batched = _prepare(sr, hr, scale)
    x, y = (_shave(_y_channel(img), scale) for img in (sr, hr))
    if min(x.shape[-2:]) < _SSIM_WINDOW:
        raise ValueError(f"shaved image {tuple(x.shape[-2:])} is smaller than the 11×11 SSIM window")
    moments = _gaussian_filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1).flatten(0, 1).unsqueeze(1))
    mu_x, mu_y, xx, yy, xy = moments.view(x.shape[0], 5, *moments.shape[-2:]).unbind(dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (_SSIM_K1 * _DATA_RANGE) ** 2, (_SSIM_K2 * _DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return _finish(ssim_map.mean(dim=(1, 2)), batched)


CONVENTIONS: dict[str, Callable[[Tensor, Tensor, int], Tensor | float]] = {
    "psnr_y": psnr_y,
    "ssim_y": ssim_y,
    "psnr_rgb": psnr_rgb,
    "psnr_edsr": psnr_edsr,
}

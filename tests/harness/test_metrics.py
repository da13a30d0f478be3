"""Metric conventions against independent formulas: numpy float64 PSNR and scikit-image SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from harness.data import read_image
from harness.degrade import bicubic_downsample, imresize_matlab
from harness.metrics import CONVENTIONS, psnr_edsr, psnr_rgb, psnr_y, scores, ssim_y, to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")  # small images: threads only add contention


def _uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) [0, 1] → (H, W, 3) float64 on the uint8 grid (numpy's round, half to even)."""
    return np.round(np.clip(img.double().numpy().transpose(1, 2, 0), 0, 1) * 255)


def _y(rgb255: np.ndarray) -> np.ndarray:
    return 16 + rgb255 @ np.array([65.481, 128.553, 24.966]) / 255


def _psnr_np(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return 10 * math.log10(data_range**2 / np.mean((a - b) ** 2))


def _shave(a: np.ndarray, s: int) -> np.ndarray:
    return a[s:-s, s:-s]


def _ssim_skimage(sr: torch.Tensor, hr: torch.Tensor, s: int) -> float:
    """skimage SSIM on MATLAB Y; skimage filters 'same' and averages after cropping (win − 1)/2 = 5 pixels,
    which equals the mean of MATLAB's 'valid' map."""
    x, y = (_shave(_y(_uint8(img)), s) for img in (sr, hr))
    return structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )


def _set5_sr_like(datasets_root, scale: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(sr, hr) per Set5 image: SR = MATLAB-bicubic upscaling of the LR (a realistic imperfect output)."""
    pairs = []
    for path in sorted((datasets_root / "Set5" / "HR").glob("*.png")):
        hr, lr = bicubic_downsample(read_image(path), scale)
        pairs.append((imresize_matlab(lr, scale).clamp(0, 1), hr))
    return pairs


def test_against_numpy_and_skimage_on_set5(datasets_root):
    scale = 3
    for sr, hr in _set5_sr_like(datasets_root, scale):
        a, b = _uint8(sr), _uint8(hr)
        assert psnr_y(sr, hr, scale) == pytest.approx(
            _psnr_np(_shave(_y(a), scale), _shave(_y(b), scale), 255), abs=1e-10
        )
        assert psnr_rgb(sr, hr, scale) == pytest.approx(
            _psnr_np(_shave(a, scale), _shave(b, scale), 255), abs=1e-10
        )
        edsr_diff = (a - b) @ (np.array([65.738, 129.057, 25.064]) / 256) / 255
        assert psnr_edsr(sr, hr, scale) == pytest.approx(
            -10 * math.log10(np.mean(_shave(edsr_diff, scale) ** 2)), abs=1e-10
        )
        assert ssim_y(sr, hr, scale) == pytest.approx(_ssim_skimage(sr, hr, scale), abs=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_against_numpy_and_skimage_on_random_images(seed):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(3, 37, 45, generator=g)
    sr = (hr + 0.1 * torch.randn(3, 37, 45, generator=g)).clamp(-0.2, 1.2)  # out of range: clamped inside
    scale = seed + 1
    a, b = _uint8(sr), _uint8(hr)
    assert psnr_y(sr, hr, scale) == pytest.approx(
        _psnr_np(_shave(_y(a), scale), _shave(_y(b), scale), 255), abs=1e-10
    )
    assert ssim_y(sr, hr, scale) == pytest.approx(_ssim_skimage(sr, hr, scale), abs=1e-10)


def test_batched_gives_per_image_values():
    g = torch.Generator().manual_seed(7)
    hr = torch.rand(3, 3, 32, 32, generator=g)
    sr = (hr + 0.05 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    for name, metric in CONVENTIONS.items():
        batched = metric(sr, hr, 2)
        assert isinstance(batched, torch.Tensor) and batched.shape == (3,), name
        singles = [metric(s, h, 2) for s, h in zip(sr, hr, strict=True)]
        assert all(isinstance(v, float) for v in singles), name
        torch.testing.assert_close(batched, torch.tensor(singles, dtype=torch.float64), rtol=0, atol=1e-12)


def test_identical_images_give_inf_and_one():
    img = torch.rand(3, 30, 30, generator=torch.Generator().manual_seed(3))
    for name in ("psnr_y", "psnr_rgb", "psnr_edsr"):
        assert CONVENTIONS[name](img, img, 4) == math.inf, name
    assert ssim_y(img, img, 4) == pytest.approx(1.0, abs=1e-12)


def test_sr_is_rounded_to_uint8_grid_first():
    hr = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(4)).mul(255).round().div(255)
    below_top = (hr < 1).float()
    assert psnr_y(hr + 0.4 / 255 * below_top, hr, 2) == math.inf
    assert psnr_y(hr + 0.6 / 255 * below_top, hr, 2) < math.inf


def test_shave_excludes_the_border():
    hr = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(5))
    sr = hr.clone()
    sr[:, :2, :] = 1 - sr[:, :2, :]
    assert psnr_y(sr, hr, 2) == math.inf and ssim_y(sr, hr, 2) == pytest.approx(1.0, abs=1e-12)
    assert psnr_y(sr, hr, 1) < 30


def test_rejects_mismatched_or_tiny_inputs():
    with pytest.raises(ValueError, match="differ"):
        psnr_y(torch.zeros(3, 20, 20), torch.zeros(3, 20, 21), 2)
    with pytest.raises(ValueError, match="RGB"):
        psnr_y(torch.zeros(1, 20, 20), torch.zeros(1, 20, 20), 2)
    with pytest.raises(ValueError, match="SSIM window"):
        ssim_y(torch.zeros(3, 20, 20), torch.zeros(3, 20, 20), 5)


def _baby(datasets_root, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sr, hr) for Set5 baby: SR = MATLAB-bicubic upscaling of the MATLAB-made LR, off the uint8 grid."""
    hr = read_image(datasets_root / "Set5" / "HR" / "baby.png")
    lr = read_image(datasets_root / "Set5" / "LR_bicubic" / f"X{scale}" / "baby.png")
    hr = hr[:, : lr.shape[1] * scale, : lr.shape[2] * scale]
    return imresize_matlab(lr, scale).clamp(0, 1), hr


@pytest.mark.parametrize("scale", [2, 4])
def test_float64_gives_the_float32_values(datasets_root, scale):
    # the same values in float64: until this was fixed, psnr_y gave 32.19 dB instead of 33.55 dB for baby
    sr, hr = _baby(datasets_root, scale)
    for name, metric in CONVENTIONS.items():
        expected = metric(sr, hr, scale)
        assert metric(sr.double(), hr.double(), scale) == expected, name
        assert metric(sr.double(), hr, scale) == expected, name
    assert torch.equal(to_uint8(sr.double()), to_uint8(sr))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16, torch.float64])
def test_every_dtype_of_an_image_on_the_uint8_grid_gives_the_float32_values(dtype):
    g = torch.Generator().manual_seed(11)
    hr = torch.randint(0, 256, (3, 40, 36), generator=g, dtype=torch.uint8)
    sr = (hr.int() + torch.randint(-12, 13, hr.shape, generator=g)).clamp(0, 255).to(torch.uint8)

    def as_dtype(img: torch.Tensor) -> torch.Tensor:
        return img if dtype == torch.uint8 else (img.double() / 255).to(dtype)

    for name, metric in CONVENTIONS.items():
        expected = metric(sr / 255, hr / 255, 3)
        assert metric(as_dtype(sr), as_dtype(hr), 3) == expected, (name, dtype)
    assert torch.equal(to_uint8(as_dtype(sr)), sr)
    assert scores(as_dtype(sr), hr / 255, 3, tuple(CONVENTIONS)) == scores(
        sr / 255, hr / 255, 3, tuple(CONVENTIONS)
    )


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32, torch.float64])
def test_metrics_never_write_into_their_inputs(dtype):
    g = torch.Generator().manual_seed(12)
    hr = torch.rand(2, 3, 48, 40, generator=g)
    sr = hr + 0.05 * torch.randn(hr.shape, generator=g)  # out of [0, 1] in places: clamped inside only
    if dtype == torch.uint8:
        sr, hr = to_uint8(sr), to_uint8(hr)
    else:
        sr, hr = sr.to(dtype), hr.to(dtype)
    sr_before, hr_before = sr.clone(), hr.clone()
    for metric in CONVENTIONS.values():
        metric(sr, hr, 2)
        metric(sr[0], hr[0], 2)
    scores(sr, hr, 2, tuple(CONVENTIONS))
    to_uint8(sr)
    assert torch.equal(sr, sr_before) and torch.equal(hr, hr_before)


def test_rejects_integer_images_other_than_uint8():
    with pytest.raises(TypeError, match="uint8"):
        psnr_y(torch.zeros(3, 20, 20, dtype=torch.int32), torch.zeros(3, 20, 20, dtype=torch.int32), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="not run: no CUDA device (run on a GPU machine)")
def test_cuda_gives_the_cpu_values():
    g = torch.Generator().manual_seed(13)
    hr = torch.rand(2, 3, 64, 48, generator=g)
    sr = (hr + 0.05 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    for dtype in (torch.float16, torch.float32, torch.float64):
        got = scores(sr.to("cuda", dtype), hr.to("cuda", dtype), 2, tuple(CONVENTIONS))
        expected = scores(sr.to(dtype), hr.to(dtype), 2, tuple(CONVENTIONS))
        for name in CONVENTIONS:
            torch.testing.assert_close(got[name].cpu(), expected[name], rtol=0, atol=1e-9)

"""MATLAB-exact bicubic degradation: against MATLAB-made LR, an independent numpy transliteration of
MATLAB's arithmetic and the general sparse path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import degrade_c
from harness.data import read_image
from harness.degrade import (
    _downscale_integer,
    _error_bound,
    _resize_sparse,
    bicubic_downsample,
    bicubic_levels,
    imresize_matlab,
)
from tests.harness.imresize_reference import contributions, imresize_reference

pytestmark = pytest.mark.usefixtures("one_thread")  # small images: threads only add contention


def _matlab_quantised(x: np.ndarray, s: int) -> np.ndarray:
    """MATLAB `im2uint8(imresize(x, 1/s, 'bicubic'))` of (C, H, W) float64 values, as uint8 levels in
    float64: per output pixel the products over taps added in order (numpy rounds each product and each
    sum, no fused multiply-add), rows first, then floor(255·v + 0.5) saturated."""
    for axis in (1, 2):
        n = x.shape[axis]
        indices, weights = contributions(n, math.ceil(n / s), 1 / s)
        moved = np.moveaxis(x, axis, 0)
        acc = weights[:, 0, None, None] * moved[indices[:, 0]]
        for k in range(1, weights.shape[1]):
            acc = acc + weights[:, k, None, None] * moved[indices[:, k]]
        x = np.moveaxis(acc, 0, axis)
    return np.floor(np.clip(x * 255, 0, 255) + 0.5)


def _matlab_uint8(levels: np.ndarray, s: int) -> np.ndarray:
    """MATLAB `im2uint8(imresize(im2double(uint8_img), 1/s, 'bicubic'))` of (C, H, W) levels: over float64
    k/255, as _matlab_quantised."""
    return _matlab_quantised(levels / 255.0, s)


def _levels(img: torch.Tensor) -> np.ndarray:
    return img.double().mul(255).round().numpy()


@pytest.mark.parametrize("path", ["active", "torch"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_identical_to_matlab_lr_on_every_image(datasets_root, monkeypatch, dataset, scale, path):
    # "active": the compiled kernel where it builds (harness.degrade_c), else torch
    if path == "torch":
        monkeypatch.setattr(degrade_c, "kernel", lambda: None)
    differing, images = {}, 0
    for hr_path in sorted((datasets_root / dataset / "HR").glob("*.png")):
        hr = read_image(hr_path)
        lr, levels = bicubic_downsample(hr, scale)[1], bicubic_levels(hr, scale)
        matlab = read_image(datasets_root / dataset / "LR_bicubic" / f"X{scale}" / hr_path.name)
        assert lr.shape == matlab.shape == levels.shape, hr_path.name
        matlab_levels = matlab.mul(255).round().to(torch.uint8)  # the PNG's levels: read_image gives k/255
        differing[hr_path.name] = int(lr.ne(matlab).sum()) + int(levels.ne(matlab_levels).sum())
        images += 1
    assert images == {"Set5": 5, "Set14": 14}[dataset]
    assert sum(differing.values()) == 0, f"pixels differing from MATLAB's LR: {differing}"


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 3),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    s=st.integers(2, 5),
    top=st.sampled_from([3, 16, 255]),
    seed=st.integers(0, 2**16),
)
def test_identical_to_matlab_arithmetic(c, h, w, s, top, seed):
    # few distinct levels (top 3 or 16) make exact rounding ties common at ×2 and ×4; sizes not divisible
    # by s and images narrower than the kernel (folded more than once) included
    levels = np.random.default_rng(seed).integers(0, top + 1, (c, h, w)).astype(np.float64)
    h, w = h - h % s, w - w % s
    if h == 0 or w == 0:
        return
    lr = bicubic_downsample(torch.from_numpy(levels).float() / 255, s)[1]
    np.testing.assert_array_equal(_levels(lr), _matlab_uint8(levels[:, :h, :w], s))


def _step_edges(seed: int) -> np.ndarray:
    """(20, 3, 16, 64) levels: per image and channel a vertical step from a to b, b − a odd, at a random
    column, in two horizontal bands: at ×2 and ×4 the exact result is k + ½ along the edge (its weights are
    dyadic) and which way MATLAB rounds depends on the last bit of its float64 sums."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 200, (20, 3, 1, 1))
    b = a + 2 * rng.integers(0, 25, (20, 3, 1, 1)) + 1
    edge = rng.integers(8, 56, (20, 3, 1, 1))
    levels = np.where(np.arange(64) < edge, a, b).repeat(16, axis=2)
    return (levels + np.where(np.arange(16)[:, None] < 8, 0, rng.integers(0, 3, (20, 3, 1, 1)))).astype(float)


@pytest.mark.parametrize("s", [2, 4])
def test_pixels_near_a_rounding_boundary_are_recomputed(s):
    levels = _step_edges(s)
    hr = torch.from_numpy(levels).float() / 255
    fast, near = _downscale_integer(
        hr.view(-1, 16, 64), s, torch.float32, gain=255.0, bound=_error_bound(s, 2**-23)
    )
    expected = _matlab_uint8(levels.reshape(-1, 16, 64), s)
    # the float32 pass alone rounds some of these ties the other way than MATLAB
    assert len(near) > 0 and (fast.double().numpy() != expected).sum() > 0
    lr = bicubic_downsample(hr, s)[1]
    np.testing.assert_array_equal(_levels(lr).reshape(expected.shape), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_every_float_dtype_on_the_uint8_grid_gives_the_float32_lr(dtype):
    levels = torch.randint(0, 8, (3, 48, 40), generator=torch.Generator().manual_seed(5)).double()
    expected = bicubic_downsample((levels / 255).float(), 2)[1]
    hr_cropped, lr = bicubic_downsample((levels / 255).to(dtype), 2)
    assert lr.dtype == dtype and hr_cropped.dtype == dtype
    assert torch.equal(lr.double().mul(255).round(), expected.double().mul(255).round())


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_identical_to_matlab_arithmetic_at_div2k_size(scale):
    g = torch.Generator().manual_seed(scale)
    levels = torch.randint(0, 256, (3, 1356, 2040), generator=g).double()
    levels[:, 400:700] = torch.randint(0, 4, (3, 300, 2040), generator=g).double()  # a tie-prone band
    lr = bicubic_downsample((levels / 255).float(), scale)[1]
    h, w = (n - n % scale for n in levels.shape[-2:])
    np.testing.assert_array_equal(_levels(lr), _matlab_uint8(levels[:, :h, :w].numpy(), scale))


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    scale=st.sampled_from([1 / 2, 1 / 3, 1 / 4, 0.37, 0.8, 1.0, 1.5, 2.0, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_matches_numpy_transliteration(h, w, scale, seed):
    image = np.random.default_rng(seed).random((h, w, 3))
    expected = imresize_reference(image, scale)
    got = imresize_matlab(torch.from_numpy(image).permute(2, 0, 1), scale).permute(1, 2, 0).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    h=st.integers(1, 50),
    w=st.integers(1, 50),
    s=st.integers(2, 6),
    seed=st.integers(0, 2**16),
)
def test_integer_factor_path_matches_general_path(n, h, w, s, seed):
    # sizes not divisible by s, and images narrower than the kernel (folded more than once), included
    image = torch.rand(n, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = _resize_sparse(image, math.ceil(h / s), math.ceil(w / s), 1 / s)
    torch.testing.assert_close(imresize_matlab(image, 1 / s), expected, rtol=0, atol=1e-14)


def test_batched_float32_matches_per_image_float64():
    batch = torch.rand(2, 3, 3, 30, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    per_image = torch.stack([imresize_matlab(x, 1 / 3) for x in batch.reshape(-1, 30, 24)])
    batched = imresize_matlab(batch.float(), 1 / 3)
    assert batched.dtype == torch.float32 and batched.shape == (2, 3, 3, 10, 8)
    torch.testing.assert_close(batched.double().reshape(-1, 10, 8), per_image, rtol=0, atol=1e-6)


def test_constant_image_stays_constant():
    out = imresize_matlab(torch.full((3, 17, 23), 0.3, dtype=torch.float64), 1 / 4)
    torch.testing.assert_close(out, torch.full((3, 5, 6), 0.3, dtype=torch.float64), rtol=0, atol=1e-15)


def test_bicubic_downsample_crops_and_quantises():
    hr = torch.rand(3, 50, 47, generator=torch.Generator().manual_seed(1))
    hr_cropped, lr = bicubic_downsample(hr, 4)
    assert hr_cropped.shape == (3, 48, 44) and lr.shape == (3, 12, 11)
    assert torch.equal(hr_cropped, hr[:, :48, :44])
    assert lr.dtype == torch.float32
    levels = lr.double() * 255
    assert (levels - levels.round()).abs().max() < 1e-4 and levels.min() >= 0 and levels.max() <= 255
    levels = levels.round()
    unrounded = imresize_matlab(hr_cropped.double(), 1 / 4).mul(255).clamp(0, 255)
    assert (levels - unrounded).abs().max() <= 0.5 + 1e-9


def test_rejects_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        imresize_matlab(torch.zeros(3, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(TypeError, match="floating-point"):
        bicubic_downsample(torch.zeros(3, 8, 8, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="smaller than the scale"):
        bicubic_downsample(torch.zeros(3, 3, 8), 4)


def test_channels_last_and_cropped_input_gives_the_same_result():
    # read_image gives channels-last memory, cropped to a multiple of s
    hwc = torch.randint(0, 256, (50, 47, 3), generator=torch.Generator().manual_seed(2)).float() / 255
    img = hwc.permute(2, 0, 1)[:, :49, :46]
    for s in (2, 3, 4):
        assert torch.equal(bicubic_downsample(img, s)[1], bicubic_downsample(img.contiguous(), s)[1])
        torch.testing.assert_close(
            imresize_matlab(img.double(), 1 / s),
            imresize_matlab(img.double().contiguous(), 1 / s),
            rtol=0,
            atol=1e-14,
        )

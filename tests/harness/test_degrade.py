"""MATLAB-exact bicubic degradation: against MATLAB-made LR and an independent numpy transliteration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data import read_image
from harness.degrade import _resize_sparse, bicubic_downsample, imresize_matlab
from tests.harness.imresize_reference import imresize_reference


def _matlab_comparison(datasets_root, dataset: str, scale: int) -> list[tuple[str, float, float]]:
    """(image, max |ours − MATLAB| in gray levels, fraction of identical pixels) per image."""
    rows = []
    for hr_path in sorted((datasets_root / dataset / "HR").glob("*.png")):
        _, lr = bicubic_downsample(read_image(hr_path), scale)
        matlab = read_image(datasets_root / dataset / "LR_bicubic" / f"X{scale}" / hr_path.name)
        assert lr.shape == matlab.shape, hr_path.name
        diff = (lr * 255 - matlab * 255).round().abs()
        rows.append((hr_path.name, diff.max().item(), diff.eq(0).double().mean().item()))
    return rows


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_matches_matlab_lr_on_every_image(datasets_root, dataset, scale):
    rows = _matlab_comparison(datasets_root, dataset, scale)
    assert len(rows) == {"Set5": 5, "Set14": 14}[dataset]
    worst = max(rows, key=lambda r: r[1])
    least = min(rows, key=lambda r: r[2])
    assert worst[1] <= 1, f"{worst[0]} differs from MATLAB by {worst[1]} gray levels"
    assert least[2] >= 0.999, f"{least[0]}: only {least[2]:.5%} of pixels identical to MATLAB"


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
    assert (levels - unrounded).abs().max() <= 0.5


def test_rejects_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        imresize_matlab(torch.zeros(3, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="smaller than the scale"):
        bicubic_downsample(torch.zeros(3, 3, 8), 4)

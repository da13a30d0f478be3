"""The compiled MATLAB-bicubic kernel: the same bits as the torch path on every layout and dtype, MATLAB's
arithmetic beyond [0, 1], and a clean fallback to torch when there is no working compiler."""

from __future__ import annotations

import stat
import threading

import numpy as np
import pytest
import torch

from harness import degrade, degrade_c
from tests.harness.test_degrade import _levels, _matlab_quantised

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def compiled():
    if degrade_c.kernel() is None:
        pytest.skip(
            "not run: the C kernel did not build here (install gcc or set $CC; see the note on stderr)"
        )


def _torch_path(hr: torch.Tensor, s: int, monkeypatch) -> torch.Tensor:
    with monkeypatch.context() as m:
        m.setattr(degrade_c, "kernel", lambda: None)
        return degrade.bicubic_downsample(hr, s)[1]


def _images(seed: int) -> list[torch.Tensor]:
    """Odd sizes, as (3, H, W) channels-last and contiguous, (2, 3, H, W) batches and single planes: uint8
    levels (a tie-prone band of levels 0–3 included) and off-grid floats in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 256, (3, 61, 47), generator=g).double()
    levels[:, 20:33] = torch.randint(0, 4, (3, 13, 47), generator=g).double()
    on_grid = (levels / 255).float()
    off_grid = torch.rand(3, 53, 38, generator=g)
    images = []
    for img in (on_grid, off_grid):
        images += [
            img,
            img.permute(1, 2, 0).contiguous().permute(2, 0, 1),
            img[:1],
            img[None].expand(2, -1, -1, -1),
        ]
    return images


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_c_path_gives_the_torch_path_bits(compiled, monkeypatch, s, dtype):
    for img in _images(s):
        hr = img.to(dtype)
        lr = degrade.bicubic_downsample(hr, s)[1]
        expected = _torch_path(hr, s, monkeypatch)
        assert lr.dtype == expected.dtype == dtype and lr.shape == expected.shape
        assert torch.equal(lr, expected), (tuple(hr.shape), hr.stride())


@pytest.mark.parametrize("path", ["c", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_levels_are_the_float_lr_times_255_on_both_paths(compiled, monkeypatch, s, dtype, path):
    if path == "torch":
        monkeypatch.setattr(degrade_c, "kernel", lambda: None)
    for img in _images(s + 10):
        hr = img.to(dtype)
        levels = degrade.bicubic_levels(hr, s)
        lr = degrade.bicubic_downsample(hr, s)[1]
        assert levels.dtype == torch.uint8 and levels.shape == lr.shape
        expected = lr.double().mul(255).round().to(torch.uint8)
        assert torch.equal(levels, expected), (tuple(hr.shape), hr.stride())


@pytest.mark.parametrize("path", ["c", "torch"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_or_inf_is_refused_on_both_paths(monkeypatch, dtype, bad, path):
    if path == "c" and degrade_c.kernel() is None:
        pytest.skip("not run: the C kernel did not build here (install gcc or set $CC)")
    if path == "torch":
        monkeypatch.setattr(degrade_c, "kernel", lambda: None)
    for layout in ("contiguous", "channels_last"):
        hr = torch.rand(3, 40, 45, generator=torch.Generator().manual_seed(1), dtype=dtype)
        if layout == "channels_last":
            hr = hr.permute(1, 2, 0).contiguous().permute(2, 0, 1)
        hr[1, 39, 43] = bad  # the last pixel that the ×4 crop keeps
        for fn in (degrade.bicubic_levels, degrade.bicubic_downsample):
            with pytest.raises(ValueError, match="NaN or Inf"):
                fn(hr, 4)
        hr[1, 39, 43], hr[1, 39, 44] = 0.5, bad  # cropped away: not read
        assert degrade.bicubic_levels(hr, 4).shape == (3, 10, 11)


@pytest.mark.parametrize("path", ["c", "torch"])
@pytest.mark.parametrize("s", [2, 4])
def test_both_paths_are_matlab_exact_beyond_zero_one(monkeypatch, s, path):
    # levels plus columns alternating ±1e5: the filter cancels the alternation exactly, the float32 pass
    # only to ≈ 1e5·255·2^-24 levels, far beyond its bound for inputs in [-1, 1]; both paths scale that
    # bound by the largest |input| (the kernel per pixel; unscaled, 62–290 pixels differed here)
    base = np.random.default_rng(s).integers(0, 256, (2, 24, 48)) / 255
    values = base + 1e5 * (-1.0) ** np.arange(48)
    expected = _matlab_quantised(values, s)
    assert ((expected > 0) & (expected < 255)).mean() > 0.5
    if path == "c" and degrade_c.kernel() is None:
        pytest.skip("not run: the C kernel did not build here (install gcc or set $CC)")
    hr = torch.from_numpy(values)
    lr = degrade.bicubic_downsample(hr, s)[1] if path == "c" else _torch_path(hr, s, monkeypatch)
    np.testing.assert_array_equal(_levels(lr), expected)


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """kernel() rebuilt under this test's environment, in an empty cache; the usual one afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    degrade_c.kernel.cache_clear()
    yield
    degrade_c.kernel.cache_clear()


def _fake_compiler(tmp_path, body: str) -> str:
    script = tmp_path / "cc"
    script.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo fake-cc 1.0; exit 0; fi\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.parametrize("compiler", ["missing", "failing", "garbage"])
def test_without_a_working_compiler_the_torch_path_runs_with_one_note(
    fresh_kernel, monkeypatch, tmp_path, capsys, compiler
):
    cc = {
        "missing": str(tmp_path / "no-such-cc"),
        "failing": _fake_compiler(tmp_path, "echo 'error: no' >&2; exit 1"),
        "garbage": _fake_compiler(
            tmp_path, 'while [ $# -gt 0 ]; do [ "$1" = -o ] && echo x > "$2"; shift; done'
        ),
    }[compiler]
    monkeypatch.setenv("CC", cc)
    hr = _images(0)[1]
    expected = _torch_path(hr, 2, monkeypatch)
    assert torch.equal(degrade.bicubic_downsample(hr, 2)[1], expected)
    assert torch.equal(degrade.bicubic_downsample(hr, 2)[1], expected)
    assert degrade_c.kernel() is None
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "torch path" in notes[0]
    assert not list((tmp_path / "cache").rglob("*.so"))


def test_disabled_by_the_environment_without_a_note(fresh_kernel, monkeypatch, capsys):
    monkeypatch.setenv(degrade_c.DISABLE_ENV, "1")
    assert degrade_c.kernel() is None
    assert capsys.readouterr().err == ""


def test_processes_building_at_once_each_load_a_whole_library(compiled, fresh_kernel, tmp_path):
    # the library goes through atomic_file: a concurrent builder never sees a partial file
    paths, errors = [], []

    def build():
        try:
            paths.append(degrade_c._build())
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1
    assert [p.name for p in (tmp_path / "cache" / "reprosr" / "kernels").iterdir()] == [paths[0].name]
    assert degrade_c.kernel() is not None


@pytest.mark.parametrize("s", [2, 3, 4])
def test_rows_copied_or_read_in_place_give_the_same_bits(compiled, monkeypatch, s):
    """Float32 rows are read in place when their planes lie in one run and the row stride spreads them over
    the L1 sets; a 4 KiB-multiple stride (width 1024) and strided columns go through the copied rows."""
    g = torch.Generator().manual_seed(100 + s)
    for width in (1024, 1000):
        img = (torch.randint(0, 256, (3, 2 * s + 17, width), generator=g) / 255.0).float()
        for hr in (img, img.permute(1, 2, 0).contiguous().permute(2, 0, 1), img[:, :, ::2]):
            lr = degrade.bicubic_downsample(hr, s)[1]
            assert torch.equal(lr, _torch_path(hr, s, monkeypatch)), (width, hr.stride())

"""NTIRE statistics against the official tool's numbers for the released SPAN checkpoints, and the
``results.txt`` format.

``ntire_official.csv`` (beside this file) holds what the official NTIRE2024_ESR code gives on the two
released checkpoints; each row's ``source`` says how it was obtained (the official ``model_summary.py``,
fvcore call and image path run in a scratch folder outside the repository).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import architectures
from harness import data, metrics, ntire
from tests.conftest import shared_checkpoint

OFFICIAL = list(csv.DictReader((Path(__file__).parent / "ntire_official.csv").open()))
CHECKPOINTS = sorted({r["checkpoint"] for r in OFFICIAL})


def official(checkpoint: str) -> dict[str, str]:
    return {r["metric"]: r["value"] for r in OFFICIAL if r["checkpoint"] == checkpoint}


def released(checkpoint: str) -> nn.Module:
    path = shared_checkpoint(checkpoint)
    if path is None:
        pytest.skip(f"not run: {checkpoint} not found (set REPROSR_TEST_CHECKPOINTS to shared/checkpoints)")
    width = next(int(r["feature_channels"]) for r in OFFICIAL if r["checkpoint"] == checkpoint)
    model = architectures.build("span_esr", 4, f"ch{width}", form="deploy")
    return architectures.load_checkpoint(model, path).eval()


def test_reference_rows_cover_both_releases_with_sources():
    assert CHECKPOINTS == ["ntire2024_team38_span_ch28_x4.pth", "ntire2024_team39_spantiny_ch26_x4.pth"]
    for checkpoint in CHECKPOINTS:
        metrics_given = set(official(checkpoint))
        assert metrics_given >= {"activations_ntire256", "num_conv", "flops_fvcore_ntire256", "params"}
    assert all("NTIRE2024_ESR @6404fa48" in r["source"] for r in OFFICIAL)


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_activations_conv_layers_and_params_equal_the_official_tool(checkpoint):
    """#Activations and #Conv2d exactly as the official ``get_model_activation`` counts them (shapes only)."""
    model, ref = released(checkpoint), official(checkpoint)
    assert ntire.conv_activations(model) == (int(ref["activations_ntire256"]), int(ref["num_conv"]))
    assert sum(p.numel() for p in model.parameters()) == int(ref["params"])


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_statistics_equal_the_official_tool(checkpoint):
    """Every count of :func:`ntire_statistics`, FLOPs included (a real fvcore trace at 256×256)."""
    stats = ntire.ntire_statistics(released(checkpoint))
    ref = official(checkpoint)
    assert (stats.activations, stats.num_conv, stats.flops, stats.params) == (
        int(ref["activations_ntire256"]), int(ref["num_conv"]), int(ref["flops_fvcore_ntire256"]),
        int(ref["params"]),
    )  # fmt: skip
    assert stats.lr_shape == (1, 3, 256, 256)
    if not torch.cuda.is_available():
        assert math.isnan(stats.peak_memory_mb) and stats.memory_note.startswith("not run: no CUDA")


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_rgb_psnr_and_ssim_equal_the_official_utils_on_set5(checkpoint, datasets_root):
    model, ref = released(checkpoint), official(checkpoint)
    psnr, ssim = [], []
    for pair in data.benchmark_pairs("Set5", 4, root=datasets_root):
        with torch.no_grad():
            sr = model(pair.lr.unsqueeze(0))[0]
        psnr.append(metrics.psnr_rgb(sr, pair.hr, 4))
        ssim.append(ntire.ssim_rgb(sr, pair.hr, 4))
    # Our port and the official class sum their convolutions in different orders: a few SR pixels round to
    # the other uint8 level (team39: +3e-6 dB), so the means agree to 1e-5 dB / 1e-6, not bit for bit.
    assert sum(psnr) / 5 == pytest.approx(float(ref["psnr_rgb_Set5"]), abs=1e-5)
    assert sum(ssim) / 5 == pytest.approx(float(ref["ssim_rgb_Set5"]), abs=1e-6)


class Twice(nn.Module):
    """A conv called twice, a functional conv and a linear: NTIRE's hooks count module conv calls only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.up = nn.ConvTranspose2d(3, 5, 2, stride=2)
        self.linear = nn.Linear(3, 3)

    def forward(self, x):
        x = self.conv(self.conv(x))
        x = nn.functional.conv2d(x, self.conv.weight, padding=1)
        return self.up(self.linear(x.transpose(1, -1)).transpose(1, -1))


def test_conv_activations_count_module_calls_as_the_official_hooks():
    assert ntire.conv_activations(Twice(), (1, 3, 8, 6)) == (2 * 3 * 48 + 5 * 16 * 12, 3)


def test_ssim_rgb_is_one_for_equal_images_and_channel_mean():
    hr = torch.rand(3, 40, 36, generator=torch.Generator().manual_seed(0))
    assert ntire.ssim_rgb(hr, hr, 4) == pytest.approx(1.0)
    sr = hr.clone()
    sr[0] = torch.rand(40, 36, generator=torch.Generator().manual_seed(1))
    single = [ntire.ssim_rgb(sr[[c, c, c]], hr[[c, c, c]], 4) for c in range(3)]
    assert ntire.ssim_rgb(sr, hr, 4) == pytest.approx(sum(single) / 3) and single[0] < 0.5 < single[1]
    with pytest.raises(ValueError, match="smaller than the 11"):
        ntire.ssim_rgb(hr[:, :16, :16], hr[:, :16, :16], 4)


def test_bad_lr_shape_is_an_error():
    with pytest.raises(ValueError, match=r"\(B, 3, h, w\)"):
        ntire.ntire_statistics(Twice(), (3, 256, 256))


def stats(flops=9_833_807_872) -> ntire.NtireStats:
    return ntire.NtireStats(150688, flops, 41_680_896, 22, math.nan, "not run", (1, 3, 256, 256))


def test_results_table_has_the_official_layout():
    text = ntire.results_table([ntire.NtireRow("38_SPAN", 26.9417, 8.0, stats(), 705.2444)])
    header, line = text.splitlines()
    assert header.split("\t") == [
        "Model               ", "Val PSNR  ", "Val Time [ms] ", "Params [M]", "FLOPs [G] ", "Acts [M]",
        "Mem [M] ", "Conv    ",
    ]  # fmt: skip
    assert line.split("\t") == [
        "38_SPAN             ", "26.94     ", "8.00          ", "0.151     ", "9.83      ", "41.68   ",
        "705.24  ", "  22    ",
    ]  # fmt: skip


def test_results_table_test_columns_and_unmeasured_memory():
    row = ntire.NtireRow("00_SPAN", 26.94, 8.0, stats(), math.nan, test_psnr=27.01, test_time_ms=7.48)
    header, line = ntire.results_table([row]).splitlines()
    assert header.split("\t")[2] == "Test PSNR " and len(header.split("\t")) == 11
    cells = [c.strip() for c in line.split("\t")]
    assert cells == ["00_SPAN", "26.94", "27.01", "8.00", "7.48", "7.74", "0.151", "9.83", "41.68", "-", "22"]

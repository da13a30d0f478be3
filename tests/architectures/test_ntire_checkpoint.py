"""The NTIRE 2024 SPAN ch28 and SPAN-T ch26 ×4 releases, run through our port, reproduce the official code.

ch28, measured once outside the repository: the official class
``SPAN30(3, 3, upscale=4, feature_channels=28)`` of Amazingren/NTIRE2024_ESR ``models/team38_SPAN.py``
(commit 6404fa4, only its CUDA warm-up call removed), the released ``model_zoo/team38_span_ch28_slim.pth``
loaded strictly, eval mode, CPU float32; I/O as BasicSR's validation (cv2 color read → /255 → model → clamp
[0, 1] → ×255 → round → uint8; HR cropped to 4 × LR size; LR = the MATLAB-made ``LR_bicubic/X4`` files);
metrics = BasicSR 1.4.2's own ``calculate_psnr`` / ``calculate_ssim`` with ``crop_border=4,
test_y_channel=True``, averaged per set.

ch26 (SPAN-T), measured once in a scratch folder on 2026-11-30: the official ``SPAN30(3, 3, upscale=4,
feature_channels=26)`` of ``models/team39_SPANtiny.py`` (same commit, its CUDA warm-up removed) with
``model_zoo/team39_spantiny_ch26_slim.pth`` (all keys matched), eval, CPU float32, the same I/O (PNG read with
PIL → /255, clamp, round to uint8), scored by ReproSR's ``harness.metrics`` psnr_y/ssim_y (BasicSR's Y
convention, crop 4). The port's SR outputs were identical to the official ones (max |Δ| = 0 on Set5 and
Set14). The challenge report publishes its DIV2K_LSDIR_valid PSNR (26.92 dB) and 0.131 M parameters; that
set is user-provided (Google Drive only) and not in CI, so the parameter count is checked here instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import architectures
from harness import data, metrics, released
from tests.conftest import shared_checkpoint

# zoo name → (file in shared/checkpoints, {set: (mean PSNR-Y dB, mean SSIM-Y)} of the official code)
RELEASES = {
    "span_esr_ch28_x4_ntire2024": (
        "ntire2024_team38_span_ch28_x4.pth",
        {"Set5": (31.731633, 0.889752), "Set14": (28.401061, 0.776880)},
    ),
    "span_esr_ch26_x4_ntire2024": (
        "ntire2024_team39_spantiny_ch26_x4.pth",
        {"Set5": (31.737010, 0.889041), "Set14": (28.332079, 0.775497)},
    ),
}
PUBLISHED_PARAMS = {"span_esr_ch28_x4_ntire2024": 0.151, "span_esr_ch26_x4_ntire2024": 0.131}  # M, Table 1

pytestmark = pytest.mark.usefixtures("one_thread")


def _checkpoint(name: str) -> Path:
    shared, _ = RELEASES[name]
    env = os.environ.get("REPROSR_NTIRE_CKPT") if name == "span_esr_ch28_x4_ntire2024" else None
    path = Path(env) if env else shared_checkpoint(shared) or released.cached_path(name)
    if not path.is_file():
        pytest.skip(
            f"not run: {name} not available (set REPROSR_TEST_CHECKPOINTS to a folder holding {shared}, or "
            f"fetch it: `reprosr eval span_esr --scale 4 --variant {released.RELEASED[name].variant} --form "
            f"deploy --checkpoint {name} --dataset Set5`)"
        )
    released.RELEASED[name].files[0].check(path)  # sha256, git blob id and size of the release
    return path


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release(request) -> tuple[str, torch.nn.Module]:
    name = request.param
    entry = released.RELEASED[name]
    net = architectures.build(entry.model, entry.scale, entry.variant, form=entry.form)
    return name, architectures.load_checkpoint(net, _checkpoint(name)).eval()


def test_parameter_count_matches_the_challenge_report(release):
    name, model = release
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 3) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_released_checkpoint_matches_official_numbers(release, dataset, datasets_root):
    name, model = release
    psnrs, ssims = [], []
    with torch.no_grad():
        for pair in data.benchmark_pairs(dataset, 4, root=datasets_root):
            sr = model(pair.lr[None])[0]
            psnrs.append(metrics.psnr_y(sr, pair.hr, 4))
            ssims.append(metrics.ssim_y(sr, pair.hr, 4))
    psnr, ssim = sum(psnrs) / len(psnrs), sum(ssims) / len(ssims)
    official_psnr, official_ssim = RELEASES[name][1][dataset]
    assert abs(psnr - official_psnr) <= 0.005, (name, dataset, psnr, official_psnr)
    assert abs(ssim - official_ssim) <= 0.0001, (name, dataset, ssim, official_ssim)

"""The NTIRE 2024 SPAN ch28 ×4 release, run through our port, reproduces the official code's PSNR/SSIM.

Official numbers, measured once outside the repository: the official class ``SPAN30(3, 3, upscale=4,
feature_channels=28)`` of Amazingren/NTIRE2024_ESR ``models/team38_SPAN.py`` (commit 6404fa4, only its CUDA
warm-up call removed), the released ``model_zoo/team38_span_ch28_slim.pth`` loaded strictly, eval mode,
CPU float32; I/O as BasicSR's validation (cv2 color read → /255 → model → clamp [0, 1] → ×255 → round →
uint8; HR cropped to 4 × LR size; LR = the MATLAB-made ``LR_bicubic/X4`` files); metrics = BasicSR 1.4.2's
own ``calculate_psnr`` / ``calculate_ssim`` with ``crop_border=4, test_y_channel=True``, averaged per set.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

import architectures
from harness import data, metrics, released
from tests.conftest import shared_checkpoint

NAME = "span_esr_ch28_x4_ntire2024"
SHARED_FILE = "ntire2024_team38_span_ch28_x4.pth"
OFFICIAL = {  # set → (mean PSNR-Y dB, mean SSIM-Y), from the official code as described above
    "Set5": (31.731633, 0.889752),
    "Set14": (28.401061, 0.776880),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    env = os.environ.get("REPROSR_NTIRE_CKPT")
    path = Path(env) if env else shared_checkpoint(SHARED_FILE) or released.cached_path(NAME)
    if not path.is_file():
        pytest.skip(
            f"not run: NTIRE 2024 SPAN checkpoint not available (set REPROSR_TEST_CHECKPOINTS to a folder "
            f"holding {SHARED_FILE}, REPROSR_NTIRE_CKPT to the file, or run `reprosr eval span_esr --scale 4 "
            f"--variant ch28 --form deploy --checkpoint {NAME} --dataset Set5`)"
        )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == released.RELEASED[NAME].sha256, (
        f"{path} is not the released {NAME} file (sha256 differs)"
    )
    return path


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> torch.nn.Module:
    entry = released.RELEASED[NAME]
    net = architectures.build(entry.model, entry.scale, entry.variant, form=entry.form)
    return architectures.load_checkpoint(net, checkpoint).eval()


@pytest.mark.parametrize("dataset", sorted(OFFICIAL))
def test_released_checkpoint_matches_official_numbers(model, dataset, datasets_root):
    psnrs, ssims = [], []
    with torch.no_grad():
        for pair in data.benchmark_pairs(dataset, 4, root=datasets_root):
            sr = model(pair.lr[None])[0]
            psnrs.append(metrics.psnr_y(sr, pair.hr, 4))
            ssims.append(metrics.ssim_y(sr, pair.hr, 4))
    psnr, ssim = sum(psnrs) / len(psnrs), sum(ssims) / len(ssims)
    official_psnr, official_ssim = OFFICIAL[dataset]
    assert abs(psnr - official_psnr) <= 0.005, (dataset, psnr, official_psnr)
    assert abs(ssim - official_ssim) <= 0.0001, (dataset, ssim, official_ssim)

"""PSNR-Y + SSIM-Y per image: `harness.metrics.scores` against BasicSR's `calculate_psnr` + `calculate_ssim`
(test_y_channel=True, crop_border=scale), timed side by side in interleaved rounds on one thread, on every
Set5/Set14 image at ×2/×3/×4.

Run: python benchmarks/bench_metrics.py [--datasets ROOT] [--basicsr BASICSR_SRC] [--rounds R]
(BASICSR_SRC: a BasicSR source tree, e.g. the unpacked `pip download basicsr --no-deps` sdist; or set
$REPROSR_BASICSR; needs OpenCV importable). SR = MATLAB-bicubic upscaling of the MATLAB LR (a realistic
imperfect output). Each side starts from what its pipeline holds: ours float32 [0, 1] tensors (3, H, W),
BasicSR uint8 HWC BGR arrays (its tensor2img output). Per set × scale, one round calls each side once per
image (interleaved image by image); a round's time is the sum over the set. Printed: min and median per
side, the per-round speed-up range and median (BasicSR time / ours), the smallest per-image median
speed-up, and the largest differences of the two results.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import basicsr_pieces, stats  # noqa: E402
from harness import metrics  # noqa: E402
from harness.data import read_image  # noqa: E402
from harness.degrade import imresize_matlab  # noqa: E402


def _bgr_uint8(img: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(metrics.to_uint8(img).permute(1, 2, 0).numpy()[..., ::-1])


def run(root: Path, basicsr, rounds: int) -> None:
    for dataset in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            totals = {"basicsr": [0.0] * rounds, "ours": [0.0] * rounds}
            per_image, d_psnr, d_ssim = [], 0.0, 0.0
            for path in sorted((root / dataset / "HR").glob("*.png")):
                hr = read_image(path)
                lr = read_image(root / dataset / "LR_bicubic" / f"X{scale}" / path.name)
                hr = hr[:, : lr.shape[1] * scale, : lr.shape[2] * scale]
                sr = imresize_matlab(lr, scale).clamp(0, 1)
                sr8, hr8 = _bgr_uint8(sr), _bgr_uint8(hr)

                def ref(sr8=sr8, hr8=hr8, scale=scale):
                    return (
                        basicsr.calculate_psnr(sr8, hr8, scale, test_y_channel=True),
                        basicsr.calculate_ssim(sr8, hr8, scale, test_y_channel=True),
                    )

                def ours(sr=sr, hr=hr, scale=scale):
                    return metrics.scores(sr, hr, scale, ("psnr_y", "ssim_y"))

                expected, got = ref(), ours()
                d_psnr = max(d_psnr, abs(got["psnr_y"] - expected[0]))
                d_ssim = max(d_ssim, abs(got["ssim_y"] - expected[1]))
                times = stats.rounds({"basicsr": ref, "ours": ours}, rounds)
                for name, ts in times.items():
                    totals[name] = [a + b for a, b in zip(totals[name], ts, strict=True)]
                per_image.append(statistics.median(stats.ratios(times, "basicsr", "ours")))
            differences = f"max |ΔPSNR-Y| {d_psnr:.1e} dB, |ΔSSIM-Y| {d_ssim:.1e}"
            print(f"{dataset} ×{scale} ({len(per_image)} images; {differences})")
            print(stats.summary(totals, "basicsr"))
            print(f"smallest per-image median speed-up: {min(per_image):.2f}×\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        type=Path,
        default=basicsr_pieces.datasets_root(),
        help="root holding Set5/ and Set14/ (default $REPROSR_TEST_DATASETS, else ../shared/datasets)",
    )
    parser.add_argument(
        "--basicsr", type=Path, default=None, help=f"BasicSR source tree (or ${basicsr_pieces.ENV})"
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (default 1)")
    args = parser.parse_args()
    if args.datasets is None or not (args.datasets / "Set5" / "HR").is_dir():
        print("not run: no Set5/Set14 found; pass --datasets ROOT or set REPROSR_TEST_DATASETS")
        return
    torch.set_num_threads(args.threads)
    root = basicsr_pieces.source_root(args.basicsr)
    if root is None:
        print(
            f"not run: the BasicSR comparison needs --basicsr PATH or ${basicsr_pieces.ENV} "
            "(a BasicSR source tree)"
        )
        return
    basicsr = basicsr_pieces.psnr_ssim(root)
    import cv2

    cv2.setNumThreads(args.threads)
    print(f"{stats.environment()}; OpenCV {cv2.__version__}, BasicSR {basicsr_pieces.version(root)}\n")
    run(args.datasets, basicsr, args.rounds)
    print(f"at the end: {stats.environment()}")


if __name__ == "__main__":
    main()

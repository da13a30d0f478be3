"""PSNR-Y + SSIM-Y per image: `harness.metrics.scores` against BasicSR's `calculate_psnr` + `calculate_ssim`
(test_y_channel=True, crop_border=scale), side by side in one run, on every Set5/Set14 image at ×2/×3/×4.

Run: python benchmarks/bench_metrics.py --datasets DATASETS_ROOT [--basicsr BASICSR_SRC] [--repeats R]
(BASICSR_SRC: a BasicSR source tree, e.g. the unpacked `pip download basicsr --no-deps` sdist; or set
$REPROSR_BASICSR; needs OpenCV importable). SR = MATLAB-bicubic upscaling of the MATLAB LR (a realistic
imperfect output). Each side starts from what its pipeline holds: ours float [0, 1] tensors (3, H, W),
BasicSR uint8 HWC BGR arrays (its tensor2img output). Calls are interleaved; per image the median of R
calls, both as CPU time of this thread (`time.thread_time`, insensitive to other jobs' preemption) and
as wall time. Prints markdown tables: per set × scale the median and minimum speed-up (BasicSR / ours)
and the largest differences of the two results.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import basicsr_pieces  # noqa: E402
from harness import metrics  # noqa: E402
from harness.data import read_image  # noqa: E402
from harness.degrade import imresize_matlab  # noqa: E402


def _timed(fn) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return out, time.thread_time() - cpu, time.perf_counter() - wall


def _bgr_uint8(img: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(metrics.to_uint8(img).permute(1, 2, 0).numpy()[..., ::-1])


def run(root: Path, basicsr, repeats: int) -> None:
    print("| set | scale | images | speed-up, CPU time: median (min) | speed-up, wall: median (min) "
          "| ours per image, CPU (ms) | max abs ΔPSNR-Y (dB) | max abs ΔSSIM-Y |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for dataset in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            cpu_ratio, wall_ratio, ours_ms, d_psnr, d_ssim = [], [], [], 0.0, 0.0
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

                ref(), ours()
                times = {"ref": [], "ours": []}
                for _ in range(repeats):
                    expected, *t_ref = _timed(ref)
                    got, *t_ours = _timed(ours)
                    times["ref"].append(t_ref)
                    times["ours"].append(t_ours)
                med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()}
                cpu_ratio.append(med["ref"][0] / med["ours"][0])
                wall_ratio.append(med["ref"][1] / med["ours"][1])
                ours_ms.append(med["ours"][0] * 1e3)
                d_psnr = max(d_psnr, abs(got["psnr_y"] - expected[0]))
                d_ssim = max(d_ssim, abs(got["ssim_y"] - expected[1]))
            print(
                f"| {dataset} | ×{scale} | {len(cpu_ratio)} | {statistics.median(cpu_ratio):.2f}× "
                f"({min(cpu_ratio):.2f}×) | {statistics.median(wall_ratio):.2f}× ({min(wall_ratio):.2f}×) | "
                f"{statistics.median(ours_ms):.1f} | {d_psnr:.1e} | {d_ssim:.1e} |"
            )


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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    if args.datasets is None or not (args.datasets / "Set5" / "HR").is_dir():
        print("not run: no Set5/Set14 found; pass --datasets ROOT or set REPROSR_TEST_DATASETS")
        return
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
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
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"torch {torch.__version__}, numpy {np.__version__}, OpenCV {cv2.__version__}, BasicSR "
        f"{basicsr_pieces.version(root)}; {args.threads} thread(s), "
        f"median of {args.repeats} interleaved calls\n"
    )
    run(args.datasets, basicsr, args.repeats)


if __name__ == "__main__":
    main()

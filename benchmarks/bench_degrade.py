"""Throughput of harness.degrade.imresize_matlab against the straightforward numpy reference, and its
agreement with MATLAB-made LR images.

Run: python benchmarks/bench_degrade.py [--threads N] [--repeats R] [--matlab DATASETS_ROOT]
Prints markdown tables: ms per call (best of R; speedup = numpy / torch) and, with --matlab, the worst
per-image difference from `<root>/<Set>/LR_bicubic/X<s>` over Set5 and Set14.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.data import read_image  # noqa: E402
from harness.degrade import bicubic_downsample, imresize_matlab  # noqa: E402
from tests.harness.imresize_reference import imresize_reference  # noqa: E402

# (label, channels, H, W, scale): Set14-, Urban100- and DIV2K-sized images, and a batch of 16 RGB
# training patches (48 channels for the numpy reference, which vectorises over them the same way)
CASES = [
    ("3×512×512 ×1/2", 3, 512, 512, 1 / 2),
    ("3×510×510 ×1/3", 3, 510, 510, 1 / 3),
    ("3×512×512 ×1/4", 3, 512, 512, 1 / 4),
    ("3×1020×1020 ×1/2", 3, 1020, 1020, 1 / 2),
    ("3×1020×1020 ×1/4", 3, 1020, 1020, 1 / 4),
    ("3×1356×2040 ×1/4", 3, 1356, 2040, 1 / 4),
    ("16×3×192×192 ×1/4", 48, 192, 192, 1 / 4),
]


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def throughput_table(repeats: int) -> None:
    rng = np.random.default_rng(0)
    print("| case | numpy reference (ms) | torch f64 (ms) | torch f32 (ms) | speedup f64 | speedup f32 |")
    print("|---|---|---|---|---|---|")
    for label, c, h, w, scale in CASES:
        image = rng.random((h, w, c))
        chw64 = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        chw32 = chw64.float()
        ref = best_ms(lambda image=image, scale=scale: imresize_reference(image, scale), repeats)
        t64 = best_ms(lambda x=chw64, scale=scale: imresize_matlab(x, scale), repeats)
        t32 = best_ms(lambda x=chw32, scale=scale: imresize_matlab(x, scale), repeats)
        print(f"| {label} | {ref:.1f} | {t64:.1f} | {t32:.1f} | {ref / t64:.1f}× | {ref / t32:.1f}× |")


def matlab_table(root: Path) -> None:
    print(
        "| set | scale | images | max abs diff (gray levels) | min identical pixels | all pixels identical |"
    )
    print("|---|---|---|---|---|---|")
    for dataset in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            worst, least, same, total, n = 0.0, (2.0, ""), 0, 0, 0
            for hr_path in sorted((root / dataset / "HR").glob("*.png")):
                lr = bicubic_downsample(read_image(hr_path), scale)[1]
                matlab = read_image(root / dataset / "LR_bicubic" / f"X{scale}" / hr_path.name)
                diff = (lr * 255 - matlab * 255).round().abs()
                frac = diff.eq(0).double().mean().item()
                worst, least = max(worst, diff.max().item()), min(least, (frac, hr_path.stem))
                same, total, n = same + diff.eq(0).sum().item(), total + diff.numel(), n + 1
            row = [
                dataset,
                f"×{scale}",
                n,
                f"{worst:.0f}",
                f"{least[0]:.4%} ({least[1]})",
                f"{same / total:.5%}",
            ]
            print("| " + " | ".join(map(str, row)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--matlab", type=Path, default=None, help="datasets root with Set5/Set14 MATLAB LR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"torch {torch.__version__}, numpy {np.__version__}, torch threads {args.threads}, "
        f"best of {args.repeats}\n"
    )
    throughput_table(args.repeats)
    if args.matlab is not None:
        print()
        matlab_table(args.matlab)


if __name__ == "__main__":
    main()

"""MATLAB-bicubic degradation: `harness.degrade.bicubic_downsample` against BasicSR's
`basicsr.utils.matlab_functions.imresize` side by side in one run, and its agreement with MATLAB-made LR.

Run: python benchmarks/bench_degrade.py --datasets DATASETS_ROOT [--basicsr BASICSR_SRC] [--repeats R]
(BASICSR_SRC: a BasicSR source tree, e.g. the unpacked `pip download basicsr --no-deps` sdist, or set
$REPROSR_BASICSR; imresize needs torch only). Cases: every Set5/Set14 HR image at ×2/×3/×4 and a
DIV2K-sized 2040×1356 image (random pixels on the uint8 grid). Both sides take the HR as a (3, H, W)
float32 tensor in [0, 1] (cropped to a multiple of the scale) and give the LR rounded to uint8 (ours:
MATLAB's rounding, inside; BasicSR: `round(255·out)` clamped to 0..255 after, as writing it as uint8
does; its output overshoots [0, 1] near edges). Calls interleaved, median of R, as CPU time of
this thread (`time.thread_time`, insensitive to other jobs' preemption) and as wall time. Prints markdown
tables: speed-ups (BasicSR / ours), the largest difference of the two LRs, and (with the MATLAB LR of
`<root>/<Set>/LR_bicubic/X<s>`) the agreement of ours with MATLAB.
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
from harness.data import read_image  # noqa: E402
from harness.degrade import bicubic_downsample  # noqa: E402


def _timed(fn) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return out, time.thread_time() - cpu, time.perf_counter() - wall


def _compare(hr: torch.Tensor, scale: int, imresize, repeats: int) -> tuple[float, float, float, float]:
    """(CPU-time speed-up, wall speed-up, ours CPU ms, max |ours − BasicSR| in gray levels)."""
    h, w = (n - n % scale for n in hr.shape[-2:])
    cropped = hr[:, :h, :w].contiguous()

    def ref():
        return imresize(cropped, 1 / scale).mul(255).round().clamp(0, 255)

    def ours():
        return bicubic_downsample(hr, scale)[1].mul(255).round()

    ref(), ours()
    t_ref, t_ours = [], []
    for _ in range(repeats):
        expected, *t = _timed(ref)
        t_ref.append(t)
        got, *t = _timed(ours)
        t_ours.append(t)
    cpu = [statistics.median(t[0] for t in ts) for ts in (t_ref, t_ours)]
    wall = [statistics.median(t[1] for t in ts) for ts in (t_ref, t_ours)]
    return cpu[0] / cpu[1], wall[0] / wall[1], cpu[1] * 1e3, (got - expected).abs().max().item()


def speed_table(root: Path, imresize, repeats: int) -> None:
    print("| images | scale | n | speed-up, CPU time: median (min) | speed-up, wall: median (min) "
          "| ours per image, CPU (ms) | max abs LR diff vs BasicSR (gray levels) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    groups = [(name, sorted((root / name / "HR").glob("*.png"))) for name in ("Set5", "Set14")]
    div2k = torch.randint(0, 256, (3, 1356, 2040), generator=torch.Generator().manual_seed(0)) / 255.0
    for scale in (2, 3, 4):
        for name, images in [*groups, ("2040×1356 (DIV2K size)", [div2k])]:
            rows = [
                _compare(img if isinstance(img, torch.Tensor) else read_image(img), scale, imresize, repeats)
                for img in images
            ]
            cpu, wall, ms, diff = zip(*rows, strict=True)
            print(
                f"| {name} | ×{scale} | {len(rows)} | {statistics.median(cpu):.1f}× ({min(cpu):.1f}×) | "
                f"{statistics.median(wall):.1f}× ({min(wall):.1f}×) | {statistics.median(ms):.1f} | "
                f"{max(diff):.0f} |"
            )


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
    parser.add_argument(
        "--datasets",
        type=Path,
        default=basicsr_pieces.datasets_root(),
        help="root holding Set5/ and Set14/ (default $REPROSR_TEST_DATASETS, else ../shared/datasets)",
    )
    parser.add_argument("--basicsr", type=Path, default=None, help="BasicSR source tree")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.datasets is None or not (args.datasets / "Set5" / "HR").is_dir():
        print("not run: no Set5/Set14 found; pass --datasets ROOT or set REPROSR_TEST_DATASETS")
        return
    torch.set_num_threads(args.threads)
    root = basicsr_pieces.source_root(args.basicsr)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"torch {torch.__version__}, numpy {np.__version__}, BasicSR "
        f"{basicsr_pieces.version(root) if root else 'absent'}; {args.threads} thread(s), "
        f"median of {args.repeats} interleaved calls\n"
    )
    if root is None:
        print(f"not run: the BasicSR comparison needs --basicsr PATH or ${basicsr_pieces.ENV}\n")
    else:
        speed_table(args.datasets, basicsr_pieces.imresize(root), args.repeats)
        print()
    matlab_table(args.datasets)


if __name__ == "__main__":
    main()

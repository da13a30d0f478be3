"""MATLAB-bicubic degradation: `harness.degrade.bicubic_levels` / `bicubic_downsample` against BasicSR's
`basicsr.utils.matlab_functions.imresize`, timed side by side in interleaved rounds on one thread, and its
pixel agreement with the MATLAB-made LR (Set5/Set14) and with the `resize_right` package (DIV2K-sized).

Run: python benchmarks/bench_degrade.py [--datasets ROOT] [--basicsr BASICSR_SRC] [--rounds R]
(BASICSR_SRC: a BasicSR source tree, e.g. the unpacked `pip download basicsr --no-deps` sdist, or set
$REPROSR_BASICSR; its imresize needs torch only. `resize_right` is optional: `pip install resize-right` in a
scratch environment; without it that comparison prints "not run".) Cases: every Set5/Set14 HR image at
×2/×3/×4 and two DIV2K-sized 2040×1356 images (random pixels; smooth waves with hard edges), all on the
uint8 grid. Every side takes the HR as a (3, H, W) float32 tensor in [0, 1] and gives the LR as levels:
BasicSR's round(255·out) clamped after, as writing it does (float levels: its uint8 cast is not timed);
ours as uint8 levels straight from the kernel (`bicubic_levels`, what writing an LR image uses), and ours
as the float LR then rounded like BasicSR's (`bicubic_downsample`, what LR made in memory uses).

Ours runs the compiled kernel (`harness.degrade_c`) when it builds, else the torch path; the run prints
which. Each of our sides is compared with BasicSR's in its own interleaved rounds: per group of images,
one round calls BasicSR then ours once per image (interleaved image by image); a round's time is the sum
over the group. Printed: min and median per side, the per-round speed-up range and median (BasicSR time
/ ours), the smallest per-image median speed-up, and the largest LR difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import basicsr_pieces, stats  # noqa: E402
from harness import degrade_c  # noqa: E402
from harness.data import read_image  # noqa: E402
from harness.degrade import bicubic_downsample, bicubic_levels  # noqa: E402

DIV2K_SIZE = (1356, 2040)


def div2k_sized() -> dict[str, torch.Tensor]:
    """Two 2040×1356 RGB images on the uint8 grid, in channels-last memory as read_image gives them: uniform
    random pixels, and smooth waves cut by hard edges and flat areas (structure like a photograph's, where
    exact rounding ties are frequent)."""
    h, w = DIV2K_SIZE
    rand = torch.randint(0, 256, (3, h, w), generator=torch.Generator().manual_seed(0)) / 255.0
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    waves = torch.stack(
        [128 + 100 * torch.sin(x / (13 + 4 * c)) * torch.cos(y / (17 + 3 * c)) for c in range(3)]
    )
    waves = torch.where((x // 97 + y // 61) % 3 == 0, torch.full_like(waves, 40.0), waves)
    waves[:, h // 3 : h // 2] = 250.0
    waves = waves.round().div(255).float()
    # laid out as read_image gives an image: channels-last memory
    return {
        name: img.permute(1, 2, 0).contiguous().permute(2, 0, 1)
        for name, img in (("2040×1356 random", rand), ("2040×1356 waves", waves))
    }


def _group_rounds(
    sides: dict[str, Callable[[torch.Tensor], object]], images: list[torch.Tensor], rounds: int
):
    """Per side, the per-round total over the images; and per image the median speed-up."""
    totals = {name: [0.0] * rounds for name in sides}
    per_image = []
    for img in images:
        times = stats.rounds({name: (lambda fn=fn, img=img: fn(img)) for name, fn in sides.items()}, rounds)
        for name, ts in times.items():
            totals[name] = [a + b for a, b in zip(totals[name], ts, strict=True)]
        per_image.append(statistics.median(stats.ratios(times, "basicsr", "ours")))
    return totals, per_image


def speed(groups: dict[str, list[torch.Tensor]], imresize, rounds: int) -> None:
    """Per scale and group, two interleaved comparisons (each of our sides always right after BasicSR's):
    BasicSR's imresize rounded to levels against ours as uint8 levels (`bicubic_levels`, what writing an
    LR image uses), then against ours as the float LR (`bicubic_downsample`) rounded like BasicSR's."""
    for scale in (2, 3, 4):

        def ref(hr: torch.Tensor, scale: int = scale) -> torch.Tensor:
            h, w = (n - n % scale for n in hr.shape[-2:])
            return imresize(hr[:, :h, :w], 1 / scale).mul(255).round().clamp(0, 255)

        def levels(hr: torch.Tensor, scale: int = scale) -> torch.Tensor:
            return bicubic_levels(hr, scale)

        def float_lr(hr: torch.Tensor, scale: int = scale) -> torch.Tensor:
            return bicubic_downsample(hr, scale)[1].mul(255).round()

        for name, images in groups.items():
            for label, ours in (("uint8 levels", levels), ("float LR", float_lr)):
                diff = max((ref(img) - ours(img).float()).abs().max().item() for img in images)
                totals, per_image = _group_rounds({"basicsr": ref, "ours": ours}, images, rounds)
                print(
                    f"{name} ×{scale}, ours as {label} ({len(images)} images; "
                    f"max |ours − BasicSR| {diff:.0f} gray level(s))"
                )
                print(stats.summary(totals, "basicsr"))
                print(f"smallest per-image median speed-up: {min(per_image):.2f}×\n")


def matlab_agreement(root: Path) -> None:
    """Ours, as the float LR and as uint8 levels, against the MATLAB-made LR of Set5/Set14."""
    print(
        "| set | scale | images | LR pixels (× channels) | differing from MATLAB: float LR / uint8 levels "
        "| max abs diff (levels) |"
    )
    print("|---|---|---|---|---|---|")
    for dataset in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            differing, total, worst, n = [0, 0], 0, 0.0, 0
            for hr_path in sorted((root / dataset / "HR").glob("*.png")):
                hr = read_image(hr_path)
                matlab = (
                    read_image(root / dataset / "LR_bicubic" / f"X{scale}" / hr_path.name).mul(255).round()
                )
                for k, lr in enumerate(
                    (bicubic_downsample(hr, scale)[1].mul(255).round(), bicubic_levels(hr, scale).float())
                ):
                    differing[k] += int(lr.ne(matlab).sum())
                    worst = max(worst, (lr - matlab).abs().max().item())
                total, n = total + matlab.numel(), n + 1
            print(f"| {dataset} | ×{scale} | {n} | {total} | {differing[0]} / {differing[1]} | {worst:.0f} |")


def resize_right_agreement(images: dict[str, torch.Tensor]) -> None:
    """Ours against `resize_right` (symmetric padding, float64 from k/255: 0 pixels differ from the MATLAB
    LR of Set5/Set14), rounded as MATLAB writes uint8."""
    try:
        from resize_right import resize
    except ImportError:
        print(
            "not run: the resize_right comparison needs `pip install resize-right` (outside the repository)"
        )
        return
    print("| image | scale | LR pixels (× channels) | differing from resize_right: float LR / uint8 levels |")
    print("|---|---|---|---|")
    for name, img in images.items():
        for scale in (2, 3, 4):
            h, w = (n - n % scale for n in img.shape[-2:])
            levels = img[:, :h, :w].double().mul(255).round().numpy()
            anchor = resize(levels / 255, scale_factors=[1, 1 / scale, 1 / scale], pad_mode="symmetric")
            anchor = np.floor(np.clip(anchor * 255, 0, 255) + 0.5)
            ours = bicubic_downsample(img, scale)[1].mul(255).round().double().numpy()
            levels = bicubic_levels(img, scale).double().numpy()
            differing = f"{int((ours != anchor).sum())} / {int((levels != anchor).sum())}"
            print(f"| {name} | ×{scale} | {ours.size} | {differing} |")


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
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (default 7)")
    args = parser.parse_args()
    if args.datasets is None or not (args.datasets / "Set5" / "HR").is_dir():
        print("not run: no Set5/Set14 found; pass --datasets ROOT or set REPROSR_TEST_DATASETS")
        return
    torch.set_num_threads(args.threads)
    root = basicsr_pieces.source_root(args.basicsr)
    print(f"{stats.environment()}; BasicSR {basicsr_pieces.version(root) if root else 'absent'}")
    library = degrade_c.kernel()
    path = f"compiled C kernel {Path(library._name).name}" if library else "torch (no C kernel)"
    print(f"ours: bicubic_levels and bicubic_downsample on the {path}\n")
    synthetic = div2k_sized()
    if root is None:
        print(f"not run: the BasicSR comparison needs --basicsr PATH or ${basicsr_pieces.ENV}\n")
    else:
        groups = {
            name: [read_image(p) for p in sorted((args.datasets / name / "HR").glob("*.png"))]
            for name in ("Set5", "Set14")
        }
        groups.update({name: [img] for name, img in synthetic.items()})
        speed(groups, basicsr_pieces.imresize(root), args.rounds)
    matlab_agreement(args.datasets)
    print()
    resize_right_agreement(synthetic)
    print(f"\nat the end: {stats.environment()}")


if __name__ == "__main__":
    main()

"""Pairs: the one pair-checking rule every dataset layout goes through (LR found by a file name template,
BasicSR's ``filename_tmpl``), LR folders without ground truth, and the embedded photos.

The rule (:func:`check_names`, :func:`check_sizes`):
- names pair one to one: the LR of HR `<stem><suffix>` is `filename_tmpl.format(stem) + suffix` in the LR
  folder (BasicSR's rule: `{}` for same names, `{}x4` for EDSR's `babyx4.png`); an HR image without its LR
  or an LR image without its HR is an error naming them;
- sizes agree at the scale: HR is cropped to a multiple of the scale (what MATLAB-made sets and the metric
  conventions do) and the LR times the scale must equal that crop exactly. An LR one row short, or an LR of
  another scale named like this one (a ×8 file named `x4`), is an error naming both files and sizes.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from harness.data.images import IMAGE_SUFFIXES, crop_to_scale, image_files, read_image
from harness.degrade import bicubic_downsample
from harness.errors import UserError

EMBEDDED = Path(__file__).resolve().parents[1] / "embedded"
_SHOWN = 3  # file names an error lists before "and N more"


@dataclass(frozen=True)
class Pair:
    """An evaluation pair: hr (3, s·h, s·w) and lr (3, h, w), float32 in [0, 1]."""

    name: str
    hr: Tensor
    lr: Tensor


@dataclass(frozen=True)
class LRImage:
    """An input without ground truth: its name (file stem), file and pixels (3, h, w) float32 in [0, 1]."""

    name: str
    path: Path
    lr: Tensor


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def lr_name(hr_file: Path, filename_tmpl: str) -> str:
    """The LR file name of `hr_file` under `filename_tmpl` (`{}` → `baby.png`, `{}x4` → `babyx4.png`)."""
    return filename_tmpl.format(hr_file.stem) + hr_file.suffix


def check_names(
    hr_files: list[Path], lr_dir: Path, filename_tmpl: str, what: str, hint: str = ""
) -> list[Path]:
    """The LR file of each HR file, in order; a FileNotFoundError naming the HR images whose LR is missing
    and the LR images that have no HR (names must pair one to one). `what` names the set in the error,
    `hint` ends it (what to do)."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(filename_tmpl) if field is not None]
    except ValueError:  # an unmatched brace
        fields = []
    if fields not in ([""], ["0"]) or "/" in filename_tmpl or "\\" in filename_tmpl:
        raise UserError(
            f"file name template {filename_tmpl!r} must hold one {{}} where the HR file's stem goes and no "
            "folder (e.g. '{}' for the same names, '{}x4' for babyx4.png)"
        )
    lr_files = image_files(lr_dir) if lr_dir.is_dir() else []
    expected = [lr_dir / lr_name(f, filename_tmpl) for f in hr_files]
    present = {p.name for p in lr_files}
    missing = [
        hr.name if hr.name == lr.name else f"{hr.name} → {lr.name}"
        for hr, lr in zip(hr_files, expected, strict=True)
        if lr.name not in present
    ]
    extra = sorted(present - {p.name for p in expected})
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {len(hr_files)} HR images have no LR ({_listed(missing)})")
        if extra:
            problems.append(f"{len(extra)} LR images have no HR ({_listed(extra)})")
        raise FileNotFoundError(
            f"{what}: {'; '.join(problems)} in {lr_dir} (LR named {filename_tmpl!r} + the HR suffix): each "
            f"HR image needs exactly one LR image{hint}"
        )
    return expected


def check_sizes(hr_file: Path, hr: Tensor, lr_file: Path, lr: Tensor, scale: int) -> Tensor:
    """HR cropped to a multiple of `scale` (:func:`crop_to_scale`) when `lr` is exactly that crop's ×`scale`
    LR; else a ValueError naming both files and sizes (W×H), and the scale the LR looks like if another."""
    cropped = crop_to_scale(hr, scale)
    (h, w), (lh, lw) = cropped.shape[-2:], lr.shape[-2:]
    if (lh * scale, lw * scale) == (h, w):
        return cropped
    ratio = hr.shape[-2] // lh if lh and lw and hr.shape[-2] // lh == hr.shape[-1] // lw else 0
    guess = f"; it looks like a ×{ratio} LR" if ratio > 1 and ratio != scale else ""
    raise UserError(
        f"LR {lr_file} is {lw}×{lh} but HR {hr_file} is {hr.shape[-1]}×{hr.shape[-2]} (cropped to a multiple "
        f"of {scale}: {w}×{h}), whose ×{scale} LR is {w // scale}×{h // scale}{guess}: pass the ×{scale} LR "
        "made from this HR image"
    )


def iter_pairs(
    hr_files: list[Path], lr_dir: Path, scale: int, filename_tmpl: str, what: str, hint: str = ""
) -> Iterator[Pair]:
    """The pairs of `hr_files` and their LR in `lr_dir`, in order, read one at a time: names are checked
    for the whole set now (:func:`check_names`), sizes pair by pair as they are read (:func:`check_sizes`);
    each Pair's hr is the cropped HR."""
    lr_files = check_names(hr_files, lr_dir, filename_tmpl, what, hint)

    def read() -> Iterator[Pair]:
        for hr_file, lr_file in zip(hr_files, lr_files, strict=True):
            lr = read_image(lr_file)
            yield Pair(hr_file.stem, check_sizes(hr_file, read_image(hr_file), lr_file, lr, scale), lr)

    return read()


def lr_images(folder: str | os.PathLike) -> list[LRImage]:
    """Every image of an LR folder (no ground truth: what `reprosr upscale` reads), sorted by name, all
    decoded before this returns: a corrupt file raises ImageReadError naming it before any work is done.

    Files without an image suffix and hidden files are skipped (:func:`image_files`). Two images with one
    stem (`a.png`, `a.jpg`) would write one output and are refused; so is a folder with no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of LR images")
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(
            f"no images in {folder} (looked for {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)})"
        )
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise UserError(f"{stems[f.stem].name} and {f.name} in {folder} share a name: rename one")
        stems[f.stem] = f
    return [LRImage(f.stem, f, read_image(f)) for f in files]


def embedded_pairs(scale: int) -> list[Pair]:
    """Pairs from the small photos shipped in `harness/embedded/` (LR made in memory, MATLAB-exact)."""
    pairs = []
    for f in sorted(EMBEDDED.glob("*.png")):
        hr, lr = bicubic_downsample(read_image(f), scale)
        pairs.append(Pair(f.stem, hr, lr))
    return pairs

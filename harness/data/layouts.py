"""Dataset layouts: where a set's HR and LR images lie under a data root, detected or chosen by name.

For a set `<Name>` at ×s under the data root (:data:`LAYOUTS`):
- "registry" (this package's): `<Name>/HR/baby.png` + `<Name>/LR_bicubic/X<s>/baby.png`; an absent LR
  folder is generated here (MATLAB-exact bicubic, :mod:`harness.data.lr_cache`);
- "edsr": EDSR-PyTorch's benchmark layout, also HSPAN's and that of the `benchmark.tar` `reprosr data fetch`
  falls back to, which BasicSR-family configs read with `filename_tmpl: '{}x4'`:
  `[benchmark/]<Name>/HR/baby.png` + `[benchmark/]<Name>/LR_bicubic/X<s>/babyx<s>.png`;
- "basicsr": BasicSR's `<Name>/GTmod12/baby.png` + `<Name>/LRbicx<s>/baby.png` (any `GTmod<k>` folder);
- "ntire": the NTIRE challenges' `<Name>_HR/0801.png` + `<Name>_LR/0801x<s>.png` (DIV2K_LSDIR_valid).
Free HR and LR folders anywhere, with a file name template (BasicSR's `dataroot_gt`, `dataroot_lq`,
`filename_tmpl`): :func:`free_folders` (layout "folders"), :func:`folder_pairs`.

Detection (`layout=None`): the first of these (in that order) whose HR folder holds images and whose LR
folder holds the LR of one of them; else, when `<Name>/HR` holds images, the registry layout (its LR is then
generated); else the first whose HR folder holds images (the pair rule names the missing LR); else a
FileNotFoundError naming every folder looked in. Every layout's pairs go through the one pair rule
(:mod:`harness.data.pairs`): names one to one, LR × scale = HR cropped to a multiple of the scale.

Links: reading follows symbolic links (a data root is the user's folder, and BasicSR's datasets README
recommends `ln -s` to put sets in it); a set name is one folder name (no `/` or `..`); writing (generated
LR, fetched files) never leaves the data root (:func:`harness.data.registry.check_inside`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.data.images import image_files
from harness.data.lr_cache import ensure_lr
from harness.data.pairs import Pair, iter_pairs, lr_name
from harness.data.registry import DATASETS, check_set_name, data_root, spec
from harness.downloads import sha256_file
from harness.errors import UserError

LAYOUTS = ("registry", "edsr", "basicsr", "ntire")


@dataclass(frozen=True)
class SetFolders:
    """One set at one scale in one layout: its HR folder, LR folder and LR name template (`{}`: like the
    HR file; `{}x4`: `babyx4.png`); `base` is the folder the checksum's relative paths start from, `root`
    the data root (nothing is written outside it)."""

    name: str
    scale: int
    layout: str
    hr_dir: Path
    lr_dir: Path
    filename_tmpl: str
    base: Path
    root: Path

    def iter_pairs(self) -> Iterator[Pair]:
        """The pairs, sorted by HR name, read one at a time (names checked before the first is read). In
        the registry layout an absent LR folder is generated first, a generated one refreshed."""
        hr_files, what = image_files(self.hr_dir), f"{self.name} ×{self.scale} ({self.layout} layout)"
        if self.layout == "registry":
            ensure_lr(
                hr_files, self.lr_dir, self.scale, self.root, f"generating {self.name} LR ×{self.scale}"
            )
            fetch = f" (`reprosr data fetch {self.name}`)" if _fetchable(self.name) else ""
            hint = f"; complete that folder{fetch}, or delete it to have the LR generated (MATLAB bicubic)"
        else:
            hint = f"; the {self.layout} layout's LR is used as given, never generated"
        return iter_pairs(hr_files, self.lr_dir, self.scale, self.filename_tmpl, what, hint)

    def checksum(self) -> str:
        """sha256 over the sorted `<sha256>  <path relative to base>` lines of the set's HR images and its
        LR images at every scale this layout keeps beside them (the registry's `LR_bicubic/X*`, BasicSR's
        `LRbicx*`, the one LR folder of NTIRE's layout and of free folders)."""
        if self.layout in ("registry", "edsr"):
            lr_dirs = sorted(p for p in (self.base / "LR_bicubic").glob("X*") if p.is_dir())
        elif self.layout == "basicsr":
            lr_dirs = sorted(p for p in self.base.glob("LRbicx*") if p.is_dir())
        else:
            lr_dirs = [self.lr_dir] if self.lr_dir.is_dir() else []
        files = sorted([*image_files(self.hr_dir), *(f for d in lr_dirs for f in image_files(d))])
        lines = "".join(f"{sha256_file(p)}  {p.relative_to(self.base).as_posix()}\n" for p in files)
        return hashlib.sha256(lines.encode()).hexdigest()


def _fetchable(name: str) -> bool:
    return name in DATASETS and bool(spec(name).archives or spec(name).per_file)


def _candidates(name: str, scale: int, root: Path, layout: str | None) -> list[SetFolders]:
    set_dir, x_s, found = root / name, f"{{}}x{scale}", []
    if layout in (None, "registry"):
        lr_dir = set_dir / "LR_bicubic" / f"X{scale}"
        found.append(SetFolders(name, scale, "registry", set_dir / "HR", lr_dir, "{}", set_dir, root))
    if layout in (None, "edsr"):
        for base in (set_dir, root / "benchmark" / name):
            lr_dir = base / "LR_bicubic" / f"X{scale}"
            found.append(SetFolders(name, scale, "edsr", base / "HR", lr_dir, x_s, base, root))
    if layout in (None, "basicsr"):
        lr_dir = set_dir / f"LRbicx{scale}"
        for gt in sorted(set_dir.glob("GTmod*")) if set_dir.is_dir() else ():
            found.append(SetFolders(name, scale, "basicsr", gt, lr_dir, "{}", set_dir, root))
    if layout in (None, "ntire"):
        hr_dir, lr_dir = root / f"{name}_HR", root / f"{name}_LR"
        found.append(SetFolders(name, scale, "ntire", hr_dir, lr_dir, x_s, root, root))
    return found


def locate(
    name: str, scale: int, root: str | os.PathLike | None = None, layout: str | None = None
) -> SetFolders:
    """Where set `name` lies under `root` (default :func:`harness.data.registry.cache_dir`) at ×`scale`:
    in `layout` (one of :data:`LAYOUTS`) or, when None, the detected one (see the module docstring)."""
    check_set_name(name)
    if layout is not None and layout not in LAYOUTS:
        raise UserError(f"unknown dataset layout {layout!r}; known: {', '.join(LAYOUTS)}")
    root = data_root(root)
    candidates = _candidates(name, scale, root, layout)
    with_hr = [(c, files) for c in candidates if c.hr_dir.is_dir() and (files := image_files(c.hr_dir))]
    for c, hr_files in with_hr:
        if c.lr_dir.is_dir() and any((c.lr_dir / lr_name(f, c.filename_tmpl)).is_file() for f in hr_files):
            return c
    if with_hr:
        return next((c for c, _ in with_hr if c.layout == "registry"), with_hr[0][0])
    how = f"run `reprosr data fetch {name}` or " if _fetchable(name) else ""
    looked = ", ".join(str(c.hr_dir) for c in candidates) if candidates else f"{root / name}/GTmod*"
    raise FileNotFoundError(
        f"dataset {name} not found: no HR images in {looked}; {how}pass --data-root DIR holding it in one of "
        f"the layouts {', '.join(LAYOUTS)} (e.g. DIR/{name}/HR)"
    )


def iter_benchmark_pairs(
    name: str, scale: int, root: str | os.PathLike | None = None, layout: str | None = None
) -> Iterator[Pair]:
    """The (HR, LR) pairs of set `name` at ×`scale` (:func:`locate`, :meth:`SetFolders.iter_pairs`)."""
    return locate(name, scale, root, layout).iter_pairs()


def benchmark_pairs(
    name: str, scale: int, root: str | os.PathLike | None = None, layout: str | None = None
) -> list[Pair]:
    """All pairs of :func:`iter_benchmark_pairs` in memory (float32: fine for the benchmark sets; stream
    large training sets instead)."""
    return list(iter_benchmark_pairs(name, scale, root, layout))


def dataset_checksum(name: str, root: str | os.PathLike | None = None, layout: str | None = None) -> str:
    """:meth:`SetFolders.checksum` of set `name` (the files of every scale: the scale only picks which
    layout is detected, so pass `locate(...).checksum()` where both layouts of one set may lie side by
    side)."""
    return locate(name, 4, root, layout).checksum()


def free_folders(
    hr_dir: str | os.PathLike,
    lr_dir: str | os.PathLike,
    scale: int,
    filename_tmpl: str = "{}",
    name: str = "",
) -> SetFolders:
    """HR and LR folders anywhere as a set (layout "folders"; `name` defaults to the HR folder's): its LR
    is used as given, never generated; checksum paths start at the two folders' common parent."""
    hr_dir, lr_dir = Path(hr_dir).absolute(), Path(lr_dir).absolute()
    if not (hr_dir.is_dir() and image_files(hr_dir)):
        raise FileNotFoundError(f"no HR images in {hr_dir}")
    base = Path(os.path.commonpath([hr_dir, lr_dir]))
    return SetFolders(name or hr_dir.name, scale, "folders", hr_dir, lr_dir, filename_tmpl, base, base)


def folder_pairs(
    hr_dir: str | os.PathLike, lr_dir: str | os.PathLike, scale: int, filename_tmpl: str = "{}"
) -> list[Pair]:
    """All pairs of free HR and LR folders (:func:`free_folders`), e.g. EDSR's benchmark folders read
    with BasicSR's template: `folder_pairs("Set5/HR", "Set5/LR_bicubic/X4", 4, "{}x4")`."""
    return list(free_folders(hr_dir, lr_dir, scale, filename_tmpl).iter_pairs())


def home_hr_dir(name: str, root: Path) -> Path:
    """Where `reprosr data fetch` places, and `verify` and `list` look for, a registered set's HR images."""
    return root / f"{name}_HR" if spec(name).home == "ntire" else root / name / "HR"

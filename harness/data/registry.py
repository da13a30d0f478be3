"""The dataset registry: each known set's sources (archives, per-file mirrors), image count, official LR
scales and sha256 manifest, and the default data root.

The default root is `$REPROSR_DATA`, else `$XDG_CACHE_HOME/reprosr`, else `~/.cache/reprosr`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.errors import UnknownName, UserError


@dataclass(frozen=True)
class Archive:
    """One downloadable archive and where one of its folders goes in the dataset layout.

    `member_dir` is the folder inside the archive; its images go to `<Name>/<target>` ("HR" or
    "LR_bicubic/X<s>"), dropping the `x<s>` suffix that mirrors add to LR file names. `sha256` is None
    when no checksum of the archive is published; the per-file manifest then carries the verification.
    """

    url: str
    member_dir: str
    target: str
    sha256: str | None = None


@dataclass(frozen=True)
class PerFileSource:
    """Files fetched one by one, each checked against the dataset's sha256 manifest before it is kept.

    ``hr`` and ``lr`` are URL templates with ``{name}`` (dataset), ``{file}`` and, for LR, ``{scale}``.
    """

    hr: str
    lr: str

    def url(self, name: str, rel: str) -> str:
        parts = PurePosixPath(rel).parts  # HR/<file> or LR_bicubic/X<s>/<file>
        if parts[0] == "HR":
            return self.hr.format(name=name, file=parts[1])
        return self.lr.format(name=name, scale=parts[1].removeprefix("X"), file=parts[2])


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its archives, the expected HR count, the scales with official LR, its manifest."""

    name: str
    archives: tuple[Archive, ...]
    hr_count: int
    lr_scales: tuple[int, ...]
    manifest: str | None
    note: str = ""
    per_file: PerFileSource | None = None  # tried before the archives
    home: str = "registry"  # the layout (harness.data.layouts) fetch and verify place and check it in


_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K"
# EDSR-PyTorch's benchmark archive: benchmark/<Set>/HR and benchmark/<Set>/LR_bicubic/X<s>/<name>x<s>.png
_BENCHMARK_TAR = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"
_SCALES = (2, 3, 4)
# DRSAN's benchmark images (github saturnian77/DRSAN psnrtest/: HR and MATLAB-bicubic LR ×2/×3/×4 of Set5,
# Set14, B100, Urban100). All 876 files are byte-identical to the sha256 manifests (checked against the
# repository's tree at this commit), which therefore pin them.
_DRSAN_PSNRTEST = (
    "https://raw.githubusercontent.com/saturnian77/DRSAN/88418748075a05954f561a512db8921e251fd935/psnrtest"
)
_PSNRTEST = PerFileSource(
    f"{_DRSAN_PSNRTEST}/HR/{{name}}/{{file}}", f"{_DRSAN_PSNRTEST}/x{{scale}}/{{name}}/{{file}}"
)


def _div2k(split: str, count: int) -> DatasetSpec:
    hr = Archive(f"{_DIV2K}/DIV2K_{split}_HR.zip", f"DIV2K_{split}_HR", "HR")
    lr = tuple(
        Archive(
            f"{_DIV2K}/DIV2K_{split}_LR_bicubic_X{s}.zip",
            f"DIV2K_{split}_LR_bicubic/X{s}",
            f"LR_bicubic/X{s}",
        )
        for s in _SCALES
    )
    return DatasetSpec(
        f"DIV2K_{split}",
        (hr, *lr),
        count,
        _SCALES,
        None,
        "no archive checksum or per-file manifest is known here: only file counts are checked",
    )


def _benchmark(name: str, count: int) -> DatasetSpec:
    hr = Archive(_BENCHMARK_TAR, f"benchmark/{name}/HR", "HR")
    lr = tuple(
        Archive(_BENCHMARK_TAR, f"benchmark/{name}/LR_bicubic/X{s}", f"LR_bicubic/X{s}") for s in _SCALES
    )
    return DatasetSpec(name, (hr, *lr), count, _SCALES, f"{name}.sha256", per_file=_PSNRTEST)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _div2k("train", 800),
        _div2k("valid", 100),
        _benchmark("Set5", 5),
        _benchmark("Set14", 14),
        _benchmark("B100", 100),
        _benchmark("Urban100", 100),
        DatasetSpec(
            "Manga109",
            (),
            109,
            (),
            None,
            "Manga109 is licensed for academic use on request (http://www.manga109.org/en/): obtain "
            "it there, put the HR PNGs in <root>/Manga109/HR; LR is then generated (MATLAB bicubic)",
        ),
        DatasetSpec(
            "DIV2K_LSDIR_valid",
            (),
            200,
            (4,),
            None,
            "NTIRE 2024/2026 Efficient SR validation set (100 LSDIR 000001–000100 + DIV2K 0801–0900), "
            "distributed by the organisers on Google Drive only (github.com/Amazingren/NTIRE2024_ESR README "
            "'The Validation datasets'): download DIV2K_LSDIR_valid_HR and DIV2K_LSDIR_valid_LR and pass "
            "their parent folder as --data-root (LR <name>x4.png, used as given, never generated)",
            home="ntire",
        ),
    )
}


def spec(name: str) -> DatasetSpec:
    """The registry entry for `name`; a KeyError lists the known names."""
    if name not in DATASETS:
        raise UnknownName(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> Path:
    """Default data root: `$REPROSR_DATA`, else `$XDG_CACHE_HOME/reprosr`, else `~/.cache/reprosr`."""
    if os.environ.get("REPROSR_DATA"):
        return Path(os.environ["REPROSR_DATA"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "reprosr"


def data_root(root: str | os.PathLike | None) -> Path:
    """`root` as a Path, or :func:`cache_dir` when None."""
    return Path(root) if root is not None else cache_dir()


def check_set_name(name: str) -> str:
    """`name` when it is one folder name; a ValueError when it has a `/` or `\\` or is `.`/`..`: a set is
    looked up inside the data root, and such a name would leave it."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise UserError(
            f"dataset name {name!r} is not a folder name: a set is read inside the data root, never outside "
            "it (no `/` or `..`); pass the folder holding it as --data-root instead"
        )
    return name


def check_inside(path: Path, root: Path, action: str) -> None:
    """A ValueError unless `path` resolves inside `root`: files are written only inside the data root,
    never through a link or `..` that leads out of it. (Reading follows links: see harness.data.layouts.)"""
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base):
        raise UserError(
            f"refusing to {action} {path}: it leads to {resolved}, outside the data root {base} (through a "
            "link or `..`), and nothing is written outside the data root; copy the set into the data root, "
            "or pass the folder it lies in as --data-root"
        )

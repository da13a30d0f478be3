"""Images and datasets: reading and writing images, the dataset registry, fetching (through
:mod:`harness.downloads`) and verification.

On-disk layout under a data root: `<root>/<Name>/HR/*.png` and `<root>/<Name>/LR_bicubic/X<s>/*.png`,
LR files named like their HR image; a dataset with its own :class:`Layout` (NTIRE's DIV2K_LSDIR_valid:
`<root>/DIV2K_LSDIR_valid_HR/*.png`, `<root>/DIV2K_LSDIR_valid_LR/<name>x4.png`) is read where it lies.
The default root is `$REPROSR_DATA`, else `$XDG_CACHE_HOME/reprosr`, else `~/.cache/reprosr`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from harness import downloads, progress
from harness.degrade import bicubic_downsample
from harness.errors import UserError
from harness.files import atomic_file, clean_once, locked, remove_stale_temps

EMBEDDED = Path(__file__).resolve().parent / "embedded"
MANIFESTS = EMBEDDED / "manifests"
GENERATED_MARKER = ".generated"  # in an LR folder: made here by bicubic_downsample, not the MATLAB files
_EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")


class ImageReadError(UserError):
    """An image file exists but cannot be decoded (corrupt, truncated, unsupported)."""


# ---------------------------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike) -> Tensor:
    """Read an 8-bit image as (3, H, W) float32 RGB in [0, 1].

    Grayscale is replicated to three channels and palette images are expanded; alpha is dropped (as
    cv2.imread(IMREAD_COLOR) does in BasicSR). One rule for every bit depth: images with more than 8 bits
    per sample (16-bit gray or RGB PNGs, 16-bit TIFFs, float images) are refused, since the benchmarks and
    the metric conventions are 8-bit and Pillow would silently drop a 16-bit RGB PNG's low byte. Raises
    FileNotFoundError when missing and ImageReadError (naming the file) when it is corrupt, truncated or
    not an 8-bit image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            bits = _stored_bits(path, img)
            img.load()
            mode = img.mode
            eight_bit = bits <= 8 and mode in _EIGHT_BIT_MODES
            array = np.array(img.convert("RGB"), dtype=np.uint8) if eight_bit else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(
            f"cannot read image {path} ({exc}); the file is corrupt or truncated: "
            "replace it (e.g. `reprosr data fetch NAME` again)"
        ) from exc
    if array is None:
        depth = f"{bits}-bit " if bits > 8 else ""
        raise ImageReadError(
            f"{path}: {depth}{mode} images are not supported (only 8 bits per sample: the benchmarks and "
            "the metric conventions are 8-bit); convert it to an 8-bit RGB PNG, e.g. "
            "`convert IN -depth 8 OUT.png`"
        )
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


def _stored_bits(path: Path, img: Image.Image) -> int:
    """Bits per sample as stored in the file (Pillow decodes 16-bit RGB PNGs to 8-bit "RGB")."""
    if img.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(25)  # signature (8), IHDR length and type (8), width, height, then bit depth
        return header[24] if len(header) == 25 else 8
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, 8)  # BitsPerSample
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def write_image(path: str | os.PathLike, img: Tensor) -> None:
    """Write a (3, H, W) [0, 1] image as an 8-bit RGB PNG, atomically (temp file + os.replace).

    Values are clamped to [0, 1], scaled by 255 and rounded half to even (numpy rint). The file gets the
    permissions of any new file (0666 minus the umask). Temp files that killed writers left in the
    folder are removed on the first write there (`harness.files.clean_once`).
    """
    path = Path(path)
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"write_image expects a (3, H, W) image, got {tuple(img.shape)}")
    if not torch.isfinite(img).all():
        raise ValueError(f"refusing to write {path}: the image contains NaN or Inf")
    array = np.rint(img.detach().double().clamp(0, 1).mul(255).cpu().numpy()).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_once(path.parent)
    with atomic_file(path) as f:
        Image.fromarray(array.transpose(1, 2, 0), "RGB").save(f, format="PNG")


# -------------------------------------------------------------------------------------------- registry


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
class Layout:
    """Where a dataset's images lie, relative to the data root: the HR folder, and each LR file by HR stem
    and scale. ``generate_lr``: absent LR is made here (MATLAB-exact bicubic); else it must be given."""

    hr: str = "{name}/HR"
    lr: str = "{name}/LR_bicubic/X{scale}/{stem}.png"
    generate_lr: bool = True


STANDARD_LAYOUT = Layout()


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
    layout: Layout = STANDARD_LAYOUT


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
            layout=Layout(
                "DIV2K_LSDIR_valid_HR", "DIV2K_LSDIR_valid_LR/{stem}x{scale}.png", generate_lr=False
            ),
        ),
    )
}


def spec(name: str) -> DatasetSpec:
    """The registry entry for `name`; a KeyError lists the known names."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> Path:
    """Default data root: `$REPROSR_DATA`, else `$XDG_CACHE_HOME/reprosr`, else `~/.cache/reprosr`."""
    if os.environ.get("REPROSR_DATA"):
        return Path(os.environ["REPROSR_DATA"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "reprosr"


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else cache_dir()


# ----------------------------------------------------------------------------------- fetch and verify


def _lr_name(name: str, target: str) -> str:
    """`babyx2.png` → `baby.png` in `LR_bicubic/X2` (the mirrors' naming → this layout's)."""
    if target.startswith("LR_bicubic/X"):
        stem, suffix = os.path.splitext(name)
        tag = "x" + target.rsplit("X", 1)[1]
        if stem.endswith(tag):
            return stem[: -len(tag)] + suffix
    return name


def fetch(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download, extract and place dataset `name` under `<root>/<name>`, then verify it.

    Archives are kept in `<root>/downloads` (shared between the sets of one archive; resumable).
    Returns the dataset folder; raises ValueError when verification finds a problem.
    """
    entry, root = spec(name), _root(root)
    if not entry.archives and entry.per_file is None:
        raise ValueError(f"{name} cannot be downloaded automatically: {entry.note}")
    target_dir = root / name
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root)
    per_file_error = None
    if entry.per_file is not None:
        try:
            return _fetch_per_file(entry, root)
        except OSError as exc:
            if not entry.archives:
                raise
            per_file_error = exc
    for url in dict.fromkeys(a.url for a in entry.archives):
        members = [a for a in entry.archives if a.url == url]
        try:
            archive = downloads.download(url, root / "downloads" / url.rsplit("/", 1)[1], members[0].sha256)
        except OSError as exc:
            if per_file_error is None:
                raise
            raise OSError(f"{per_file_error}; the fallback archive failed too: {exc}") from exc
        with tempfile.TemporaryDirectory(dir=root, prefix=f".extract-{os.getpid()}-") as tmp:
            downloads.extract(archive, tmp)
            for member in members:
                source = Path(tmp) / member.member_dir
                if not source.is_dir():
                    raise ValueError(
                        f"{archive} has no folder {member.member_dir}: delete it and fetch again"
                    )
                (target_dir / member.target).mkdir(parents=True, exist_ok=True)
                for f in sorted(source.iterdir()):
                    if f.is_file():
                        os.replace(f, target_dir / member.target / _lr_name(f.name, member.target))
    report = verify(name, root)
    if report.status == "mismatch":
        raise ValueError(str(report))
    return target_dir


def _fetch_per_file(entry: DatasetSpec, root: Path) -> Path:
    """Download every file of the dataset's manifest from its per-file source, each sha256-checked."""
    for rel, digest in _read_manifest(entry.manifest).items():
        downloads.download(entry.per_file.url(entry.name, rel), root / entry.name / rel, digest)
    report = verify(entry.name, root)
    if report.status == "mismatch":
        raise ValueError(str(report))
    return root / entry.name


@dataclass
class VerifyReport:
    """Outcome of `verify`: status is "verified", "mismatch", "missing" or "unverified" (nothing to check
    against); `problems` lists each failing file or count."""

    name: str
    path: Path
    status: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "verified"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "ok": self.ok,
            "checked": self.checked,
            "problems": self.problems,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        lines = [f"{self.name} at {self.path}: {self.status} ({self.checked} files checked)"]
        lines += [f"  problem: {p}" for p in self.problems] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _read_manifest(filename: str) -> dict[str, str]:
    lines = (MANIFESTS / filename).read_text().splitlines()
    return {rel.strip(): digest for digest, rel in (line.split(maxsplit=1) for line in lines if line.strip())}


def verify(name: str, root: str | os.PathLike | None = None) -> VerifyReport:
    """Check a local copy of `name` file by file against its sha256 manifest, and its file counts.

    LR folders generated here (marked with `.generated`) are not the MATLAB files: they are noted and
    skipped. Without a manifest only counts can be checked and the status is "unverified".
    """
    entry, folder = spec(name), _root(root) / name
    report = VerifyReport(name, folder, "missing")
    hr_folder = _root(root) / entry.layout.hr.format(name=name)
    hr = sorted(hr_folder.glob("*.png"))
    if not hr:
        how = f"run `reprosr data fetch {name}`" if entry.archives or entry.per_file else entry.note
        report.problems.append(f"no HR images in {hr_folder}: {how}")
        return report
    if len(hr) != entry.hr_count:
        report.problems.append(f"HR: {len(hr)} images, expected {entry.hr_count}")
    generated = {s for s in _SCALES if (folder / f"LR_bicubic/X{s}" / GENERATED_MARKER).exists()}
    report.notes += [
        f"LR_bicubic/X{s} was generated here (MATLAB-exact bicubic), not checked" for s in generated
    ]
    if entry.manifest is None:
        report.notes.append(entry.note or f"no per-file manifest for {name}: only file counts were checked")
        report.status = "mismatch" if report.problems else "unverified"
        return report
    for rel, digest in _read_manifest(entry.manifest).items():
        if any(rel.startswith(f"LR_bicubic/X{s}/") for s in generated):
            continue
        path = folder / rel
        if not path.is_file():
            report.problems.append(f"{rel}: missing")
        elif (got := downloads.sha256_file(path)) != digest:
            report.problems.append(f"{rel}: sha256 {got}, expected {digest}")
        report.checked += 1
    report.status = "mismatch" if report.problems else "verified"
    return report


def list_datasets(root: str | os.PathLike | None = None) -> list[dict]:
    """One row per registered dataset: name, status (present with HR count / absent / manual), path."""
    rows = []
    for entry in DATASETS.values():
        folder = _root(root) / entry.layout.hr.format(name=entry.name)
        count = len(list(folder.glob("*.png")))
        fetchable = entry.archives or entry.per_file
        status = f"present ({count} HR)" if count else ("absent" if fetchable else "absent (manual download)")
        path = folder.parent if entry.layout == STANDARD_LAYOUT else folder
        rows.append({"name": entry.name, "status": status, "path": str(path)})
    return rows


# -------------------------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pair:
    """An evaluation pair: hr (3, s·h, s·w) and lr (3, h, w), float32 in [0, 1]."""

    name: str
    hr: Tensor
    lr: Tensor


def _layout(name: str) -> Layout:
    return DATASETS[name].layout if name in DATASETS else STANDARD_LAYOUT


def _hr_files(name: str, root: str | os.PathLike | None) -> list[Path]:
    hr = _layout(name).hr.format(name=name)
    folder = _root(root) / hr
    files = sorted(folder.glob("*.png"))
    if not files:
        how = (
            f"run `reprosr data fetch {name}` or " if name not in DATASETS or DATASETS[name].archives else ""
        )
        raise FileNotFoundError(
            f"dataset {name} not found: no HR images in {folder}; {how}pass --data-root DIR holding {hr}"
        )
    return files


_IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def _lr_file(name: str, scale: int, hr_file: Path, root: str | os.PathLike | None) -> Path:
    return _root(root) / _layout(name).lr.format(name=name, scale=scale, stem=hr_file.stem)


def _lr_dir(name: str, scale: int, hr_files: list[Path], root: str | os.PathLike | None) -> Path:
    """`<root>/<name>/LR_bicubic/X<scale>`, generated (MATLAB-exact bicubic, marked) when it holds no LR.

    A dataset whose layout gives its LR (``generate_lr`` false) must have every file: the folder of the
    first is returned.

    Generation is safe under concurrency: one process generates under an exclusive lock
    (`LR_bicubic/.X<scale>.lock`) while the others wait, each file is written atomically, and the marker is
    written first so that a generation cut short by a kill is completed by the next run. A folder of
    images not named like the HR images (e.g. `babyx2.png`), or lacking some, is an error: it is never
    mixed with generated files.
    """
    if not _layout(name).generate_lr:
        missing = [f for f in hr_files if not _lr_file(name, scale, f, root).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{_lr_file(name, scale, missing[0], root)} (×{scale} LR of {missing[0].name}) is missing, "
                f"{len(missing)} of {len(hr_files)} in all: {name}'s LR is used as given, never generated"
            )
        return _lr_file(name, scale, hr_files[0], root).parent
    lr_dir = _root(root) / name / "LR_bicubic" / f"X{scale}"
    if all((lr_dir / f.name).exists() for f in hr_files):
        return lr_dir
    lr_dir.mkdir(parents=True, exist_ok=True)
    with locked(lr_dir.parent / f".X{scale}.lock"):
        remove_stale_temps(lr_dir)
        missing = [f for f in hr_files if not (lr_dir / f.name).exists()]
        if missing and not (lr_dir / GENERATED_MARKER).exists():
            others = sorted(
                p.name
                for p in lr_dir.iterdir()
                if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if others and len(missing) == len(hr_files):
                raise ValueError(
                    f"{lr_dir} holds {len(others)} images but none is named like an HR image (LR "
                    f"{others[0]}, HR {hr_files[0].name}): name each LR file like its HR image, or move "
                    "them out of that folder to have the LR generated (MATLAB-exact bicubic)"
                )
            if others:
                raise FileNotFoundError(
                    f"{lr_dir} lacks {len(missing)} of the HR images' LR (e.g. {missing[0].name}): fetch "
                    f"{name} again, or delete that folder to have it regenerated"
                )
            (lr_dir / GENERATED_MARKER).touch()
        for f in progress.track(missing, desc=f"generating {name} LR ×{scale}") if missing else ():
            write_image(lr_dir / f.name, bicubic_downsample(read_image(f), scale)[1])
    return lr_dir


def iter_benchmark_pairs(name: str, scale: int, root: str | os.PathLike | None = None) -> Iterator[Pair]:
    """The (HR, LR) pairs of `<root>/<name>` at ×`scale`, sorted by image name, read one at a time.

    HR is cropped to a multiple of the scale. LR comes from `LR_bicubic/X<scale>`; when that folder is
    absent or empty it is generated with `degrade.bicubic_downsample` and cached there.
    """
    hr_files = _hr_files(name, root)
    lr_dir = _lr_dir(name, scale, hr_files, root)
    for f in hr_files:
        hr = read_image(f)
        h, w = hr.shape[-2] - hr.shape[-2] % scale, hr.shape[-1] - hr.shape[-1] % scale
        lr_file = _lr_file(name, scale, f, root)
        lr = read_image(lr_file)
        if tuple(lr.shape[-2:]) != (h // scale, w // scale):
            remedy = f"Delete {lr_dir} to regenerate" if _layout(name).generate_lr else "Replace it"
            raise ValueError(
                f"{lr_file} is {tuple(lr.shape[-2:])} but HR {f.name} at ×{scale} needs "
                f"{(h // scale, w // scale)}: is it the ×{scale} LR? {remedy}"
            )
        yield Pair(f.stem, hr[:, :h, :w], lr)


def benchmark_pairs(name: str, scale: int, root: str | os.PathLike | None = None) -> list[Pair]:
    """All pairs of :func:`iter_benchmark_pairs` in memory (float32: fine for the benchmark sets; stream
    large training sets instead)."""
    return list(iter_benchmark_pairs(name, scale, root))


def embedded_pairs(scale: int) -> list[Pair]:
    """Pairs from the small photos shipped in `harness/embedded/` (LR made in memory, MATLAB-exact)."""
    pairs = []
    for f in sorted(EMBEDDED.glob("*.png")):
        hr, lr = bicubic_downsample(read_image(f), scale)
        pairs.append(Pair(f.stem, hr, lr))
    return pairs


def dataset_checksum(name: str, root: str | os.PathLike | None = None) -> str:
    """sha256 over the sorted `<sha256>  <relative path>` lines of the dataset's HR and LR PNG files."""
    hr_files = _hr_files(name, root)
    if _layout(name) == STANDARD_LAYOUT:
        folder = _root(root) / name
        files = sorted(p for sub in ("HR", "LR_bicubic") for p in (folder / sub).rglob("*.png"))
    else:
        folder = _root(root)
        lr = [_lr_file(name, s, f, root) for s in DATASETS[name].lr_scales for f in hr_files]
        files = sorted([*hr_files, *(p for p in lr if p.is_file())])
    lines = "".join(f"{downloads.sha256_file(p)}  {p.relative_to(folder).as_posix()}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()

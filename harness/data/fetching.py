"""Fetching and verifying registered datasets: archives and per-file mirrors (through
:mod:`harness.downloads`) placed in the registry layout, then checked file by file against the sha256
manifests in `harness/embedded/manifests`.

Official LR placed where LR was generated first removes the generated files and their marker
(:func:`harness.data.lr_cache.clear_generated`), so the official files are verified and never taken for
generated ones. Nothing is placed outside the data root (:func:`harness.data.registry.check_inside`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness import downloads
from harness.data.images import image_files
from harness.data.layouts import home_hr_dir
from harness.data.lr_cache import GENERATED_MARKER, clear_generated
from harness.data.registry import DATASETS, DatasetSpec, check_inside, data_root, spec
from harness.errors import UserError
from harness.files import remove_stale_temps

MANIFESTS = Path(__file__).resolve().parents[1] / "embedded" / "manifests"


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
    entry, root = spec(name), data_root(root)
    if not entry.archives and entry.per_file is None:
        raise UserError(f"{name} cannot be downloaded automatically: {entry.note}")
    target_dir = root / name
    root.mkdir(parents=True, exist_ok=True)
    check_inside(target_dir, root, f"place {name} in")
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
                    raise UserError(f"{archive} has no folder {member.member_dir}: delete it and fetch again")
                (target_dir / member.target).mkdir(parents=True, exist_ok=True)
                clear_generated(target_dir / member.target)
                for f in sorted(source.iterdir()):
                    if f.is_file():
                        os.replace(f, target_dir / member.target / _lr_name(f.name, member.target))
    report = verify(name, root)
    if report.status == "mismatch":
        raise UserError(str(report))
    return target_dir


def _fetch_per_file(entry: DatasetSpec, root: Path) -> Path:
    """Download every file of the dataset's manifest from its per-file source, each sha256-checked."""
    for rel, digest in _read_manifest(entry.manifest).items():
        clear_generated((root / entry.name / rel).parent)
        downloads.download(entry.per_file.url(entry.name, rel), root / entry.name / rel, digest)
    report = verify(entry.name, root)
    if report.status == "mismatch":
        raise UserError(str(report))
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
    entry, folder = spec(name), data_root(root) / name
    report = VerifyReport(name, folder, "missing")
    hr_folder = home_hr_dir(name, data_root(root))
    hr = image_files(hr_folder) if hr_folder.is_dir() else []
    if not hr:
        how = f"run `reprosr data fetch {name}`" if entry.archives or entry.per_file else entry.note
        report.problems.append(f"no HR images in {hr_folder}: {how}")
        return report
    if len(hr) != entry.hr_count:
        report.problems.append(f"HR: {len(hr)} images, expected {entry.hr_count}")
    generated = sorted(
        p.parent.relative_to(folder).as_posix() for p in folder.glob(f"LR_bicubic/X*/{GENERATED_MARKER}")
    )
    report.notes += [f"{g} was generated here (MATLAB-exact bicubic), not checked" for g in generated]
    if entry.manifest is None:
        report.notes.append(entry.note or f"no per-file manifest for {name}: only file counts were checked")
        report.status = "mismatch" if report.problems else "unverified"
        return report
    for rel, digest in _read_manifest(entry.manifest).items():
        if any(rel.startswith(f"{g}/") for g in generated):
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
        folder = home_hr_dir(entry.name, data_root(root))
        count = len(image_files(folder)) if folder.is_dir() else 0
        fetchable = entry.archives or entry.per_file
        status = f"present ({count} HR)" if count else ("absent" if fetchable else "absent (manual download)")
        path = folder.parent if entry.home == "registry" else folder
        rows.append({"name": entry.name, "status": status, "path": str(path)})
    return rows

"""Generated LR: the cache of ×s LR images made here (MATLAB-exact bicubic) in the registry layout, tied to
the HR content and the degradation code it came from.

`<root>/<Name>/LR_bicubic/X<s>/.generated` marks a folder made here, not the MATLAB-made files: a JSON record
of the sha256 of each HR file the LR was made from and a fingerprint of the degradation (the uint8 output of
`degrade.bicubic_levels` on a fixed probe image). Every read compares the record with the HR files and the
code: an LR whose HR or degradation changed is deleted and made again. Official LR placed into the folder
(`reprosr data fetch`) first removes the generated files and the marker (:func:`clear_generated`), so that
official files are verified against their manifest and never taken for generated ones.

Concurrency: one process generates under an exclusive lock (`LR_bicubic/.X<s>.lock`) while others wait;
each file is written atomically; stale LR are deleted before the new record is written, and the record
before the missing files are made, so that a generation cut short by a kill is completed by the next run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from harness import degrade, progress
from harness.data.images import image_files, read_image, write_image
from harness.data.registry import check_inside
from harness.downloads import sha256_file
from harness.errors import UserError
from harness.files import atomic_file, locked, remove_stale_temps

GENERATED_MARKER = ".generated"
_PROBE_HW = (29, 37)  # not a multiple of 2, 3, 4 or 8: the crop and border handling count too


def degradation_fingerprint(scale: int) -> str:
    """sha256 of the MATLAB-bicubic uint8 LR (`degrade.bicubic_levels`) of a fixed 29×37 probe at
    ×`scale`: changes when the degradation's output does, not when its code is merely reformatted."""
    h, w = _PROBE_HW
    c, y, x = torch.meshgrid(torch.arange(3), torch.arange(h), torch.arange(w), indexing="ij")
    probe = ((c * 97 + y * 31 + x * 17 + y * x) % 256).float() / 255
    levels = degrade.bicubic_levels(probe, scale).numpy()
    return f"bicubic_downsample:{hashlib.sha256(levels.tobytes()).hexdigest()}"


def is_generated(lr_dir: Path) -> bool:
    """Whether `lr_dir` holds LR generated here (it carries the marker)."""
    return (lr_dir / GENERATED_MARKER).exists()


def _lock(lr_dir: Path) -> Path:
    return lr_dir.parent / f".{lr_dir.name}.lock"


def _record(lr_dir: Path) -> dict:
    """The marker's record; {} for a marker of an older version (empty) or an unreadable one: nothing in
    the folder is then known to match its HR."""
    try:
        record = json.loads((lr_dir / GENERATED_MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _made(record: dict) -> dict[str, str]:
    """HR file name → sha256 of the HR each LR was made from, as the record lists them."""
    made = record.get("hr")
    return made if isinstance(made, dict) else {}


def ensure_lr(hr_files: list[Path], lr_dir: Path, scale: int, root: Path, desc: str) -> None:
    """Generate or refresh the ×`scale` LR of `hr_files` in `lr_dir` when it is a generated folder or
    holds no image yet; a folder of images without the marker (official or the user's LR) is left as it
    is, for the pair rule to check. A generated folder whose record matches the HR files and the
    degradation is only read (no lock, nothing written: it may lie on a read-only disk). Writes stay
    inside `root` (ValueError otherwise, see `registry.check_inside`); only PNG HR images are generated
    from (the LR is a PNG named like its HR)."""
    if not is_generated(lr_dir) and lr_dir.is_dir() and image_files(lr_dir):
        return
    sources, fingerprint = {f.name: sha256_file(f) for f in hr_files}, degradation_fingerprint(scale)
    if is_generated(lr_dir) and _current(lr_dir, sources, fingerprint):
        return
    check_inside(lr_dir, root, "generate LR in")
    not_png = [f.name for f in hr_files if f.suffix.lower() != ".png"]
    if not_png:
        raise UserError(
            f"{desc}: LR is generated only from PNG HR images, not {not_png[0]}; convert the HR images to "
            f"PNG or put their ×{scale} LR in {lr_dir}"
        )
    lr_dir.mkdir(parents=True, exist_ok=True)
    with locked(_lock(lr_dir)):
        remove_stale_temps(lr_dir)
        if not is_generated(lr_dir) and image_files(lr_dir):
            return  # another process placed LR here while this one waited
        record = _record(lr_dir)
        made = _made(record) if record.get("degradation") == fingerprint else {}
        for lr in image_files(lr_dir):
            if made.get(lr.name) != sources.get(lr.name):  # HR changed or gone, or made by other code
                lr.unlink()
        with atomic_file(lr_dir / GENERATED_MARKER) as f:
            record = {"scale": scale, "degradation": fingerprint, "hr": sources}
            f.write(json.dumps(record, indent=1).encode())
        missing = [f for f in hr_files if not (lr_dir / f.name).exists()]
        for f in progress.track(missing, desc=desc) if missing else ():
            write_image(lr_dir / f.name, degrade.bicubic_levels(read_image(f), scale))


def _current(lr_dir: Path, sources: dict[str, str], fingerprint: str) -> bool:
    """Whether the record lists exactly these HR files and hashes and this degradation, and every LR is
    there."""
    record = _record(lr_dir)
    return (
        record.get("degradation") == fingerprint
        and _made(record) == sources
        and all((lr_dir / name).is_file() for name in sources)
    )


def clear_generated(lr_dir: Path) -> None:
    """Remove generated LR from `lr_dir` (the images its record lists, every image for a marker of an
    older version, then the marker) so that official LR can be placed there and verified; a folder
    without the marker is left alone."""
    if not is_generated(lr_dir):
        return
    with locked(_lock(lr_dir)):
        if is_generated(lr_dir):
            made = _made(_record(lr_dir))
            for lr in image_files(lr_dir):
                if not made or lr.name in made:
                    lr.unlink()
            (lr_dir / GENERATED_MARKER).unlink()

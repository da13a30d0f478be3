"""Published run artifacts (``results/artifacts/<run_id>/``, written by ``reprosr publish``) in the site.

An artifact folder holds ``crops.json`` — ``{"run_id", "recipe", "comparisons": [{"dataset", "image",
"box": [left, top, right, bottom], "crops": [{"label", "file"}]}]}`` — and the PNG crops it names. The site
copies the crops byte for byte to ``img/<run_id>/``. No symbolic link under the artifacts folder is followed
(:func:`harness.files.inside`): a linked folder, manifest or crop is an error naming it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.errors import UserError
from harness.files import inside

MANIFEST = "crops.json"


def comparisons(artifacts: Path, run_id: str) -> list[dict]:
    """The visual comparisons of ``run_id`` ([] when nothing was published); errors name the file."""
    manifest = inside(Path(artifacts), Path(artifacts) / run_id / MANIFEST)
    if not manifest.is_file():
        return []
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        items = [
            {"dataset": str(c["dataset"]), "image": str(c["image"]), "box": [int(v) for v in c["box"]],
             "crops": [{"label": str(x["label"]), "file": str(x["file"])} for x in c["crops"]]}
            for c in data["comparisons"]
        ]  # fmt: skip
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{manifest}: not a crops manifest ({type(exc).__name__}: {exc})") from None
    for item in items:
        for crop in item["crops"]:
            path = manifest.parent / crop["file"]
            if Path(crop["file"]).name != crop["file"] or not inside(Path(artifacts), path).is_file():
                raise UserError(f"{manifest}: names {crop['file']!r}, which is not a file beside it")
    return sorted(items, key=lambda c: (c["dataset"], c["image"]))


def copy_crops(artifacts: Path, run_id: str, items: list[dict], site: Path, folder: str) -> list[dict]:
    """Copy the crops of ``items`` into ``site/img/<folder>/``; the items with each crop's site ``src``."""
    out = []
    for item in items:
        crops = []
        for crop in item["crops"]:
            src = f"img/{folder}/{crop['file']}"
            (site / src).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(artifacts) / run_id / crop["file"], site / src)
            crops.append({**crop, "src": src})
        out.append({**item, "crops": crops})
    return out

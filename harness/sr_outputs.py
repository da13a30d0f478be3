"""SR outputs on disk: each scored image as ``<image>.png`` exactly as scored, and a folder's
``manifest.json`` of pixel hashes and scores (what ``--save-sr`` writes; ``publish`` checks crops against
it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from torch import Tensor

from harness import metrics
from harness.errors import UserError
from harness.files import atomic_file

if TYPE_CHECKING:
    from harness.evaluate import EvalResult

MANIFEST = "manifest.json"


def pixel_sha256(img: Tensor) -> str:
    """sha256 of an image's raw pixels: (3, H, W) uint8 as H×W×3 RGB bytes in row-major order, i.e. of
    ``numpy.asarray(PIL.Image.open(png).convert("RGB")).tobytes()``."""
    return hashlib.sha256(img.permute(1, 2, 0).contiguous().cpu().numpy().tobytes()).hexdigest()


def save_sr(folder: Path, name: str, sr8: Tensor) -> Path:
    """Write one scored SR image (3, H, W) uint8 as ``folder/<name>.png``, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    with atomic_file(path) as f:
        Image.fromarray(np.ascontiguousarray(sr8.permute(1, 2, 0).cpu().numpy()), "RGB").save(f, format="PNG")
    return path


def read_manifest(root: Path) -> dict:
    """The SR manifest ``root/manifest.json`` ({} if absent); a UserError naming the file when it is not one
    (checked before the first image, so a bad file does not cost an evaluation)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not JSON ({exc}); move it away or pick another --save-sr folder") from None
    if not (
        isinstance(manifest, dict)
        and isinstance(manifest.get("datasets", {}), dict)
        and isinstance(manifest.get("images", {}), dict)
    ):
        raise UserError(
            f"{path} is not an SR manifest (an object with 'datasets' and 'images' objects): move it away or "
            "choose another --save-sr folder"
        )
    return manifest


def write_manifest(root: Path, dataset: str, result: EvalResult, context: dict) -> Path:
    """``root/manifest.json``: per saved image (``<dataset>/<image>.png``) its pixel sha256 and scores, and
    per dataset the run's knobs (``context``: model, checkpoint, scale…); merged with an existing manifest so
    several calls can share one folder."""
    path = Path(root) / MANIFEST
    manifest = read_manifest(root)
    manifest.setdefault("pixel_hash", pixel_sha256.__doc__.split(":", 1)[1].strip())
    manifest.setdefault("datasets", {})[dataset] = {**context, **result.test_time.columns()}
    images = manifest.setdefault("images", {})
    for row in result.per_image:
        png = Path(root) / dataset / f"{row['image']}.png"
        with Image.open(png) as img:
            pixels = np.asarray(img.convert("RGB"))
        images[f"{dataset}/{row['image']}.png"] = {
            "sha256_pixels": hashlib.sha256(pixels.tobytes()).hexdigest(),
            "size": [int(pixels.shape[1]), int(pixels.shape[0])],
            **{k: v for k, v in row.items() if k in metrics.CONVENTIONS},
        }
    with atomic_file(path) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    return path
